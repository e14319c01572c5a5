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
mod format;
mod integrity;
mod output;
#[cfg(test)]
mod proptests;
mod reader;
#[cfg(test)]
mod sample_spanlets;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;
mod window;
mod writer;

pub use codec::spanlet_field_names;
pub use error::CaptureError;
pub use format::{FORMAT_VERSION, MAGIC, OLDEST_FORMAT_VERSION};
pub use integrity::{Integrity, OFFSETS_KEPT};
pub use output::{PRIVATE_MODE, PrivateFile};
pub use reader::{Capture, CaptureReader, DamagedTail, Record, TailDamage};
pub use writer::CaptureWriter;
