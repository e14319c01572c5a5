//! Rust std::sync::Mutex: a bare futex word with no owner field. spanlet
//! must classify the waits as mutex waits and name the thread whose unlock
//! woke each waiter as both holder and waker.
//!
//! Needs root and eBPF (see the harness for skip/fail rules).

use spanlet_tests::{
    LockTruth, Spanlet, assert_only_pid, describe, kernel_test_lock, record_command,
};

const MS: u64 = 1_000_000;
const LONG_NS: u64 = 5 * MS;

#[test]
fn std_mutex_waits_are_woken_by_the_releasing_thread() {
    let _serial = kernel_test_lock();
    let no_args: &[&str] = &[];
    let Some(rec) = record_command(
        &["--min-wait", "1ms"],
        env!("CARGO_BIN_EXE_rust_mutex"),
        no_args,
    ) else {
        return;
    };
    let truth: LockTruth = rec.truth();
    truth.check();
    let spanlets = rec.export();

    assert_only_pid(&spanlets, truth.pid);

    let addr = truth.addr();
    let on_mutex: Vec<&Spanlet> = spanlets.iter().filter(|s| s.addr() == addr).collect();
    let ctx = describe(on_mutex.iter().copied(), 60);
    assert!(
        !on_mutex.is_empty(),
        "no spanlets on the mutex's futex word {addr:#x}; the capture has:\n{}",
        describe(&spanlets, 40)
    );
    for s in &on_mutex {
        assert_eq!(
            s.kind,
            "mutex_wait",
            "a contended std Mutex (futex value 2) is a mutex wait: {}",
            s.brief()
        );
        // No owner field: the holder is known only as the thread that
        // released the lock, i.e. the waker.
        assert_eq!(
            s.holder_tid,
            s.waker_tid,
            "holder_tid must equal waker_tid for a std Mutex: {}",
            s.brief()
        );
    }

    let long: Vec<&Spanlet> = on_mutex
        .iter()
        .copied()
        .filter(|s| s.wait_ns >= LONG_NS)
        .collect();
    let tids = truth.tids();
    for s in &long {
        assert!(
            truth.waiter_tids.contains(&s.tid),
            "long wait by a thread that is not a waiter {:?}: {}",
            truth.waiter_tids,
            s.brief()
        );
        assert!(
            s.waker_tid.is_some_and(|w| tids.contains(&w)),
            "long wait not woken by a workload thread {tids:?}: {}",
            s.brief()
        );
    }

    // Each round, the holder's unlock wakes one waiter (which then hands the
    // mutex on to the next).
    truth.assert_holder_woke_rounds(&long, &ctx);
    truth.assert_longest_within_hold(&long, &ctx);
}
