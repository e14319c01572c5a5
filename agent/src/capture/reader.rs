//! Reads capture files, either record by record ([`CaptureReader`]) or whole
//! ([`Capture`]).

use std::{
    fmt,
    fs::File,
    io::Read,
    path::{Path, PathBuf},
};

use serde::de::DeserializeOwned;

use super::{
    CaptureError, Integrity, codec,
    format::{
        FORMAT_VERSION, MAGIC, MAX_RECORD_LEN, OLDEST_FORMAT_VERSION, RECORD_HEADER_LEN,
        record_crc, record_type,
    },
    window::Window,
};
use crate::model::{
    CaptureEnd, CaptureMeta, CaptureStats, Names, ProcessInfo, Spanlet, SpanletKind, ThreadInfo,
};

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

/// Bytes scanned at a time for the next intact record after damage.
const SCAN_BLOCK: usize = 64 * 1024;

/// What starts at the reader's position.
enum Frame {
    /// An intact record (length and checksum agree) of this type and
    /// payload length.
    Intact { ty: u8, len: usize },
    /// The input ends cleanly here.
    Eof,
    /// No intact record starts here.
    Damaged(TailDamage),
}

/// Streams the records of a capture so that large files need not fit in
/// memory: memory stays bounded by the largest record, whatever the file's
/// size or its length fields say.
///
/// Damage does not end the stream: the reader skips to the next intact
/// record and counts what it skipped (see [`integrity`]); damage that runs
/// to the end of the file is the damaged tail a crash leaves (see
/// [`damaged_tail`]). A record that passes its checksum but does not decode
/// is an error, since no crash produces it.
///
/// [`integrity`]: CaptureReader::integrity
/// [`damaged_tail`]: CaptureReader::damaged_tail
pub struct CaptureReader<R = File> {
    path: PathBuf,
    window: Window<R>,
    meta: CaptureMeta,
    /// The file's format version, from its header.
    version: u32,
    done: bool,
    tail: Option<DamagedTail>,
    integrity: Integrity,
}

impl CaptureReader<File> {
    /// Opens `path` and reads its header and metadata.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let file = File::open(path).map_err(CaptureError::io(path))?;
        Self::from_reader(file, path)
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads a capture from any byte source; `path` only names it in errors.
    /// The reader does its own buffering.
    pub fn from_reader(input: R, path: impl Into<PathBuf>) -> Result<Self, CaptureError> {
        let mut reader = Self {
            path: path.into(),
            window: Window::new(input),
            meta: placeholder_meta(),
            version: FORMAT_VERSION,
            done: false,
            tail: None,
            integrity: Integrity::default(),
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

    /// Set once reading reached a damaged tail.
    pub fn damaged_tail(&self) -> Option<&DamagedTail> {
        self.tail.as_ref()
    }

    /// What was skipped or is missing, so far.
    pub fn integrity(&self) -> &Integrity {
        &self.integrity
    }

    /// The next record, or `None` at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<Record>, CaptureError> {
        while !self.done {
            let (ty, len) = match self.frame()? {
                Frame::Intact { ty, len } => (ty, len),
                Frame::Eof => break,
                Frame::Damaged(damage) => {
                    self.skip_damage(damage)?;
                    continue;
                }
            };
            let offset = self.window.offset();
            let payload = self
                .window
                .bytes()
                .get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len)
                .unwrap_or_default();
            let decoded = decode(ty, self.version, payload);
            self.window.consume(RECORD_HEADER_LEN + len);
            match decoded {
                Ok(Some(record)) => {
                    self.count(&record);
                    return Ok(Some(record));
                }
                Ok(None) => self.integrity.unknown_records += 1,
                Err(reason) => {
                    self.done = true;
                    return Err(CaptureError::Malformed {
                        path: self.path.clone(),
                        offset,
                        record_type: ty,
                        reason,
                    });
                }
            }
        }
        self.done = true;
        Ok(None)
    }

