//! glibc pthread mutex: spanlet must show the waits on the mutex, who held it
//! and who woke the waiters; and trace only the processes it was asked to.
//!
//! Needs root and eBPF (see the harness for skip/fail rules).

use std::thread;
use std::time::Duration;

use spanlet_tests::{
    Background, C_MUTEX, LockTruth, Spanlet, assert_only_pid, describe, kernel_test_lock,
    parse_truth, ratio, record_command, record_pids, value_addr,
};

const MS: u64 = 1_000_000;
/// A wait this long was blocked behind the 30 ms hold, not a hand-off.
const LONG_NS: u64 = 5 * MS;
const NO_ARGS: &[&str] = &[];

/// Checks the waits on the workload's mutex in `spanlets` (all of them from
/// one capture of that workload). `all_rounds`: the capture covered the whole
/// run, so every round should show.
fn check_mutex_waits(truth: &LockTruth, spanlets: &[Spanlet], all_rounds: bool) {
    let addr = truth.addr();
    let on_mutex: Vec<&Spanlet> = spanlets.iter().filter(|s| s.addr() == addr).collect();
    assert!(
        !on_mutex.is_empty(),
        "no spanlets on the mutex {:#x} (pid {}); the capture has:\n{}",
        addr,
        truth.pid,
        describe(spanlets, 40)
    );
    let wrong_kind: Vec<&Spanlet> = on_mutex
        .iter()
        .copied()
        .filter(|s| s.kind != "mutex_wait")
        .collect();
    assert!(
        wrong_kind.is_empty(),
        "waits on a pthread mutex must be kind mutex_wait:\n{}",
        describe(wrong_kind, 20)
    );

    // Waits still blocked when a `--pid --duration` capture stopped have no
    // waker yet; they are checked separately below.
    let long: Vec<&Spanlet> = on_mutex
        .iter()
        .copied()
        .filter(|s| s.wait_ns >= LONG_NS && s.outcome != "in_progress")
        .collect();
    let ctx = describe(on_mutex.iter().copied(), 60);

    // Who waited: exactly the waiter threads, under their names.
    for s in &long {
        assert!(
            truth.waiter_tids.contains(&s.tid),
            "long wait by tid {} which is not a waiter {:?}:\n{ctx}",
            s.tid,
            truth.waiter_tids
        );
        assert!(
            s.comm.starts_with("waiter-"),
            "waiter thread shown as {:?}, expected waiter-N: {}",
            s.comm,
            s.brief()
        );
    }
    if all_rounds {
        for w in &truth.waiter_tids {
            assert!(
                long.iter().any(|s| s.tid == *w),
                "waiter {w} never shows a long wait:\n{ctx}"
            );
        }
        assert!(
            long.len() >= truth.rounds,
            "{} long waits for {} rounds x {} waiters:\n{ctx}",
            long.len(),
            truth.rounds,
            truth.waiter_tids.len()
        );
    }

    // Who held it: the owner read at wait time is the holder thread.
    let by_holder = long
        .iter()
        .filter(|s| s.holder_tid == Some(truth.holder_tid))
        .count();
    assert!(
        ratio(by_holder, long.len()) >= 0.9,
        "only {by_holder}/{} long waits name the holder {} as holder_tid:\n{ctx}",
        long.len(),
        truth.holder_tid
    );

    // Who woke them: an unlock by a workload thread (the holder, or a waiter
    // handing the mutex on).
    let tids = truth.tids();
    for s in &long {
        assert!(
            s.waker_tid.is_some_and(|w| tids.contains(&w)),
            "long wait not woken by a workload thread {tids:?}: {}",
            s.brief()
        );
        assert_eq!(
            s.outcome,
            "woken",
            "a mutex wait ends by a wake-up: {}",
            s.brief()
        );
    }

    // Durations: blocked for about one hold, never much more.
    truth.assert_longest_within_hold(&long, &ctx);
    let max = long.iter().map(|s| s.wait_ns).max().unwrap_or(0);
    assert!(
        max >= 15 * MS,
        "no wait of 15 ms or more behind a {} ms hold:\n{ctx}",
        truth.hold_ms
    );

    // Every round shows up, at the time it happened.
    let held: Vec<&Spanlet> = long
        .iter()
        .copied()
        .filter(|s| s.holder_tid == Some(truth.holder_tid))
        .collect();
    let covered = truth.rounds_covered(&held).len();
    if all_rounds {
        assert!(
            ratio(covered, truth.rounds) >= 0.8,
            "only {covered}/{} rounds have a wait on the holder that starts during the hold \
             and ends at the unlock (spanlet's start_unix_nano/wait_ns vs the workload's \
             CLOCK_REALTIME); windows {:?}:\n{ctx}",
            truth.rounds,
            truth.round_windows_unix_nano
        );
    } else {
        assert!(
            covered > 0,
            "no wait matches any of the holder's rounds in time:\n{ctx}"
        );
    }
}

