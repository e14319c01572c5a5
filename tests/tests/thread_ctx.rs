//! OTEP 4947 thread context, read in the kernel: a holder inside trace B
//! holds one mutex per waiter while waiter i, inside trace A_i, blocks on
//! its mutex. Every waiter's spanlet must carry A_i as its own context and
//! B (the holder's span) as the holder's; the waiter that publishes no
//! context gets nulls, not garbage. The contexts are written by Datadog's
//! libdd-otel-thread-ctx, not by anything of spanlet's.
//!
//! Needs root and eBPF (see the harness for skip/fail rules).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use spanlet_tests::{
    C_THREAD_CTX, Spanlet, assert_only_pid, describe, export_jsonl, kernel_ready, kernel_test_lock,
    record_command, spanlet_bin,
};

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

/// A child killed and reaped when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Deserialize)]
struct Tids {
    pid: u32,
    holder: u32,
    waiters: Vec<u32>,
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
    let mut workload = Reaped(
        Command::new(C_THREAD_CTX)
            .args(["2", "300"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("workload starts"),
    );
    let mut out = BufReader::new(workload.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("the workload's thread ids");
    let tids: Tids = serde_json::from_str(&line).expect("thread ids JSON");

    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("lib.spanlet");
    let mut agent = Reaped(
        Command::new(spanlet_bin())
            .args([
                "record",
                "--min-wait",
                "1ms",
                "--pid",
                &tids.pid.to_string(),
            ])
            .arg("--output")
            .arg(&capture)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spanlet record starts"),
    );
    // The capture's first record is written once the programs are attached.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&capture).map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < deadline, "spanlet record did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    workload.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = agent
        .0
        .wait()
        .expect("spanlet record ends with its process");
    let mut stderr = String::new();
    agent
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "spanlet record failed: {stderr}");

    let spanlets = export_jsonl(&capture);
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