    fn count(&mut self, record: &Record) {
        match record {
            Record::Spanlet(_) => self.integrity.spanlets_read += 1,
            Record::Stats(stats) => {
                self.integrity.stats_spanlets = Some(stats.spanlets);
                self.integrity.spanlets_read_before_stats = self.integrity.spanlets_read;
            }
            _ => {}
        }
    }

    fn read_header(&mut self) -> Result<(), CaptureError> {
        const LEN: usize = MAGIC.len() + 4;
        let n = self
            .window
            .fill(LEN)
            .map_err(CaptureError::io(&self.path))?;
        let got = self.window.bytes();
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
        let version = match got.get(MAGIC.len()..LEN).map(<[u8; 4]>::try_from) {
            Some(Ok(bytes)) => u32::from_le_bytes(bytes),
            _ => return Err(self.invalid_meta("the file ends inside its header".into())),
        };
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(CaptureError::UnsupportedVersion {
                path: self.path.clone(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        self.window.consume(LEN);
        self.version = version;
        Ok(())
    }

    fn read_meta(&mut self) -> Result<CaptureMeta, CaptureError> {
        let len = match self.frame()? {
            Frame::Intact {
                ty: record_type::META,
                len,
            } => len,
            Frame::Intact { ty, .. } => {
                return Err(
                    self.invalid_meta(format!("the first record is of type {ty}, not metadata"))
                );
            }
            Frame::Eof => return Err(self.invalid_meta("the file ends before it".into())),
            Frame::Damaged(damage) => return Err(self.invalid_meta(damage.to_string())),
        };
        let payload = self
            .window
            .bytes()
            .get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len)
            .unwrap_or_default();
        let meta: Result<CaptureMeta, _> = serde_json::from_slice(payload);
        self.window.consume(RECORD_HEADER_LEN + len);
        let meta = meta.map_err(|e| self.invalid_meta(e.to_string()))?;
        if meta.format_version != self.version {
            return Err(self.invalid_meta(format!(
                "it says format version {} but the file header says {}",
                meta.format_version, self.version
            )));
        }
        Ok(meta)
    }

    /// Checks what starts at the current position, without consuming it.
    /// An intact record is then all in `window.bytes()`.
    #[inline]
    fn frame(&mut self) -> Result<Frame, CaptureError> {
        let io = CaptureError::io(&self.path);
        let available = self.window.fill(RECORD_HEADER_LEN).map_err(io)?;
        if available == 0 {
            return Ok(Frame::Eof);
        }
        let Some((len, crc, ty)) = self
            .window
            .bytes()
            .first_chunk::<RECORD_HEADER_LEN>()
            .map(parse_record_header)
        else {
            return Ok(Frame::Damaged(TailDamage::Truncated));
        };
        // A length beyond the limit is damage, never a size to allocate.
        let len = match usize::try_from(len) {
            Ok(len) if len <= MAX_RECORD_LEN => len,
            _ => return Ok(Frame::Damaged(TailDamage::BadLength)),
        };
        let total = RECORD_HEADER_LEN + len;
        let io = CaptureError::io(&self.path);
        if self.window.fill(total).map_err(io)? < total {
            return Ok(Frame::Damaged(TailDamage::Truncated));
        }
        let payload = self
            .window
            .bytes()
            .get(RECORD_HEADER_LEN..total)
            .unwrap_or_default();
        if record_crc(ty, payload) != crc {
            return Ok(Frame::Damaged(TailDamage::CrcMismatch));
        }
        Ok(Frame::Intact { ty, len })
    }

    /// Skips the damaged bytes at the current position, up to the next
    /// intact record or, when there is none, to the end of the file (the
    /// damaged tail).
    fn skip_damage(&mut self, damage: TailDamage) -> Result<(), CaptureError> {
        let start = self.window.offset();
        self.window.consume(1);
        loop {
            let io = CaptureError::io(&self.path);
            let available = self.window.fill(SCAN_BLOCK).map_err(io)?;
            if available < RECORD_HEADER_LEN {
                let io = CaptureError::io(&self.path);
                self.window.consume_to_end().map_err(io)?;
                self.tail = Some(DamagedTail {
                    offset: start,
                    bytes: self.window.offset() - start,
                    damage,
                });
                self.done = true;
                return Ok(());
            }
            let Some(at) = next_candidate(self.window.bytes()) else {
                // A record may start in the last bytes; keep them.
                self.window.consume(available - (RECORD_HEADER_LEN - 1));
                continue;
            };
            self.window.consume(at);
            if self.intact_record_follows()? {
                let bytes = self.window.offset() - start;
                self.integrity.add_damaged_stretch(start, bytes);
                return Ok(());
            }
            self.window.consume(1);
        }
    }

    /// Whether a record a writer could have written after the metadata
    /// starts at the current position. Cheap checks come before the
    /// checksum, which makes false matches in damaged bytes rarer still.
    fn intact_record_follows(&mut self) -> Result<bool, CaptureError> {
        let io = CaptureError::io(&self.path);
        self.window.fill(RECORD_HEADER_LEN + 1).map_err(io)?;
        let bytes = self.window.bytes();
        let plausible = match (
            bytes
                .first_chunk::<RECORD_HEADER_LEN>()
                .map(parse_record_header),
            bytes.get(RECORD_HEADER_LEN),
        ) {
            (Some((len, _, ty)), Some(&first)) => {
                len as usize <= MAX_RECORD_LEN
                    && match ty {
                        record_type::SPANLET => SpanletKind::from_code(first).is_some(),
                        _ => first == b'{',
                    }
            }
            _ => false,
        };
        Ok(plausible && matches!(self.frame()?, Frame::Intact { .. }))
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

/// Decodes a record after the metadata: `None` for a type this build does
/// not know, the reason for a payload that does not decode.
#[inline]
fn decode(ty: u8, version: u32, payload: &[u8]) -> Result<Option<Record>, String> {
    fn json<T: DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
        serde_json::from_slice(payload).map_err(|e| e.to_string())
    }
    Ok(Some(match ty {
        record_type::META => return Err("a second metadata record".into()),
        record_type::PROCESS => Record::Process(json(payload)?),
        record_type::THREAD => Record::Thread(json(payload)?),
        record_type::SPANLET => {
            Record::Spanlet(codec::decode_spanlet(version, payload).map_err(|e| e.to_string())?)
        }
        record_type::STATS => Record::Stats(json(payload)?),
        record_type::END => Record::End(json(payload)?),
        _ => return Ok(None),
    }))
}

/// Types an intact record found by scanning damage may have: those written
/// after the metadata. Unknown types are not looked for, so that a false
/// match is rarer.
#[inline]
fn is_scan_type(b: u8) -> bool {
    (record_type::PROCESS..=record_type::END).contains(&b)
}

/// The first offset in `bytes` where a record header with a scan type
/// could start.
fn next_candidate(bytes: &[u8]) -> Option<usize> {
    let types = bytes.get(RECORD_HEADER_LEN - 1..)?;
    let mut base = 0;
    // Blocks checked without an early exit compile to vector code, so long
    // runs of bytes that cannot be a record (zeros) are passed over quickly.
    for block in types.chunks(64) {
        if block.iter().fold(false, |any, &b| any | is_scan_type(b)) {
            return block
                .iter()
                .position(|&b| is_scan_type(b))
                .map(|i| base + i);
        }
        base += block.len();
    }
    None
}

/// Splits a record header into (payload length, CRC, type).
fn parse_record_header(header: &[u8; RECORD_HEADER_LEN]) -> (u32, u32, u8) {
    let [l0, l1, l2, l3, c0, c1, c2, c3, ty] = *header;
    (
        u32::from_le_bytes([l0, l1, l2, l3]),
        u32::from_le_bytes([c0, c1, c2, c3]),
        ty,
    )
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
    /// Processes by PID and the latest name of each (pid, tid); a later
    /// record for the same PID or thread replaces an earlier one.
    pub names: Names,
    pub spanlets: Vec<Spanlet>,
    /// The last stats record, if any was written before the file ended.
    pub stats: Option<CaptureStats>,
    /// `None` when the recorder did not end cleanly.
    pub end: Option<CaptureEnd>,
    /// The file ended in a partial or corrupt record (typically a crash);
    /// everything before it was read.
    pub truncated: bool,
    pub damaged_tail_bytes: u64,
    /// Damage skipped in the middle, unknown records, missing spanlets.
    pub integrity: Integrity,
}

impl Capture {
    /// An empty capture, for building one in code.
    pub fn new(meta: CaptureMeta) -> Self {
        Self {
            path: PathBuf::new(),
            meta,
            names: Names::default(),
            spanlets: Vec::new(),
            stats: None,
            end: None,
            truncated: false,
            damaged_tail_bytes: 0,
            integrity: Integrity::default(),
        }
    }

    /// Reads a whole capture. Memory grows with the records actually read,
    /// never with the file's size.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        Self::read_all(CaptureReader::open(path)?)
    }

    /// Reads a capture from any byte source; `path` only names it in errors.
    pub fn from_reader<R: Read>(input: R, path: impl Into<PathBuf>) -> Result<Self, CaptureError> {
        Self::read_all(CaptureReader::from_reader(input, path)?)
    }

    /// Collects the remaining records of `reader`.
    pub fn read_all<R: Read>(reader: CaptureReader<R>) -> Result<Self, CaptureError> {
        Self::read_filtered(reader, true)
    }

    /// Everything but the spanlets (names, stats, end, damage), for passing
    /// over a capture before streaming its spanlets.
    pub fn read_names<R: Read>(reader: CaptureReader<R>) -> Result<Self, CaptureError> {
        Self::read_filtered(reader, false)
    }

    fn read_filtered<R: Read>(
        mut reader: CaptureReader<R>,
        spanlets: bool,
    ) -> Result<Self, CaptureError> {
        let mut capture = Self::new(reader.meta().clone());
        capture.path = reader.path().to_owned();
        while let Some(record) = reader.next_record()? {
            if spanlets || !matches!(record, Record::Spanlet(_)) {
                capture.add(record);
            }
        }
        if let Some(tail) = reader.damaged_tail() {
            capture.truncated = true;
            capture.damaged_tail_bytes = tail.bytes;
        }
        capture.integrity = reader.integrity().clone();
        Ok(capture)
    }

    /// What a reader should be warned of, one sentence each (see
    /// [`Integrity::warnings`]).
    pub fn warnings(&self) -> Vec<String> {
        self.integrity
            .warnings(self.truncated.then_some(self.damaged_tail_bytes))
    }

    /// Adds one record as a reader would.
    #[inline]
    pub fn add(&mut self, record: Record) {
        match record {
            Record::Process(p) => self.names.insert_process(p),
            Record::Thread(mut t) => {
                // A record without a namespace tid keeps the one known.
                t.ns_tid = t.ns_tid.or_else(|| self.names.ns_tid(t.pid, t.tid));
                self.names.insert_thread(t);
            }
            Record::Spanlet(s) => self.spanlets.push(s),
            Record::Stats(s) => self.stats = Some(s),
            Record::End(e) => self.end = Some(e),
        }
    }

    pub fn thread_name(&self, pid: u32, tid: u32) -> Option<&str> {
        self.names.thread_name(pid, tid)
    }

    pub fn process_comm(&self, pid: u32) -> Option<&str> {
        self.names.process_comm(pid)
    }
}
