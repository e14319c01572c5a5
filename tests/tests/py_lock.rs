//! Python threading.Lock (a sem_t in CPython 3.11): Python cannot tell us
//! the lock's address, so the lock's waits are recognised by who woke them:
//! the holder thread, once per round.
//!
//! Needs root and eBPF (see the harness for skip/fail rules).

use std::collections::HashMap;

use serde::Deserialize;
use spanlet_tests::{
    LockTruth, PY_LOCK, Spanlet, assert_only_pid, describe, kernel_test_lock, python, ratio,
    record_command,
};

const MS: u64 = 1_000_000;
/// Longer than the GIL's 5 ms timed waits, so these are lock waits.
const LONG_NS: u64 = 10 * MS;

#[derive(Deserialize)]
struct PyExtra {
    python_version: String,
}

#[test]
fn python_lock_waits_are_woken_by_the_holder() {
    let _serial = kernel_test_lock();
    let Some(rec) = record_command(&["--min-wait", "1ms"], python(), &[PY_LOCK]) else {
        return;
    };
    let truth: LockTruth = rec.truth();
    truth.check();
    let version = rec.truth::<PyExtra>().python_version;
    let spanlets = rec.export();

    assert_only_pid(&spanlets, truth.pid);

    let long: Vec<&Spanlet> = spanlets
        .iter()
        .filter(|s| truth.waiter_tids.contains(&s.tid) && s.wait_ns >= LONG_NS)
        .collect();
    let ctx = format!(
        "Python {version}; long waits by waiter threads:\n{}",
        describe(long.iter().copied(), 60)
    );
    assert!(
        long.len() >= truth.rounds,
        "{} long waits by the waiters for {} rounds; {ctx}",
        long.len(),
        truth.rounds
    );

    let tids = truth.tids();
    let by_workload = long
        .iter()
        .filter(|s| s.waker_tid.is_some_and(|w| tids.contains(&w)))
        .count();
    assert!(
        ratio(by_workload, long.len()) >= 0.8,
        "only {by_workload}/{} long waits woken by a workload thread {tids:?}; {ctx}",
        long.len()
    );

    truth.assert_holder_woke_rounds(&long, &ctx);
    let by_holder: Vec<&Spanlet> = long
        .iter()
        .copied()
        .filter(|s| s.waker_tid == Some(truth.holder_tid))
        .collect();

    // The address most of those wake-ups were on is the Lock's semaphore: a
    // semaphore has no owner, so those waits are plain futex waits with no
    // holder.
    let mut per_addr: HashMap<u64, usize> = HashMap::new();
    for s in &by_holder {
        *per_addr.entry(s.addr()).or_default() += 1;
    }
    let (lock_addr, _) = per_addr
        .into_iter()
        .max_by_key(|&(_, n)| n)
        .expect("some wait was woken by the holder");
    for s in spanlets.iter().filter(|s| s.addr() == lock_addr) {
        assert_eq!(
            s.kind,
            "futex_wait",
            "a threading.Lock is a semaphore in CPython 3.11: {}; {ctx}",
            s.brief()
        );
        assert_eq!(
            s.holder_tid,
            None,
            "a semaphore has no holder; spanlet made one up: {}; {ctx}",
            s.brief()
        );
    }
}
