//! Sample values shared by the capture, report and export tests.

use std::path::Path;

pub(crate) use super::sample_spanlets::{full_spanlet, minimal_spanlet};
use crate::model::{CaptureEnd, CaptureMeta, CaptureStats, ProcessInfo, ThreadInfo};

pub(crate) fn sample_meta() -> CaptureMeta {
    CaptureMeta {
        format_version: super::FORMAT_VERSION,
        agent_version: "0.1.0".into(),
        kernel_release: "6.8.0-test".into(),
        hostname: "testhost".into(),
        start_unix_nano: 1_700_000_000_000_000_000,
        command: Some(vec!["./app".into(), "--flag".into()]),
        pids: vec![100],
        min_wait_ns: 10_000,
        spanlet_fields: super::spanlet_field_names(),
    }
}

pub(crate) fn sample_process() -> ProcessInfo {
    ProcessInfo {
        pid: 100,
        comm: "app".into(),
        cmdline: vec!["./app".into(), "--flag".into()],
        ..ProcessInfo::default()
    }
}

pub(crate) fn sample_thread(tid: u32, name: &str) -> ThreadInfo {
    ThreadInfo {
        pid: 100,
        tid,
        name: name.into(),
        ns_tid: None,
    }
}

pub(crate) fn sample_stats() -> CaptureStats {
    CaptureStats {
        spanlets: 2,
        waits_seen: 3,
        below_min_wait: 4,
        holds_below_min_wait: 11,
        kernel_lock_waits_below_min_wait: 14,
        exited_in_wait: 12,
        waits_ended_at_wake: 13,
        dropped_ringbuf_full: 5,
        dropped_waits_map_full: 6,
        dropped_pids_map_full: 7,
        dropped_held_map_full: 8,
        dropped_kernel_locks_map_full: 15,
        epoll_sleeps_without_socket: 16,
        socket_waits_untracked_line: 17,
        dropped_user_queue_full: 9,
        malformed_events: 10,
    }
}

pub(crate) fn sample_end() -> CaptureEnd {
    CaptureEnd {
        end_unix_nano: 1_700_000_002_100_000_000,
        reason: "duration elapsed".into(),
    }
}

/// A framed record with a correct CRC, whatever the payload.
pub(crate) fn raw_record(ty: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&super::format::record_crc(ty, payload).to_le_bytes());
    out.push(ty);
    out.extend_from_slice(payload);
    out
}

/// Ends a capture being written: `n` copies of [`full_spanlet`] (with
/// `wait_ns` 0, 1, ...), a stats record counting them and the end record.
/// Returns the file's bytes.
pub(crate) fn finish_with_spanlets(mut w: super::CaptureWriter, path: &Path, n: u64) -> Vec<u8> {
    for i in 0..n {
        let mut s = full_spanlet();
        s.wait_ns = i;
        w.write_spanlet(&s).expect("spanlet");
    }
    w.write_stats(&CaptureStats {
        spanlets: n,
        ..CaptureStats::default()
    })
    .expect("stats");
    w.finish(&sample_end()).expect("finish");
    std::fs::read(path).expect("read back")
}

/// Offsets of the records after the file header.
pub(crate) fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 12;
    while at + super::format::RECORD_HEADER_LEN <= bytes.len() {
        out.push(at);
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += super::format::RECORD_HEADER_LEN + len;
    }
    out
}
