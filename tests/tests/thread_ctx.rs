//! OTEP 4947 thread context, read in the kernel: a holder inside trace B
//! holds one mutex per waiter while waiter i, inside trace A_i, blocks on
//! its mutex. Every waiter's spanlet must carry A_i as its own context and
//! B (the holder's span) as the holder's; the waiter that publishes no
//! context gets nulls, not garbage. The contexts are written by Datadog's
//! libdd-otel-thread-ctx, not by anything of spanlet's.
//!
//! Needs root and eBPF (see the harness for skip/fail rules).

use spanlet_tests::{
    C_DLOPEN_CTX, C_THREAD_CTX, GateTids, GatedWorkload, LIB_OTELCTX_IE, Spanlet, assert_only_pid,
    describe, kernel_ready, kernel_test_lock, record_ctx_workload, record_pid_until_exit, text,
};

#[test]
fn waits_carry_the_waiter_trace_and_link_to_the_holder_span() {
    let _serial = kernel_test_lock();
    let Some((rec, truth)) = record_ctx_workload(env!("CARGO_BIN_EXE_rust_thread_ctx"), &[]) else {
        return;
    };
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

/// The variable can live in a shared library (here a C writer built with
/// the TLSDESC dialect), whose TLS block the dynamic loader places at run
/// time; the waits are on glibc pthread mutexes, whose holder comes from
/// `__owner`. spanlet attaches to the running process (`--pid`).
#[test]
fn context_published_by_a_shared_library_is_found() {
    let _serial = kernel_test_lock();
    if !kernel_ready() {
        return;
    }
    let (mut workload, tids): (GatedWorkload, GateTids) =
        GatedWorkload::start(C_THREAD_CTX, &["2", "300"]);
    let spanlets = record_pid_until_exit(tids.pid, &[], || workload.go());
    let all = describe(&spanlets, 40);
    let hex = |b: u8, n: usize| format!("{b:02x}").repeat(n);
    let (b_trace, b_span) = (hex(0xcb, 16), hex(0xc1, 8));
    for (i, &tid) in tids.waiters.iter().enumerate() {
        let waits: Vec<&Spanlet> = spanlets
            .iter()
            .filter(|s| s.tid == tid && s.wait_ns > 150_000_000)
            .collect();
        let [wait] = waits.as_slice() else {
            panic!("waiter {tid} should have one long wait:\n{all}");
        };
        assert_eq!(wait.kind, "mutex_wait", "{}", wait.brief());
        assert_eq!(
            wait.holder_tid,
            Some(tids.holder),
            "__owner names the holder: {}",
            wait.brief()
        );
        let own =
            (i + 1 < tids.waiters.len()).then(|| (hex(0xc0 + i as u8, 16), hex(0x20 + i as u8, 8)));
        assert_eq!(
            (text(&wait.trace_id), text(&wait.span_id)),
            own.map_or((None, None), |(t, s)| (Some(t), Some(s))),
            "the waiter's own context: {}",
            wait.brief()
        );
        assert_eq!(
            (text(&wait.holder_trace_id), text(&wait.holder_span_id)),
            (Some(b_trace.clone()), Some(b_span.clone())),
            "the holder's context as it unlocked: {}",
            wait.brief()
        );
    }
}

/// A library that publishes thread context, loaded with dlopen after
/// spanlet attached: the agent finds nothing at first and must find it on
/// its periodic look (every 2 s), before the threads contend (3 s later).
#[test]
fn context_from_a_library_dlopened_after_attach_is_found() {
    let _serial = kernel_test_lock();
    if !kernel_ready() {
        return;
    }
    let (mut workload, tids): (GatedWorkload, GateTids) =
        GatedWorkload::start(C_DLOPEN_CTX, &[LIB_OTELCTX_IE, "300", "3000"]);
    let spanlets = record_pid_until_exit(tids.pid, &[], || workload.go());
    let all = describe(&spanlets, 40);
    let waits: Vec<&Spanlet> = spanlets
        .iter()
        .filter(|s| s.tid == tids.waiters[0] && s.wait_ns > 150_000_000)
        .collect();
    let [wait] = waits.as_slice() else {
        panic!("the waiter should have one long wait:\n{all}");
    };
    let hex = |b: u8, n: usize| format!("{b:02x}").repeat(n);
    assert_eq!(wait.holder_tid, Some(tids.holder), "{}", wait.brief());
    assert_eq!(
        (text(&wait.trace_id), text(&wait.span_id)),
        (Some(hex(0xee, 16)), Some(hex(0xe1, 8))),
        "the waiter's context, from the dlopened library: {}",
        wait.brief()
    );
    assert_eq!(
        (text(&wait.holder_trace_id), text(&wait.holder_span_id)),
        (Some(hex(0xdd, 16)), Some(hex(0xd1, 8))),
        "the holder's: {}",
        wait.brief()
    );
}
