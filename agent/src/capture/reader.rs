//! Reads capture files, either record by record ([`CaptureReader`]) or whole
//! ([`Capture`]).

use std::{
    collections::BTreeMap,
    fmt,
    fs::File,
    io::{self, BufReader, Read},
    path::{Path, PathBuf},
};

use serde::de::DeserializeOwned;

use super::{
    CaptureError, FORMAT_VERSION, MAGIC, MAX_RECORD_LEN, OLDEST_FORMAT_VERSION, RECORD_HEADER_LEN,
    codec, record_crc, record_type,
};
use crate::spanlet::{CaptureEnd, CaptureMeta, CaptureStats, ProcessInfo, Spanlet, ThreadInfo};

/// One record after the metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Process(ProcessInfo),
    Thread(ThreadInfo),
    Spanlet(Spanlet),
    Stats(CaptureStats),
    End(CaptureEnd),
}

/// How the end of a file was damaged; what a crash (or a copy of a file still
/// being written) leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailDamage {
    /// The file ends inside a record.
    Truncated,
    /// A record's checksum does not match its bytes.
    CrcMismatch,
    /// A record claims a length no writer produces.
    BadLength,
}

impl fmt::Display for TailDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "the file ends inside a record",
            Self::CrcMismatch => "a record fails its checksum",
            Self::BadLength => "a record has an impossible length",
        })
    }
}

/// Where reading stopped early and how many bytes were ignored from there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DamagedTail {
    /// Byte offset of the first record that could not be read.
    pub offset: u64,
    /// Bytes from `offset` to the end of the file.
    pub bytes: u64,
    pub damage: TailDamage,
}

/// Payloads up to this length are read in one go into a buffer of their
/// stated length; longer ones grow the buffer only as data actually arrives,
/// so a corrupt length cannot make the reader allocate much.
const EAGER_PAYLOAD_LEN: usize = 64 * 1024;

/// Bytes a spanlet record typically takes in a file (header, payload with
/// a thread name, a waker and no span context), for sizing the spanlet list.
const TYPICAL_SPANLET_RECORD_LEN: u64 = 100;

/// Outcome of reading one framed record.
enum Raw {
    /// A complete record with a valid CRC; the payload is in `payload`.
    Record(u8),
    /// The file ends cleanly on a record boundary.
    Eof,
    /// Reading stopped at damage; `tail` says where.
    Damaged(TailDamage),
}

/// Streams the records of a capture so that large files need not fit in memory.
///
/// A damaged tail ends the stream without an error (see [`damaged_tail`]);
/// a record that passes its checksum but does not decode is an error, since no
/// crash produces it.
///
/// [`damaged_tail`]: CaptureReader::damaged_tail
pub struct CaptureReader<R = BufReader<File>> {
    path: PathBuf,
    input: R,
    meta: CaptureMeta,
    /// Offset of the next unread byte.
    offset: u64,
    /// Offset of the record in `payload`, for error messages.
    record_offset: u64,
    payload: Vec<u8>,
    /// The file's format version, from its header.
    version: u32,
    done: bool,
    tail: Option<DamagedTail>,
    skipped_records: u64,
}

