//! The capture seeds of the fuzz corpus (fuzz/corpus/capture_reader/), and
//! a check that they stay what they claim: `valid-*` files read back whole
//! with today's reader, `damaged-*` files are read up to their damage or
//! refused, never a panic. With `SPANLET_WRITE_FUZZ_SEEDS=1` the valid and
//! damaged seeds are written first, by the agent's own capture writer.

use std::{
    fs,
    path::{Path, PathBuf},
};

use spanlet::{
    capture::{Capture, CaptureWriter, FORMAT_VERSION, spanlet_field_names},
    model::{
        CaptureEnd, CaptureMeta, CaptureStats, ProcessInfo, SpanContext, Spanlet, SpanletKind,
        ThreadInfo, WaitOutcome,
    },
};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/capture_reader")
}

fn spanlet(kind: SpanletKind, tid: u32, wait_ns: u64, holder: Option<u32>) -> Spanlet {
    Spanlet {
        kind,
        pid: 100,
        tid,
        comm: "worker".into(),
        addr: 0x7f00_0000_1000,
        start_unix_nano: 1_700_000_000_000_000_000 + u64::from(tid),
        wait_ns,
        woken_after_ns: holder.map(|_| wait_ns),
        outcome: WaitOutcome::Woken,
        holder_tid: holder,
        waker_pid: holder.map(|_| 100),
        waker_tid: holder,
        waker_comm: holder.map(|_| "holder".into()),
        syscall: 202,
        op: 0x80,
        arg: 2,
        flags: 0,
        context: Some(SpanContext {
            trace_id: [0x4b; 16],
            span_id: [0xf0; 8],
        }),
        holder_context: None,
        waker_context: None,
        socket: None,
    }
}

/// A small capture with every record type, and a thread whose name holds
/// terminal escapes.
fn write_valid(path: &Path) {
    let meta = CaptureMeta {
        format_version: FORMAT_VERSION,
        agent_version: "0.1.0".into(),
        kernel_release: "6.8.0-seed".into(),
        hostname: "seedhost".into(),
        start_unix_nano: 1_700_000_000_000_000_000,
        command: Some(vec!["./app".into(), "--flag".into()]),
        pids: vec![100],
        min_wait_ns: 10_000,
        spanlet_fields: spanlet_field_names(),
    };
    let mut w = CaptureWriter::create(path, &meta).expect("create seed capture");
    w.write_process(&ProcessInfo {
        pid: 100,
        comm: "app".into(),
        cmdline: vec!["./app".into(), "--flag".into()],
        ..ProcessInfo::default()
    })
    .expect("process record");
    for (tid, name) in [(101, "holder"), (102, "\x1b]0;PWN\x07\x1b[2J")] {
        w.write_thread(&ThreadInfo {
            pid: 100,
            tid,
            name: name.into(),
            ..ThreadInfo::default()
        })
        .expect("thread record");
    }
    w.write_spanlet(&spanlet(SpanletKind::MutexWait, 102, 1_500_000, Some(101)))
        .expect("spanlet record");
    w.write_spanlet(&spanlet(SpanletKind::MutexHold, 101, 2_000_000, None))
        .expect("spanlet record");
    w.write_spanlet(&spanlet(SpanletKind::FutexWait, 102, 30_000, None))
        .expect("spanlet record");
    w.write_stats(&CaptureStats::default())
        .expect("stats record");
    w.finish(&CaptureEnd {
        end_unix_nano: 1_700_000_002_000_000_000,
        reason: "duration elapsed".into(),
    })
    .expect("end record");
}

/// Damage as a crash, a flipped bit or a hostile file would do it.
fn write_damaged(valid: &[u8], dir: &Path) {
    let header = 8 + 4; // magic, version
    let mut flipped = valid.to_vec();
    // A byte inside the first record's payload: its CRC no longer matches.
    flipped[header + 12] ^= 0x40;
    let mut huge_len = valid.to_vec();
    huge_len[header..header + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut bad_version = valid.to_vec();
    bad_version[8..12].copy_from_slice(&999u32.to_le_bytes());
    let cases: [(&str, Vec<u8>); 5] = [
        (
            "damaged-truncated.spanlet",
            valid[..valid.len() * 3 / 5].to_vec(),
        ),
        ("damaged-crc.spanlet", flipped),
        ("damaged-huge-length.spanlet", huge_len),
        ("damaged-version.spanlet", bad_version),
        ("damaged-magic-only.spanlet", valid[..8].to_vec()),
    ];
    for (name, bytes) in cases {
        fs::write(dir.join(name), bytes).expect("write damaged seed");
    }
}

#[test]
fn capture_seeds_read_as_they_claim() {
    let dir = corpus();
    if std::env::var_os("SPANLET_WRITE_FUZZ_SEEDS").is_some_and(|v| v == "1") {
        let valid = dir.join("valid-small.spanlet");
        write_valid(&valid);
        write_damaged(&fs::read(&valid).expect("read seed"), &dir);
    }
    let mut valid = 0;
    for entry in fs::read_dir(&dir).expect("fuzz/corpus/capture_reader exists") {
        let path = entry.expect("corpus entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let read = Capture::open(&path);
        if name.starts_with("valid-") {
            let capture = read.unwrap_or_else(|e| panic!("{name} no longer reads: {e}"));
            assert!(!capture.truncated, "{name} reads as truncated");
            assert!(capture.end.is_some(), "{name} has no end record");
            assert!(!capture.spanlets.is_empty(), "{name} has no spanlets");
            valid += 1;
        }
        // Anything else only has to be read or refused without a panic.
    }
    assert!(valid > 0, "no valid-* capture seed in {}", dir.display());
}
