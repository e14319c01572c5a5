//! OTEP 4947 thread context, read in the kernel: a holder inside trace B
//! holds one mutex per waiter while waiter i, inside trace A_i, blocks on
//! its mutex. Every waiter's spanlet must carry A_i as its own context and
//! B (the holder's span) as the holder's; the waiter that publishes no
//! context gets nulls, not garbage. The contexts are written by Datadog's
//! libdd-otel-thread-ctx, not by anything of spanlet's.
//!
//! Needs root and eBPF (see the harness for skip/fail rules).

use serde::Deserialize;
use serde_json::Value;
use spanlet_tests::{Spanlet, assert_only_pid, describe, kernel_test_lock, record_command};

#[derive(Debug, Deserialize)]
struct Thread {
    tid: u32,
    trace_id: Option<String>,
    span_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Truth {
    pid: u32,
    hold_ms: u64,
    holder: Thread,
    waiters: Vec<Thread>,
}

fn text(v: &Option<Value>) -> Option<String> {
    v.as_ref().and_then(|v| v.as_str().map(str::to_owned))
}

#[test]
fn waits_carry_the_waiter_trace_and_link_to_the_holder_span() {
    let _serial = kernel_test_lock();
    let Some(rec) = record_command(
        &["--min-wait", "1ms"],
        env!("CARGO_BIN_EXE_rust_thread_ctx"),
        &["3", "300"],
    ) else {
        return;
    };
    let truth: Truth = rec.truth();
    let spanlets = rec.export();
    assert_only_pid(&spanlets, truth.pid);
    let all = describe(&spanlets, 40);

    assert_eq!(truth.waiters.len(), 4, "{truth:?}");
    let with_ctx = truth
        .waiters
        .iter()
        .filter(|w| w.trace_id.is_some())
        .count();
    assert_eq!(with_ctx, 3, "three waiters publish context: {truth:?}");

    let half_hold_ns = truth.hold_ms * 1_000_000 / 2;
    for waiter in &truth.waiters {
        let waits: Vec<&Spanlet> = spanlets
            .iter()
            .filter(|s| s.tid == waiter.tid && s.wait_ns >= half_hold_ns)
            .collect();
        let [wait] = waits.as_slice() else {
            panic!(
                "waiter {} should have exactly one long wait on its mutex; the capture has:\n{all}",
                waiter.tid
            );
        };
        assert_eq!(wait.kind, "mutex_wait", "{}", wait.brief());
        assert_eq!(
            (wait.holder_tid, wait.waker_tid),
            (Some(truth.holder.tid), Some(truth.holder.tid)),
            "the holder released it: {}",
            wait.brief()
        );
        assert_eq!(
            (text(&wait.trace_id), text(&wait.span_id)),
            (waiter.trace_id.clone(), waiter.span_id.clone()),
            "the waiter's own context (null for the one without): {}",
            wait.brief()
        );
        assert_eq!(
            (text(&wait.holder_trace_id), text(&wait.holder_span_id)),
            (truth.holder.trace_id.clone(), truth.holder.span_id.clone()),
            "the holder's context as it released the lock: {}",
            wait.brief()
        );
    }
}