impl CaptureReader<BufReader<File>> {
    /// Opens `path` and reads its header and metadata.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let file = File::open(path).map_err(CaptureError::io(path))?;
        Self::from_reader(BufReader::with_capacity(256 * 1024, file), path)
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads a capture from any byte source; `path` only names it in errors.
    pub fn from_reader(input: R, path: impl Into<PathBuf>) -> Result<Self, CaptureError> {
        let mut reader = Self {
            path: path.into(),
            input,
            meta: placeholder_meta(),
            offset: 0,
            record_offset: 0,
            payload: Vec::with_capacity(256),
            version: FORMAT_VERSION,
            done: false,
            tail: None,
            skipped_records: 0,
        };
        reader.read_header()?;
        reader.meta = reader.read_meta()?;
        Ok(reader)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> &CaptureMeta {
        &self.meta
    }

    /// Set once reading stopped at a damaged tail.
    pub fn damaged_tail(&self) -> Option<&DamagedTail> {
        self.tail.as_ref()
    }

    /// Records of types this build does not know, skipped so far.
    pub fn skipped_records(&self) -> u64 {
        self.skipped_records
    }

    /// The next record, or `None` at the end of the file or at a damaged tail.
    pub fn next_record(&mut self) -> Result<Option<Record>, CaptureError> {
        while !self.done {
            let ty = match self.read_raw()? {
                Raw::Record(ty) => ty,
                Raw::Eof | Raw::Damaged(_) => {
                    self.done = true;
                    break;
                }
            };
            let record = match ty {
                record_type::META => Err(self.malformed(ty, "a second metadata record".into())),
                record_type::PROCESS => self.json(ty).map(Record::Process),
                record_type::THREAD => self.json(ty).map(Record::Thread),
                record_type::SPANLET => {
                    codec::decode_spanlet(self.meta.format_version, &self.payload)
                        .map(Record::Spanlet)
                        .map_err(|e| self.malformed(ty, e.to_string()))
                }
                record_type::STATS => self.json(ty).map(Record::Stats),
                record_type::END => self.json(ty).map(Record::End),
                _ => {
                    self.skipped_records += 1;
                    continue;
                }
            };
            if record.is_err() {
                self.done = true;
            }
            return record.map(Some);
        }
        Ok(None)
    }

    fn read_header(&mut self) -> Result<(), CaptureError> {
        let mut header = [0u8; MAGIC.len() + 4];
        let n = self.read_full(&mut header)?;
        let got = header.get(..n).unwrap_or_default();
        if n == 0 {
            return Err(CaptureError::Empty {
                path: self.path.clone(),
            });
        }
        if !MAGIC.starts_with(got.get(..MAGIC.len()).unwrap_or(got)) {
            return Err(CaptureError::NotACapture {
                path: self.path.clone(),
            });
        }
        let (_, version) = header.split_at(MAGIC.len());
        let version = match <[u8; 4]>::try_from(version) {
            Ok(bytes) if n == header.len() => u32::from_le_bytes(bytes),
            _ => return Err(self.invalid_meta("the file ends inside its header".into())),
        };
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(CaptureError::UnsupportedVersion {
                path: self.path.clone(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        self.version = version;
        Ok(())
    }

    fn read_meta(&mut self) -> Result<CaptureMeta, CaptureError> {
        match self.read_raw()? {
            Raw::Record(record_type::META) => {}
            Raw::Record(ty) => {
                return Err(
                    self.invalid_meta(format!("the first record is of type {ty}, not metadata"))
                );
            }
            Raw::Eof => return Err(self.invalid_meta("the file ends before it".into())),
            Raw::Damaged(damage) => return Err(self.invalid_meta(damage.to_string())),
        }
        let meta: CaptureMeta =
            serde_json::from_slice(&self.payload).map_err(|e| self.invalid_meta(e.to_string()))?;
        if meta.format_version != self.version {
            return Err(self.invalid_meta(format!(
                "it says format version {} but the file header says {}",
                meta.format_version, self.version
            )));
        }
        Ok(meta)
    }

    /// Reads one framed record into `payload`, checking length and CRC.
    fn read_raw(&mut self) -> Result<Raw, CaptureError> {
        self.record_offset = self.offset;
        let mut header = [0u8; RECORD_HEADER_LEN];
        let n = self.read_full(&mut header)?;
        if n == 0 {
            return Ok(Raw::Eof);
        }
        let (len, crc, ty) = match parse_record_header(&header) {
            Some(fields) if n == header.len() => fields,
            _ => return self.damaged(TailDamage::Truncated),
        };
        let len = match usize::try_from(len) {
            Ok(len) if len <= MAX_RECORD_LEN => len,
            _ => return self.damaged(TailDamage::BadLength),
        };
        self.payload.clear();
        let got = if len <= EAGER_PAYLOAD_LEN {
            // The common case (every spanlet): one copy out of the input's
            // buffer, without `read_to_end`'s growth and end-of-input probing.
            self.payload.resize(len, 0);
            let got =
                fill(&mut self.input, &mut self.payload).map_err(CaptureError::io(&self.path))?;
            self.payload.truncate(got);
            got
        } else {
            // A corrupt length must not allocate much before the data runs out.
            self.payload.reserve(EAGER_PAYLOAD_LEN);
            Read::by_ref(&mut self.input)
                .take(len as u64)
                .read_to_end(&mut self.payload)
                .map_err(CaptureError::io(&self.path))?
        };
        self.offset += got as u64;
        if got < len {
            return self.damaged(TailDamage::Truncated);
        }
        if record_crc(ty, &self.payload) != crc {
            return self.damaged(TailDamage::CrcMismatch);
        }
        Ok(Raw::Record(ty))
    }

    /// Records the damaged tail from the current record to the end of input.
    fn damaged(&mut self, damage: TailDamage) -> Result<Raw, CaptureError> {
        let rest =
            io::copy(&mut self.input, &mut io::sink()).map_err(CaptureError::io(&self.path))?;
        self.offset += rest;
        self.tail = Some(DamagedTail {
            offset: self.record_offset,
            bytes: self.offset - self.record_offset,
            damage,
        });
        self.done = true;
        Ok(Raw::Damaged(damage))
    }

    /// Fills `buf` unless the input ends first; returns the bytes read.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, CaptureError> {
        let filled = fill(&mut self.input, buf).map_err(CaptureError::io(&self.path))?;
        self.offset += filled as u64;
        Ok(filled)
    }

    fn json<T: DeserializeOwned>(&self, ty: u8) -> Result<T, CaptureError> {
        serde_json::from_slice(&self.payload).map_err(|e| self.malformed(ty, e.to_string()))
    }

    fn malformed(&self, record_type: u8, reason: String) -> CaptureError {
        CaptureError::Malformed {
            path: self.path.clone(),
            offset: self.record_offset,
            record_type,
            reason,
        }
    }

    fn invalid_meta(&self, reason: String) -> CaptureError {
        CaptureError::InvalidMeta {
            path: self.path.clone(),
            reason,
        }
    }
}

impl<R: Read> Iterator for CaptureReader<R> {
    type Item = Result<Record, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// Fills `buf` from `input` unless the input ends first; returns the bytes read.
fn fill<R: Read>(input: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match input.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Splits a record header into (payload length, CRC, type).
fn parse_record_header(header: &[u8; RECORD_HEADER_LEN]) -> Option<(u32, u32, u8)> {
    let (len, rest) = header.split_first_chunk::<4>()?;
    let (crc, rest) = rest.split_first_chunk::<4>()?;
    let ty = *rest.first()?;
    Some((u32::from_le_bytes(*len), u32::from_le_bytes(*crc), ty))
}

/// Stands in until the real metadata is read in `from_reader`; never seen.
fn placeholder_meta() -> CaptureMeta {
    CaptureMeta {
        format_version: FORMAT_VERSION,
        agent_version: String::new(),
        kernel_release: String::new(),
        hostname: String::new(),
        start_unix_nano: 0,
        command: None,
        pids: Vec::new(),
        min_wait_ns: 0,
        spanlet_fields: Vec::new(),
    }
}

/// A whole capture in memory, as reports and exports use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    /// Where it was read from (empty for captures built in code).
    pub path: PathBuf,
    pub meta: CaptureMeta,
    /// By PID; a later record for the same PID replaces an earlier one.
    pub processes: BTreeMap<u32, ProcessInfo>,
    /// Latest name of each (pid, tid).
    pub threads: BTreeMap<(u32, u32), String>,
    /// Thread ids in a nested PID namespace, where recorded.
    pub thread_ns_tids: BTreeMap<(u32, u32), u32>,
    pub spanlets: Vec<Spanlet>,
    /// The last stats record, if any was written before the file ended.
    pub stats: Option<CaptureStats>,
    /// `None` when the recorder did not end cleanly.
    pub end: Option<CaptureEnd>,
    /// The file ended in a partial or corrupt record (typically a crash);
    /// everything before it was read.
    pub truncated: bool,
    pub damaged_tail_bytes: u64,
    /// Records of unknown types (from a newer writer) that were skipped.
    pub skipped_records: u64,
}

impl Capture {
    /// An empty capture, for building one in code.
    pub fn new(meta: CaptureMeta) -> Self {
        Self {
            path: PathBuf::new(),
            meta,
            processes: BTreeMap::new(),
            threads: BTreeMap::new(),
            thread_ns_tids: BTreeMap::new(),
            spanlets: Vec::new(),
            stats: None,
            end: None,
            truncated: false,
            damaged_tail_bytes: 0,
            skipped_records: 0,
        }
    }

    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let reader = CaptureReader::open(path)?;
        // Sizing the spanlet list from the file up front saves growing (and
        // copying) a list of a few hundred MB on large captures.
        let file_len = reader.input.get_ref().metadata().map_or(0, |m| m.len());
        let hint = usize::try_from(file_len / TYPICAL_SPANLET_RECORD_LEN).unwrap_or(0);
        Self::read_all_reserving(reader, hint)
    }

    /// Reads a capture from any byte source; `path` only names it in errors.
    pub fn from_reader<R: Read>(input: R, path: impl Into<PathBuf>) -> Result<Self, CaptureError> {
        Self::read_all(CaptureReader::from_reader(input, path)?)
    }

    /// Collects the remaining records of `reader`.
    pub fn read_all<R: Read>(reader: CaptureReader<R>) -> Result<Self, CaptureError> {
        Self::read_all_reserving(reader, 0)
    }

    fn read_all_reserving<R: Read>(
        mut reader: CaptureReader<R>,
        spanlets: usize,
    ) -> Result<Self, CaptureError> {
        let mut capture = Self::new(reader.meta().clone());
        capture.spanlets.reserve(spanlets);
        capture.path = reader.path().to_owned();
        while let Some(record) = reader.next_record()? {
            capture.add(record);
        }
        if let Some(tail) = reader.damaged_tail() {
            capture.truncated = true;
            capture.damaged_tail_bytes = tail.bytes;
        }
        capture.skipped_records = reader.skipped_records();
        Ok(capture)
    }

    /// Adds one record as a reader would.
    #[inline]
    pub fn add(&mut self, record: Record) {
        match record {
            Record::Process(p) => {
                self.processes.insert(p.pid, p);
            }
            Record::Thread(t) => {
                if let Some(ns_tid) = t.ns_tid {
                    self.thread_ns_tids.insert((t.pid, t.tid), ns_tid);
                }
                self.threads.insert((t.pid, t.tid), t.name);
            }
            Record::Spanlet(s) => self.spanlets.push(s),
            Record::Stats(s) => self.stats = Some(s),
            Record::End(e) => self.end = Some(e),
        }
    }

    pub fn thread_name(&self, pid: u32, tid: u32) -> Option<&str> {
        self.threads.get(&(pid, tid)).map(String::as_str)
    }

    pub fn process_comm(&self, pid: u32) -> Option<&str> {
        self.processes.get(&pid).map(|p| p.comm.as_str())
    }
}
