//! Every futex flavour spanlet decodes, one blocking wait each, from
//! `workloads/c_futex_ops.c`: a PI mutex (FUTEX_LOCK_PI), futex_wait(2),
//! futex_waitv(2), a wait that times out and one a signal interrupts. Each
//! wait is found by its futex address and checked against the workload's
//! ground truth: kind, outcome, holder, waker, syscall and duration.
//!
//! The workload is recorded once and shared by the tests (one per scenario).
//! Needs root and eBPF (see the harness for skip/fail rules).

use std::sync::OnceLock;

use spanlet_tests::{
    C_FUTEX_OPS, FutexOpTruth, FutexOpsTruth, Spanlet, describe, kernel_test_lock, parse_hex,
    record_command,
};

const MS: u64 = 1_000_000;
const NO_ARGS: &[&str] = &[];

/// futex(2), futex_waitv(2), futex_wait(2) on x86_64.
const SYS_FUTEX: u32 = 202;
const SYS_FUTEX_WAITV: u32 = 449;
const SYS_FUTEX_WAIT: u32 = 455;
/// futex(2) commands (op & FUTEX_CMD_MASK).
const FUTEX_CMD_MASK: u32 = 0x7f;
const FUTEX_WAIT: u32 = 0;
const FUTEX_LOCK_PI: u32 = 6;
const FUTEX_LOCK_PI2: u32 = 13;

/// How much later than intended a wait may end on a busy 2-core machine.
const LATE_NS: u64 = 60 * MS;
/// Slack between spanlet's off-CPU..on-CPU time and the workload's own
/// measurement around the syscall (both CLOCK_MONOTONIC; spanlet's is inside).
const CLOCK_SLACK_NS: u64 = MS;

struct Run {
    truth: FutexOpsTruth,
    spanlets: Vec<Spanlet>,
}

/// The one recording of c_futex_ops; `None` when kernel tests are skipped.
fn run() -> Option<&'static Run> {
    static RUN: OnceLock<Option<Run>> = OnceLock::new();
    let _serial = kernel_test_lock();
    RUN.get_or_init(|| {
        let rec = record_command(&["--min-wait", "1ms"], C_FUTEX_OPS, NO_ARGS)?;
        let truth: FutexOpsTruth = rec.truth();
        assert_eq!(truth.workload, "c_futex_ops");
        let spanlets = rec.export();
        Some(Run { truth, spanlets })
    })
    .as_ref()
}

/// What a scenario should look like in the capture.
struct Expect {
    scenario: &'static str,
    waiter_comm: &'static str,
    kind: &'static str,
    outcome: &'static str,
    syscall: u32,
    /// Allowed `futex_op & FUTEX_CMD_MASK` (futex(2) only).
    futex_cmds: &'static [u32],
    /// The holder is the scenario's other thread (else: no holder).
    holder_is_other: bool,
    /// The waker is the scenario's other thread, with this name (else: no
    /// waker).
    waker_comm: Option<&'static str>,
}

/// Checks the one wait of scenario `sc` against `want`; returns it.
fn check(run: &Run, sc: &FutexOpTruth, want: &Expect) -> Spanlet {
    let name = want.scenario;
    assert_eq!(
        sc.result, "ok",
        "the workload's {name} scenario did not run as designed ({}); nothing to check spanlet \
         against. ENOSYS means the kernel lacks the syscall (spanlet's CI kernel has it)",
        sc.result
    );
    assert!(
        sc.measured_ns >= sc.expected_ms * MS * 8 / 10,
        "the workload's {name} wait took {:.1} ms, far less than its {} ms: the workload is broken",
        sc.measured_ns as f64 / MS as f64,
        sc.expected_ms
    );

    let addr = sc.addr();
    let on_addr: Vec<&Spanlet> = run.spanlets.iter().filter(|s| s.addr() == addr).collect();
    assert!(
        !on_addr.is_empty(),
        "{name}: no spanlet on {} (waiter tid {}); the capture has:\n{}",
        sc.addr,
        sc.waiter_tid,
        describe(&run.spanlets, 40)
    );
    assert_eq!(
        on_addr.len(),
        1,
        "{name}: the workload blocks once on {}, spanlet shows {} waits:\n{}",
        sc.addr,
        on_addr.len(),
        describe(on_addr.iter().copied(), 20)
    );
    let s = on_addr[0].clone();
    let b = s.brief();

    assert_eq!(s.pid, run.truth.pid, "{name}: pid: {b}");
    assert_eq!(s.tid, sc.waiter_tid, "{name}: the waiter: {b}");
    assert_eq!(s.comm, want.waiter_comm, "{name}: waiter thread name: {b}");
    assert_eq!(s.kind, want.kind, "{name}: kind: {b}");
    assert_eq!(s.outcome, want.outcome, "{name}: outcome: {b}");
    assert_eq!(
        s.syscall,
        Some(want.syscall),
        "{name}: syscall the waiter blocked in: {b}"
    );
    if !want.futex_cmds.is_empty() {
        let cmd = s.futex_op.map(|op| op & FUTEX_CMD_MASK);
        assert!(
            cmd.is_some_and(|c| want.futex_cmds.contains(&c)),
            "{name}: futex op {:?} (command {cmd:?}), expected one of {:?}: {b}",
            s.futex_op,
            want.futex_cmds
        );
    }

    let holder = want.holder_is_other.then_some(sc.other_tid);
    assert_eq!(s.holder_tid, holder, "{name}: holder_tid: {b}");
    match want.waker_comm {
        Some(comm) => {
            assert_eq!(
                s.waker_tid,
                Some(sc.other_tid),
                "{name}: the waker should be {comm} ({}): {b}",
                sc.other_tid
            );
            assert_eq!(s.waker_pid, Some(run.truth.pid), "{name}: waker_pid: {b}");
            assert_eq!(
                s.waker_comm.as_deref(),
                Some(comm),
                "{name}: waker thread name: {b}"
            );
        }
        None => {
            assert_eq!(s.waker_tid, None, "{name}: nobody woke it: {b}");
            assert_eq!(s.waker_pid, None, "{name}: nobody woke it: {b}");
        }
    }

    // Duration: about what the workload intended, and within what it
    // measured around the call.
    let expected = sc.expected_ms * MS;
    assert!(
        s.wait_ns >= expected * 8 / 10 && s.wait_ns < expected + LATE_NS,
        "{name}: wait {:.2} ms, expected about {} ms (0.8x .. +{} ms): {b}",
        s.wait_ms(),
        sc.expected_ms,
        LATE_NS / MS
    );
    assert!(
        s.wait_ns <= sc.measured_ns + CLOCK_SLACK_NS,
        "{name}: wait {:.2} ms is longer than the {:.2} ms the waiter measured around its call: {b}",
        s.wait_ms(),
        sc.measured_ns as f64 / MS as f64
    );
    s
}

