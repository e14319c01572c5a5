//! The damaged captures of these tests, kept as files in
//! `fuzz/corpus/capture_reader/` to seed the capture reader's fuzz target.
//!
//! `SPANLET_WRITE_CORPUS=1 cargo test -p agent --lib capture::corpus`
//! writes them again; otherwise the test checks that each committed file
//! still reads as expected. The files are generated, not compared byte for
//! byte, so that adding a stats counter does not make them stale.

use std::path::{Path, PathBuf};

use super::format::record_type;
use super::testutil::{
    finish_with_spanlets, raw_record, record_offsets, sample_meta, sample_process, sample_thread,
};
use super::*;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/capture_reader")
}

/// What reading a corpus file gives.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Opens: spanlets read, damaged stretches, damaged tail bytes, unknown
    /// records.
    Reads {
        spanlets: usize,
        stretches: u64,
        tail: u64,
        unknown: u64,
    },
    /// Fails to open, with this error (its variant name).
    Fails(&'static str),
}

const SPANLETS: u64 = 20;

/// An intact capture of a process, two threads, [`SPANLETS`] spanlets and
/// a stats record counting them.
fn intact() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c");
    let mut w = CaptureWriter::create(&path, &sample_meta()).expect("create");
    w.write_process(&sample_process()).expect("process");
    w.write_thread(&sample_thread(101, "holder"))
        .expect("thread");
    w.write_thread(&sample_thread(102, "waker"))
        .expect("thread");
    finish_with_spanlets(w, &path, SPANLETS)
}

fn with(mut bytes: Vec<u8>, change: impl FnOnce(&mut Vec<u8>, &[usize])) -> Vec<u8> {
    let at = record_offsets(&bytes);
    change(&mut bytes, &at);
    bytes
}

/// Every corpus file: its name, bytes and what reading it gives.
fn corpus() -> Vec<(&'static str, Vec<u8>, Outcome)> {
    let reads = |spanlets, stretches, tail, unknown| Outcome::Reads {
        spanlets,
        stretches,
        tail,
        unknown,
    };
    let n = SPANLETS as usize;
    let base = intact();
    let len = base.len();
    // Records: 0 meta, 1 process, 2-3 threads, 4.. spanlets, then stats, end.
    let mid = 4 + n / 2;
    let last = *record_offsets(&base).last().expect("records");
    let mut unknown = raw_record(200, b"from a newer spanlet");
    unknown.extend_from_slice(&raw_record(201, b"{}"));
    vec![
        ("intact.spanlet", base.clone(), reads(n, 0, 0, 0)),
        (
            "payload_bit_flipped.spanlet",
            with(base.clone(), |b, at| b[at[mid] + 40] ^= 0x08),
            reads(n - 1, 1, 0, 0),
        ),
        (
            "length_bit_flipped.spanlet",
            with(base.clone(), |b, at| b[at[mid] + 1] ^= 0x02),
            reads(n - 1, 1, 0, 0),
        ),
        (
            "length_huge.spanlet",
            with(base.clone(), |b, at| {
                b[at[mid]..at[mid] + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            }),
            reads(n - 1, 1, 0, 0),
        ),
        (
            "garbage_inserted.spanlet",
            with(base.clone(), |b, at| {
                let garbage: Vec<u8> = (0u8..=255).rev().cycle().take(300).collect();
                b.splice(at[mid]..at[mid], garbage);
            }),
            reads(n, 1, 0, 0),
        ),
        (
            "records_cut_out.spanlet",
            with(base.clone(), |b, at| {
                b.drain(at[mid]..at[mid + 5]);
            }),
            reads(n - 5, 0, 0, 0),
        ),
        (
            "unknown_record_types.spanlet",
            with(base.clone(), |b, at| {
                b.splice(at[mid]..at[mid], unknown.iter().copied());
            }),
            reads(n, 0, 0, 2),
        ),
        (
            "truncated_in_last_record.spanlet",
            base[..len - 5].to_vec(),
            reads(n, 0, (len - 5 - last) as u64, 0),
        ),
        (
            "zeros_after_the_end.spanlet",
            with(base.clone(), |b, _| b.resize(b.len() + 2048, 0)),
            reads(n, 0, 2048, 0),
        ),
        ("empty.spanlet", Vec::new(), Outcome::Fails("Empty")),
        (
            "bad_magic.spanlet",
            with(base.clone(), |b, _| b[0] = b'X'),
            Outcome::Fails("NotACapture"),
        ),
        (
            "unsupported_version.spanlet",
            with(base.clone(), |b, _| b[8] = 9),
            Outcome::Fails("UnsupportedVersion"),
        ),
        (
            "meta_damaged.spanlet",
            with(base.clone(), |b, at| b[at[0] + 20] ^= 1),
            Outcome::Fails("InvalidMeta"),
        ),
        (
            "malformed_spanlet_with_valid_crc.spanlet",
            with(base, |b, at| {
                let bad = raw_record(record_type::SPANLET, &[9, 9, 9]);
                b.splice(at[mid]..at[mid], bad);
            }),
            Outcome::Fails("Malformed"),
        ),
    ]
}

fn outcome(bytes: &[u8]) -> Outcome {
    let variant = |e: &CaptureError| match e {
        CaptureError::Io { .. } => "Io",
        CaptureError::Empty { .. } => "Empty",
        CaptureError::NotACapture { .. } => "NotACapture",
        CaptureError::UnsupportedVersion { .. } => "UnsupportedVersion",
        CaptureError::InvalidMeta { .. } => "InvalidMeta",
        CaptureError::Malformed { .. } => "Malformed",
        CaptureError::Encode { .. } => "Encode",
    };
    match Capture::from_reader(bytes, "corpus") {
        Ok(c) => Outcome::Reads {
            spanlets: c.spanlets.len(),
            stretches: c.integrity.damaged_stretches,
            tail: c.damaged_tail_bytes,
            unknown: c.integrity.unknown_records,
        },
        Err(e) => Outcome::Fails(variant(&e)),
    }
}

#[test]
fn corpus_files_read_as_expected() {
    let dir = corpus_dir();
    let write = std::env::var_os("SPANLET_WRITE_CORPUS").is_some();
    if write {
        std::fs::create_dir_all(&dir).expect("create the corpus directory");
    }
    for (name, bytes, expected) in corpus() {
        assert_eq!(outcome(&bytes), expected, "{name} as generated");
        assert!(bytes.len() <= 8 * 1024, "{name} is {} bytes", bytes.len());
        let path = dir.join(name);
        if write {
            std::fs::write(&path, &bytes).expect("write corpus file");
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; write the corpus with SPANLET_WRITE_CORPUS=1",
                path.display()
            )
        });
        assert_eq!(outcome(&committed), expected, "{}", path.display());
    }
}
