//! The file layout's constants: the magic bytes, the format versions, a
//! record's framing (header length, size bound, type bytes) and its CRC.
//! The reader, the writer and the tests share them from here.

/// First bytes of every capture file; the NUL keeps it from reading as text.
pub const MAGIC: &[u8; 8] = b"SPANLET\0";

/// Version of the file layout and of the binary spanlet encoding. Bumped on any
/// incompatible change; readers refuse versions they do not know. Version 2
/// added a spanlet's socket.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest version this build still reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// Bytes before a record's payload: length, CRC and type.
pub(super) const RECORD_HEADER_LEN: usize = 9;

/// Upper bound on a payload. Real records are far smaller; the bound lets a
/// reader treat a corrupt length as damage instead of reading gigabytes.
pub(super) const MAX_RECORD_LEN: usize = 16 * 1024 * 1024;

/// Record type bytes. Readers skip types they do not know (with a valid CRC),
/// so new record types can be added without bumping [`FORMAT_VERSION`].
pub(super) mod record_type {
    pub const META: u8 = 1;
    pub const PROCESS: u8 = 2;
    pub const THREAD: u8 = 3;
    pub const SPANLET: u8 = 4;
    pub const STATS: u8 = 5;
    pub const END: u8 = 6;
}

/// CRC of a record as stored: the type byte is covered so that a flipped type
/// cannot make a payload decode as something else.
pub(super) fn record_crc(record_type: u8, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[record_type]);
    hasher.update(payload);
    hasher.finalize()
}