#[test]
fn pthread_mutex_waits_name_holder_and_waker() {
    let _serial = kernel_test_lock();
    let Some(rec) = record_command(&["--min-wait", "1ms"], C_MUTEX, NO_ARGS) else {
        return;
    };
    let truth: LockTruth = rec.truth();
    truth.check();
    let spanlets = rec.export();
    assert_only_pid(&spanlets, truth.pid);
    check_mutex_waits(&truth, &spanlets, true);
    // This program publishes no OpenTelemetry thread context: its spanlets
    // carry null contexts, not garbage.
    for s in &spanlets {
        assert!(
            s.trace_id.as_ref().is_none_or(|v| v.is_null())
                && s.span_id.as_ref().is_none_or(|v| v.is_null())
                && s.holder_trace_id.as_ref().is_none_or(|v| v.is_null())
                && s.holder_span_id.as_ref().is_none_or(|v| v.is_null()),
            "a process without thread context: {}",
            s.brief()
        );
    }

    // The report agrees with the export and ranks the holder first.
    let report = rec.report_json();
    let resources = report["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("report has no resources array: {report}"));
    let addr = truth.addr();
    let res = resources
        .iter()
        .find(|r| {
            r["pid"].as_u64() == Some(u64::from(truth.pid))
                && value_addr(&r["addr"]) == Some(addr)
                && r["kind"] == "mutex_wait"
        })
        .unwrap_or_else(|| panic!("report has no mutex_wait resource at {addr:#x}: {report}"));
    let same: Vec<&Spanlet> = spanlets
        .iter()
        .filter(|s| s.addr() == addr && s.kind == "mutex_wait")
        .collect();
    assert_eq!(
        res["waits"].as_u64(),
        Some(same.len() as u64),
        "report waits vs exported spanlets: {res}"
    );
    assert_eq!(
        res["total_wait_ns"].as_u64(),
        Some(same.iter().map(|s| s.wait_ns).sum::<u64>()),
        "report total_wait_ns vs exported spanlets: {res}"
    );
    assert_eq!(
        res["max_wait_ns"].as_u64(),
        same.iter().map(|s| s.wait_ns).max(),
        "report max_wait_ns vs exported spanlets: {res}"
    );
    let top = res["holders"]
        .as_array()
        .and_then(|h| h.iter().max_by_key(|h| h["wait_ns"].as_u64().unwrap_or(0)))
        .unwrap_or_else(|| panic!("report resource has no holders: {res}"));
    assert_eq!(
        top["tid"].as_u64(),
        Some(u64::from(truth.holder_tid)),
        "top holder by wait time should be the holder thread: {res}"
    );
    assert_eq!(top["name"], "holder", "holder thread name: {res}");
}

#[test]
fn untraced_process_does_not_appear() {
    let _serial = kernel_test_lock();
    // Contends the same way as the traced run, for ~10 s: longer than the
    // recording, so it is running throughout.
    let mut other = Background::start(C_MUTEX, &["200"]);
    thread::sleep(Duration::from_millis(200));
    let Some(rec) = record_command(&["--min-wait", "1ms"], C_MUTEX, NO_ARGS) else {
        return;
    };
    assert!(
        other.running(),
        "the untraced workload ended before the recording did; the test proves nothing"
    );
    let truth: LockTruth = rec.truth();
    let spanlets = rec.export();
    let leaked: Vec<&Spanlet> = spanlets.iter().filter(|s| s.pid == other.pid()).collect();
    assert!(
        leaked.is_empty(),
        "spanlets from the untraced process {}:\n{}",
        other.pid(),
        describe(leaked, 20)
    );
    assert_only_pid(&spanlets, truth.pid);
    // Not vacuous: the traced one was seen.
    assert!(
        spanlets.iter().any(|s| s.addr() == truth.addr()),
        "the traced workload's mutex does not appear:\n{}",
        describe(&spanlets, 40)
    );
}

#[test]
fn record_by_pid_traces_a_running_process() {
    let _serial = kernel_test_lock();
    // ~5 s of rounds: outlasts eBPF loading plus the 1 s recording.
    let workload = Background::start(C_MUTEX, &["100"]);
    let pid = workload.pid();
    // Past the workload's warm-up, so contention is under way.
    thread::sleep(Duration::from_millis(300));
    let Some(rec) = record_pids(&[pid], "1s", &["--min-wait", "1ms"]) else {
        return;
    };
    let (status, stdout) = workload.wait(Duration::from_secs(60));
    assert!(status.success(), "workload failed: {status}");
    let truth: LockTruth = parse_truth(&stdout, "c_mutex run in the background");
    truth.check();
    assert_eq!(truth.pid, pid);

    let spanlets = rec.export();
    assert_only_pid(&spanlets, pid);
    check_mutex_waits(&truth, &spanlets, false);

    // --duration 1s: the waits seen span about a second, not the whole run.
    let first = spanlets
        .iter()
        .map(|s| s.start_unix_nano)
        .min()
        .unwrap_or(0);
    let last = spanlets
        .iter()
        .map(Spanlet::end_unix_nano)
        .max()
        .unwrap_or(0);
    let spread = last.saturating_sub(first);
    assert!(
        spread <= 2_000 * MS,
        "spanlets span {:.0} ms for a 1 s recording",
        spread as f64 / MS as f64
    );
    // About 20 rounds fit in a second; most should show.
    let long_on_holder: Vec<&Spanlet> = spanlets
        .iter()
        .filter(|s| {
            s.addr() == truth.addr()
                && s.wait_ns >= LONG_NS
                && s.holder_tid == Some(truth.holder_tid)
        })
        .collect();
    let covered = truth.rounds_covered(&long_on_holder).len();
    assert!(
        covered >= 10,
        "only {covered} rounds seen in a 1 s recording of 50 ms rounds:\n{}",
        describe(long_on_holder, 40)
    );
}
