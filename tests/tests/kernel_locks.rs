//! `--kernel-locks`: threads queueing on a kernel lock (their process's
//! mmap_lock, taken for writing by mmap and munmap) are recorded as
//! `kernel_lock_wait` spanlets, with the thread that held the lock; a
//! process outside the PID set contending the same way at the same time
//! gets none; without the flag there are none. The report and the OTLP
//! export (to rotel) show the new kind.
//!
//! Workload: `workloads/c_kernel_locks.c`. Needs root and eBPF (see the
//! harness for skip/fail rules).

use std::{
    collections::HashMap,
    process::{Command, Stdio},
};

use serde::Deserialize;
use spanlet_tests::{
    C_KERNEL_LOCKS, Spanlet, collector::Rotel, describe, kernel_test_lock, parse_truth,
    record_command,
};

/// `LCB_F_*` bits of the lock:contention_begin tracepoint.
const LCB_F_SPIN: u32 = 1 << 0;
const LCB_F_WRITE: u32 = 1 << 2;
const LCB_F_MUTEX: u32 = 1 << 5;
const THREADS: &str = "4";
const RUN_MS: &str = "1500";
/// Clocks read in different places (the workload's, the capture's).
const CLOCK_SLACK_NS: u64 = 50_000_000;

#[derive(Debug, Deserialize)]
struct Truth {
    pid: u32,
    tids: Vec<u32>,
    iterations: u64,
    start_unix_nano: u64,
    end_unix_nano: u64,
}

/// A write wait on an rwsem: what mmap and munmap do on mmap_lock.
fn rwsem_write(s: &Spanlet) -> bool {
    let flags = s.futex_op.unwrap_or(0);
    flags & LCB_F_WRITE != 0 && flags & (LCB_F_SPIN | LCB_F_MUTEX) == 0
}

#[test]
fn kernel_lock_waits_name_the_threads_holding_mmap_lock() {
    let _serial = kernel_test_lock();
    // The same contention, untraced, beside the traced run.
    let other = Command::new(C_KERNEL_LOCKS)
        .args([THREADS, "2500"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the untraced copy");
    let rec = record_command(
        &["--kernel-locks", "--min-wait", "0"],
        C_KERNEL_LOCKS,
        &[THREADS, RUN_MS],
    );
    let other_out = other
        .wait_with_output()
        .expect("waiting for the untraced copy");
    assert!(other_out.status.success(), "untraced copy failed");
    let Some(rec) = rec else { return };
    let truth: Truth = rec.truth();
    let other_truth: Truth = parse_truth(&String::from_utf8_lossy(&other_out.stdout), "");
    assert!(truth.iterations > 0, "{truth:?}");

    let spanlets = rec.export_with_kernel_locks();
    let locks: Vec<&Spanlet> = spanlets
        .iter()
        .filter(|s| s.kind == "kernel_lock_wait")
        .collect();
    let ctx = describe(locks.iter().copied(), 30);
    // The main thread maps the workers' stacks while the first ones run.
    let threads: Vec<u32> = truth.tids.iter().copied().chain([truth.pid]).collect();

    // Only the traced process, only its workers, inside its run.
    assert!(
        !spanlets.iter().any(|s| s.pid == other_truth.pid),
        "spanlets of the untraced process {}:\n{}",
        other_truth.pid,
        describe(spanlets.iter().filter(|s| s.pid == other_truth.pid), 10)
    );
    for s in &locks {
        let b = s.brief();
        assert_eq!(s.pid, truth.pid, "{b}");
        assert!(
            threads.contains(&s.tid),
            "not a thread of the workload: {b}"
        );
        assert!(
            s.start_unix_nano + CLOCK_SLACK_NS >= truth.start_unix_nano
                && s.end_unix_nano() <= truth.end_unix_nano + CLOCK_SLACK_NS,
            "outside the workload's run [{}, {}]: {b}",
            truth.start_unix_nano,
            truth.end_unix_nano
        );
        assert!(s.wait_ns > 0, "{b}");
    }

    // Writers queue on mmap_lock: one lock (one key), held by another worker.
    let writes: Vec<&Spanlet> = locks.iter().copied().filter(|s| rwsem_write(s)).collect();
    assert!(
        writes.len() >= 10,
        "{} rwsem write waits in {} iterations of 4 threads:\n{ctx}",
        writes.len(),
        truth.iterations
    );
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for s in &writes {
        *per_key.entry(s.addr.as_str()).or_default() += 1;
    }
    let top = per_key.values().copied().max().unwrap_or(0);
    assert!(
        top * 10 >= writes.len() * 8,
        "rwsem write waits spread over {} locks ({per_key:?}); mmap_lock should dominate",
        per_key.len()
    );
    let with_holder: Vec<&Spanlet> = writes
        .iter()
        .copied()
        .filter(|s| s.holder_tid.is_some())
        .collect();
    assert!(
        !with_holder.is_empty(),
        "no write wait named a holder:\n{ctx}"
    );
    let by_workers = with_holder
        .iter()
        .filter(|s| {
            let h = s.holder_tid.unwrap_or(0);
            threads.contains(&h) && h != s.tid
        })
        .count();
    // The kernel's own threads (khugepaged) may take a process's mmap_lock
    // too, rarely.
    assert!(
        by_workers * 10 >= with_holder.len() * 9,
        "{by_workers} of {} holders are other threads of the workload {threads:?}:\n{}",
        with_holder.len(),
        describe(with_holder.iter().copied(), 30)
    );

    // The report names the new kind and the lock's type.
    let report = rec.report_text();
    assert!(
        report.contains("kernel_lock_wait (rwsem_write)"),
        "report:\n{report}"
    );

    // And the OTLP export carries it to a real collector.
    let Some(rotel) = Rotel::start() else { return };
    let got = rotel.replay_grpc(&rec.capture, spanlets.len());
    let exported: Vec<_> = got
        .logs
        .iter()
        .filter(|l| l.str("spanlet.kind") == Some("kernel_lock_wait"))
        .collect();
    assert_eq!(exported.len(), locks.len(), "kernel lock events in rotel");
    assert!(
        exported.iter().any(|l| {
            l.str("spanlet.kernel_lock.type") == Some("rwsem_write")
                && l.str("spanlet.resource.kind") == Some("kernel_lock")
                && l.int("spanlet.holder.tid").is_some()
        }),
        "no rwsem_write event with a holder: {exported:#?}"
    );
}

#[test]
fn without_the_flag_there_are_no_kernel_lock_waits() {
    let _serial = kernel_test_lock();
    let Some(rec) = record_command(&["--min-wait", "0"], C_KERNEL_LOCKS, &[THREADS, "500"]) else {
        return;
    };
    let _: Truth = rec.truth();
    let spanlets = rec.export_with_kernel_locks();
    assert!(
        !spanlets.iter().any(|s| s.kind == "kernel_lock_wait"),
        "{}",
        describe(spanlets.iter(), 10)
    );
}
