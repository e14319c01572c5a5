//! Appends records to a capture file.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::{
    CaptureError, PrivateFile, codec,
    format::{FORMAT_VERSION, MAGIC, MAX_RECORD_LEN, RECORD_HEADER_LEN, record_crc, record_type},
};
use crate::model::{CaptureEnd, CaptureMeta, CaptureStats, ProcessInfo, Spanlet, ThreadInfo};

/// Large enough that a busy capture does few write syscalls; what sits in the
/// buffer at a crash is lost, which the reader tolerates.
const BUFFER_CAPACITY: usize = 256 * 1024;

/// Writes a capture file. Records go through a buffer; call [`flush`] now and
/// then so a crash loses little, and [`finish`] at the end.
///
/// [`flush`]: CaptureWriter::flush
/// [`finish`]: CaptureWriter::finish
pub struct CaptureWriter {
    path: PathBuf,
    out: BufWriter<File>,
    /// One record being assembled (header then payload), reused so that
    /// writing a spanlet does not allocate.
    record: Vec<u8>,
}

impl CaptureWriter {
    /// Creates a new capture at `path`; see [`CaptureWriter::start`].
    pub fn create(path: &Path, meta: &CaptureMeta) -> Result<Self, CaptureError> {
        let file = PrivateFile::create(path).map_err(CaptureError::io(path))?;
        Self::start(file, meta)
    }

    /// Writes the header and metadata to `file`, then renames it over its
    /// output path, so a capture appears there complete with its metadata
    /// and replaces (never writes through) whatever was at the path.
    ///
    /// The stored metadata always carries this build's `format_version` and
    /// `spanlet_fields`, whatever `meta` holds, so the file cannot misdescribe
    /// itself.
    pub fn start(file: PrivateFile, meta: &CaptureMeta) -> Result<Self, CaptureError> {
        let path = file.path().to_owned();
        let out = file.file().try_clone().map_err(CaptureError::io(&path))?;
        let mut writer = Self {
            out: BufWriter::with_capacity(BUFFER_CAPACITY, out),
            path,
            record: Vec::with_capacity(256),
        };
        let mut header = [0u8; 12];
        let (magic, version) = header.split_at_mut(MAGIC.len());
        magic.copy_from_slice(MAGIC);
        version.copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        writer
            .out
            .write_all(&header)
            .map_err(CaptureError::io(&writer.path))?;
        let meta = CaptureMeta {
            format_version: FORMAT_VERSION,
            spanlet_fields: codec::spanlet_field_names(),
            ..meta.clone()
        };
        writer.write_json(record_type::META, &meta)?;
        // A capture that dies right away should still open as an empty capture.
        writer.flush()?;
        file.persist().map_err(CaptureError::io(&writer.path))?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write_process(&mut self, process: &ProcessInfo) -> Result<(), CaptureError> {
        self.write_json(record_type::PROCESS, process)
    }

    pub fn write_thread(&mut self, thread: &ThreadInfo) -> Result<(), CaptureError> {
        self.write_json(record_type::THREAD, thread)
    }

    pub fn write_spanlet(&mut self, spanlet: &Spanlet) -> Result<(), CaptureError> {
        self.begin_record();
        codec::encode_spanlet(spanlet, &mut self.record);
        self.end_record(record_type::SPANLET)
    }

    /// Readers keep the last stats record, so write the running totals, not
    /// increments.
    pub fn write_stats(&mut self, stats: &CaptureStats) -> Result<(), CaptureError> {
        self.write_json(record_type::STATS, stats)
    }

    /// Hands buffered records to the OS, so they survive a crash of the agent
    /// (not of the machine).
    pub fn flush(&mut self) -> Result<(), CaptureError> {
        self.out.flush().map_err(CaptureError::io(&self.path))
    }

    /// Writes the end record, flushes and syncs the file to disk.
    pub fn finish(mut self, end: &CaptureEnd) -> Result<(), CaptureError> {
        self.write_json(record_type::END, end)?;
        self.flush()?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(CaptureError::io(&self.path))
    }

    fn write_json<T: Serialize>(&mut self, ty: u8, value: &T) -> Result<(), CaptureError> {
        self.begin_record();
        serde_json::to_writer(&mut self.record, value).map_err(|e| CaptureError::Encode {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        self.end_record(ty)
    }

    /// Reserves the header; the payload is appended after it.
    fn begin_record(&mut self) {
        self.record.clear();
        self.record.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    }

    /// Fills in the header of the assembled record and writes it in one call.
    fn end_record(&mut self, ty: u8) -> Result<(), CaptureError> {
        let Some((header, payload)) = self.record.split_at_mut_checked(RECORD_HEADER_LEN) else {
            return Err(self.encode_error("record buffer lost its header".into()));
        };
        let len = match u32::try_from(payload.len()) {
            Ok(len) if payload.len() <= MAX_RECORD_LEN => len,
            _ => {
                let reason = format!(
                    "record type {ty} is {} bytes, more than the limit of {MAX_RECORD_LEN}",
                    payload.len()
                );
                return Err(self.encode_error(reason));
            }
        };
        let crc = record_crc(ty, payload);
        let (len_bytes, rest) = header.split_at_mut(4);
        let (crc_bytes, ty_byte) = rest.split_at_mut(4);
        len_bytes.copy_from_slice(&len.to_le_bytes());
        crc_bytes.copy_from_slice(&crc.to_le_bytes());
        ty_byte.copy_from_slice(&[ty]);
        self.out
            .write_all(&self.record)
            .map_err(CaptureError::io(&self.path))
    }

    fn encode_error(&self, reason: String) -> CaptureError {
        CaptureError::Encode {
            path: self.path.clone(),
            reason,
        }
    }
}
