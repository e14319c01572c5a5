//! glibc condition variable: the consumer's waits show on the condvar as
//! plain futex waits, with no made-up holder, woken by the producer.
//!
//! Needs root and eBPF (see the harness for skip/fail rules).

use spanlet_tests::{
    C_CONDVAR, CondvarTruth, Spanlet, assert_only_pid, describe, kernel_test_lock, ratio,
    record_command,
};

const MS: u64 = 1_000_000;

#[test]
fn condvar_waits_are_woken_by_the_producer() {
    let _serial = kernel_test_lock();
    let no_args: &[&str] = &[];
    let Some(rec) = record_command(&["--min-wait", "1ms"], C_CONDVAR, no_args) else {
        return;
    };
    let truth: CondvarTruth = rec.truth();
    assert_eq!(truth.consumed, truth.items, "workload did not finish");
    let spanlets = rec.export();

    assert_only_pid(&spanlets, truth.pid);

    let on_cond: Vec<&Spanlet> = spanlets
        .iter()
        .filter(|s| truth.in_cond(s.addr()))
        .collect();
    let ctx = describe(on_cond.iter().copied(), 60);
    assert!(
        on_cond.len() >= truth.items / 2,
        "{} waits on the condvar at {} (+{} bytes) for {} items; the capture has:\n{}",
        on_cond.len(),
        truth.cond_addr,
        truth.cond_size,
        truth.items,
        describe(&spanlets, 40)
    );

    for s in &on_cond {
        assert_eq!(
            s.kind,
            "futex_wait",
            "a condvar is not a lock: {}",
            s.brief()
        );
        assert_eq!(
            s.holder_tid,
            None,
            "a condvar has no holder; spanlet made one up: {}",
            s.brief()
        );
        assert_eq!(
            s.tid,
            truth.consumer_tid,
            "only the consumer waits on the condvar: {}",
            s.brief()
        );
    }

    let by_producer = on_cond
        .iter()
        .filter(|s| s.waker_tid == Some(truth.producer_tid))
        .count();
    assert!(
        ratio(by_producer, on_cond.len()) >= 0.8,
        "only {by_producer}/{} condvar waits woken by the producer {}:\n{ctx}",
        on_cond.len(),
        truth.producer_tid
    );

    // The consumer waits about one production period each time.
    let plausible = on_cond
        .iter()
        .filter(|s| (5 * MS..=100 * MS).contains(&s.wait_ns))
        .count();
    assert!(
        ratio(plausible, on_cond.len()) >= 0.8,
        "only {plausible}/{} condvar waits last 5-100 ms for a {} ms period:\n{ctx}",
        on_cond.len(),
        truth.period_ms
    );
}
