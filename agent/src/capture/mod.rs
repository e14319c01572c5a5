//! Capture files: what `spanlet record` writes and every other command reads.
//!
//! Layout: the magic bytes [`MAGIC`], a `u32` little-endian [`FORMAT_VERSION`],
//! then records, each `[u32 payload_len][u32 crc32(type byte + payload)][u8
//! type][payload]` (little-endian). The first record is always the metadata.
//!
//! The file is only ever appended to and every record carries its own length
//! and checksum, so after a crash a reader keeps everything up to the last
//! complete record and reports the damaged tail instead of failing.

mod codec;
#[cfg(test)]
mod corpus;
mod error;
mod integrity;
mod output;
#[cfg(test)]
mod proptests;
mod reader;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;
mod window;
mod writer;

pub use codec::spanlet_field_names;
pub use error::CaptureError;
pub use integrity::{Integrity, OFFSETS_KEPT};
pub use output::{PRIVATE_MODE, PrivateFile};
pub use reader::{Capture, CaptureReader, DamagedTail, Record, TailDamage};
pub use writer::CaptureWriter;

/// First bytes of every capture file; the NUL keeps it from reading as text.
pub const MAGIC: &[u8; 8] = b"SPANLET\0";

/// Version of the file layout and of the binary spanlet encoding. Bumped on any
/// incompatible change; readers refuse versions they do not know. Version 2
/// added a spanlet's socket.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest version this build still reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// Bytes before a record's payload: length, CRC and type.
const RECORD_HEADER_LEN: usize = 9;

/// Upper bound on a payload. Real records are far smaller; the bound lets a
/// reader treat a corrupt length as damage instead of reading gigabytes.
const MAX_RECORD_LEN: usize = 16 * 1024 * 1024;

/// Record type bytes. Readers skip types they do not know (with a valid CRC),
/// so new record types can be added without bumping [`FORMAT_VERSION`].
mod record_type {
    pub const META: u8 = 1;
    pub const PROCESS: u8 = 2;
    pub const THREAD: u8 = 3;
    pub const SPANLET: u8 = 4;
    pub const STATS: u8 = 5;
    pub const END: u8 = 6;
}

/// CRC of a record as stored: the type byte is covered so that a flipped type
/// cannot make a payload decode as something else.
fn record_crc(record_type: u8, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[record_type]);
    hasher.update(payload);
    hasher.finalize()
}