#[test]
fn pi_mutex_wait_names_the_owner() {
    let Some(run) = run() else { return };
    let s = check(
        run,
        &run.truth.pi,
        &Expect {
            scenario: "pi",
            waiter_comm: "pi-waiter",
            kind: "mutex_wait",
            outcome: "woken",
            syscall: SYS_FUTEX,
            futex_cmds: &[FUTEX_LOCK_PI, FUTEX_LOCK_PI2],
            holder_is_other: true,
            waker_comm: Some("pi-holder"),
        },
    );
    // Woken by the unlock, not by a timer.
    assert!(
        s.woken_after_ns.is_some_and(|w| w <= s.wait_ns),
        "pi: woken_after_ns {:?} for a {} ns wait",
        s.woken_after_ns,
        s.wait_ns
    );
}

#[test]
fn futex_wait2_woken_by_futex_wake2() {
    let Some(run) = run() else { return };
    check(
        run,
        &run.truth.fwait2,
        &Expect {
            scenario: "fwait2",
            waiter_comm: "f2-waiter",
            kind: "futex_wait",
            outcome: "woken",
            syscall: SYS_FUTEX_WAIT,
            futex_cmds: &[],
            holder_is_other: false,
            waker_comm: Some("f2-waker"),
        },
    );
}

#[test]
fn futex_waitv_is_named_by_its_first_word() {
    let Some(run) = run() else { return };
    check(
        run,
        &run.truth.waitv,
        &Expect {
            scenario: "waitv",
            waiter_comm: "wv-waiter",
            kind: "futex_wait",
            outcome: "woken",
            syscall: SYS_FUTEX_WAITV,
            futex_cmds: &[],
            holder_is_other: false,
            waker_comm: Some("wv-waker"),
        },
    );
    let second = parse_hex(&run.truth.waitv_second_addr);
    let on_second: Vec<&Spanlet> = run.spanlets.iter().filter(|s| s.addr() == second).collect();
    assert!(
        on_second.is_empty(),
        "waitv: the wait is named by the first word, yet the second word {second:#x} has:\n{}",
        describe(on_second, 10)
    );
}

#[test]
fn futex_wait_timeout_is_timed_out_without_waker() {
    let Some(run) = run() else { return };
    check(
        run,
        &run.truth.timeout,
        &Expect {
            scenario: "timeout",
            waiter_comm: "to-waiter",
            kind: "futex_wait",
            outcome: "timed_out",
            syscall: SYS_FUTEX,
            futex_cmds: &[FUTEX_WAIT],
            holder_is_other: false,
            waker_comm: None,
        },
    );
}

#[test]
fn futex_wait_interrupted_by_a_signal_names_the_sender() {
    let Some(run) = run() else { return };
    check(
        run,
        &run.truth.signal,
        &Expect {
            scenario: "signal",
            waiter_comm: "sig-waiter",
            kind: "futex_wait",
            outcome: "interrupted",
            syscall: SYS_FUTEX,
            futex_cmds: &[FUTEX_WAIT],
            holder_is_other: false,
            waker_comm: Some("sig-sender"),
        },
    );
}
