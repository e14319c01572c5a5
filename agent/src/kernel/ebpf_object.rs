//! The eBPF object, built by `build.rs` and embedded once. The binary and the
//! tests share this copy; nothing reads a path under `target/` at run time.

/// The object's bytes, 8-byte aligned as the ELF parser wants.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/spanlet-ebpf"));
