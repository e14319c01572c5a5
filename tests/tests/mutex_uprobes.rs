//! `--mutex-uprobes`: pthread_mutex_lock/unlock uprobes record how long each
//! thread held a mutex (kind `mutex_hold`), on top of the futex waits; and
//! without the flag there are none.
//!
//! Workload: `workloads/c_mutex.c` (the holder holds the mutex 30 ms per
//! round; the waiters' own holds are microseconds, under --min-wait).
//! Needs root and eBPF (see the harness for skip/fail rules).

use spanlet_tests::{
    C_MUTEX, LockTruth, ROUND_CLOCK_TOLERANCE_NS, Spanlet, describe, kernel_test_lock, ratio,
    record_command,
};

const MS: u64 = 1_000_000;
const NO_ARGS: &[&str] = &[];
/// A hold of the 30 ms rounds: at least this long...
const HOLD_MIN_NS: u64 = 25 * MS;
/// ...and at most this long (scheduling delays on a busy 2-core machine).
const HOLD_MAX_NS: u64 = 80 * MS;

fn holds(spanlets: &[Spanlet]) -> Vec<&Spanlet> {
    spanlets.iter().filter(|s| s.kind == "mutex_hold").collect()
}

#[test]
fn mutex_uprobes_record_the_holders_holds() {
    let _serial = kernel_test_lock();
    let Some(rec) = record_command(&["--mutex-uprobes", "--min-wait", "1ms"], C_MUTEX, NO_ARGS)
    else {
        return;
    };
    let truth: LockTruth = rec.truth();
    truth.check();
    let spanlets = rec.export_with_holds();
    let addr = truth.addr();
    let all_holds = holds(&spanlets);
    let ctx = describe(all_holds.iter().copied(), 40);

    // Every hold is a hold of the workload's mutex, by a workload thread,
    // and names that thread as the holder.
    let tids = truth.tids();
    for s in &all_holds {
        let b = s.brief();
        assert_eq!(s.pid, truth.pid, "hold by another process: {b}");
        assert_eq!(
            s.addr(),
            addr,
            "hold of something other than the workload's mutex {addr:#x}: {b}"
        );
        assert!(
            tids.contains(&s.tid),
            "hold by tid {} which is not a workload thread {tids:?}: {b}",
            s.tid
        );
        assert_eq!(
            s.holder_tid,
            Some(s.tid),
            "a hold's holder_tid is the holding thread: {b}"
        );
        assert!(
            s.wait_ns >= MS,
            "hold of {:.3} ms recorded despite --min-wait 1ms: {b}",
            s.wait_ms()
        );
    }

    // The holder's holds: one per round, about hold_ms each.
    let by_holder: Vec<&Spanlet> = all_holds
        .iter()
        .copied()
        .filter(|s| s.tid == truth.holder_tid)
        .collect();
    let min_count = (truth.rounds * 8).div_ceil(10);
    assert!(
        by_holder.len() >= min_count && by_holder.len() <= truth.rounds,
        "{} holds by the holder {} for {} rounds (want {min_count}..={}):\n{ctx}",
        by_holder.len(),
        truth.holder_tid,
        truth.rounds,
        truth.rounds
    );
    for s in &by_holder {
        assert_eq!(s.comm, "holder", "holder thread name: {}", s.brief());
        assert!(
            (HOLD_MIN_NS..=HOLD_MAX_NS).contains(&s.wait_ns),
            "hold of {:.2} ms for a {} ms hold (allowed {}..={} ms): {}",
            s.wait_ms(),
            truth.hold_ms,
            HOLD_MIN_NS / MS,
            HOLD_MAX_NS / MS,
            s.brief()
        );
    }

    // Each one is a round, at the time it happened: it starts when the
    // holder's lock returned and ends at its unlock.
    let tol = ROUND_CLOCK_TOLERANCE_NS;
    let matched = truth
        .round_windows_unix_nano
        .iter()
        .filter(|[lock, unlock]| {
            by_holder.iter().any(|s| {
                s.start_unix_nano.abs_diff(*lock) <= tol
                    && s.end_unix_nano().abs_diff(*unlock) <= tol
            })
        })
        .count();
    assert!(
        ratio(matched, truth.rounds) >= 0.8,
        "only {matched}/{} rounds have a hold by the holder from its lock to its unlock \
         (within {} ms); windows {:?}:\n{ctx}",
        truth.rounds,
        tol / MS,
        truth.round_windows_unix_nano
    );

    // The futex waits are still recorded alongside.
    assert!(
        spanlets
            .iter()
            .any(|s| s.kind == "mutex_wait" && s.addr() == addr),
        "with --mutex-uprobes the mutex waits on {addr:#x} are missing:\n{}",
        describe(&spanlets, 40)
    );
}

#[test]
fn no_mutex_holds_without_the_flag() {
    let _serial = kernel_test_lock();
    let Some(rec) = record_command(&["--min-wait", "1ms"], C_MUTEX, NO_ARGS) else {
        return;
    };
    let truth: LockTruth = rec.truth();
    truth.check();
    let spanlets = rec.export_with_holds();
    let found = holds(&spanlets);
    assert!(
        found.is_empty(),
        "mutex_hold spanlets without --mutex-uprobes:\n{}",
        describe(found, 20)
    );
    // Not vacuous: the contention was recorded.
    assert!(
        spanlets
            .iter()
            .any(|s| s.kind == "mutex_wait" && s.addr() == truth.addr()),
        "no mutex waits on {:#x} either; the capture has:\n{}",
        truth.addr(),
        describe(&spanlets, 40)
    );
}
