//! Waits around thread and process lifetimes: a thread still blocked when a
//! capture stops, a process exiting with blocked workers, and `--pid` given
//! a thread id instead of a process id.

use std::time::Duration;

use serde::Deserialize;
use spanlet_tests::{
    Background, C_LIFECYCLE, C_MUTEX, Recording, SPANLET_TIMEOUT, kernel_test_lock, record_command,
    record_pids,
};

#[derive(Deserialize)]
struct Truth {
    pid: u32,
    main_tid: u32,
    tids: Vec<u32>,
}

fn truth(stdout: &str) -> Truth {
    let line = stdout
        .lines()
        .find(|l| l.contains("c_lifecycle"))
        .unwrap_or_else(|| {
            panic!("c_lifecycle printed no ground truth:\n{stdout}");
        });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad ground truth {line:?}: {e}"))
}

/// A wait that began during the capture and had not ended when it stopped
/// is recorded as in progress, lasting until the stop.
#[test]
fn a_wait_still_blocked_at_the_end_is_in_progress() {
    let _serial = kernel_test_lock();
    let workload = Background::start(C_LIFECYCLE, &["stuck", "4"]);
    std::thread::sleep(Duration::from_millis(300));
    let Some(rec) = record_pids(&[workload.pid()], "2s", &[]) else {
        return;
    };
    let (status, stdout) = workload.wait(SPANLET_TIMEOUT);
    assert!(status.success(), "c_lifecycle failed: {status}");
    let truth = truth(&stdout);
    let spanlets = rec.export();
    let stuck: Vec<_> = spanlets.iter().filter(|s| s.tid == truth.tids[0]).collect();
    assert_eq!(
        stuck.len(),
        1,
        "one wait by the stuck thread expected: {spanlets:?}"
    );
    let s = stuck[0];
    assert_eq!(s.outcome, "in_progress", "{s:?}");
    assert_eq!(s.comm, "stuck");
    assert_eq!((s.waker_tid, s.holder_tid), (None, None), "{s:?}");
    // It began ~1 s into the workload, ~0.7 s into the 2 s capture.
    let secs = s.wait_ns as f64 / 1e9;
    assert!(
        (0.9..=1.9).contains(&secs),
        "in-progress wait of {secs:.2}s: {s:?}"
    );
    let report = rec.report_text();
    assert!(
        report.contains("still blocked when tracing stopped: 1"),
        "{report}"
    );
}

/// exit() kills the other threads: each blocked worker's wait ends,
/// interrupted by the exiting thread, and nothing is left open or lost.
#[test]
fn exiting_with_blocked_workers_ends_their_waits() {
    let _serial = kernel_test_lock();
    let Some(rec) = record_command(&["--min-wait", "1ms"], C_LIFECYCLE, &["exit"]) else {
        return;
    };
    let truth = truth(&rec.stdout);
    let spanlets = rec.export();
    for &tid in &truth.tids {
        let waits: Vec<_> = spanlets.iter().filter(|s| s.tid == tid).collect();
        assert_eq!(waits.len(), 1, "worker {tid}: {spanlets:?}");
        let s = waits[0];
        assert_eq!(s.pid, truth.pid);
        assert_eq!(s.outcome, "interrupted", "killed by exit_group: {s:?}");
        assert_eq!(
            s.waker_tid,
            Some(truth.main_tid),
            "the exiting thread woke it: {s:?}"
        );
        assert!(
            s.holder_tid.is_none(),
            "a condvar wait has no holder: {s:?}"
        );
        assert!(s.wait_ns >= 150_000_000, "blocked ~200 ms: {s:?}");
    }
    let stats = rec.report_json()["stats"].clone();
    let n = |k: &str| {
        stats[k]
            .as_u64()
            .unwrap_or_else(|| panic!("no {k} in {stats}"))
    };
    assert_eq!(
        n("exited_in_wait"),
        0,
        "the killed workers ran once more: {stats}"
    );
    assert_eq!(
        n("waits_seen"),
        n("spanlets") + n("below_min_wait") + n("dropped"),
        "every wait seen is recorded, filtered or counted as dropped: {stats}"
    );
}

/// A thread id given to --pid stands for its process, and spanlet says so.
#[test]
fn pid_given_a_thread_id_traces_its_process() {
    let _serial = kernel_test_lock();
    let workload = Background::start(C_MUTEX, &["40", "30"]);
    // The workload's threads appear as it starts: take one that is not main.
    let pid = workload.pid();
    let mut tid = None;
    for _ in 0..100 {
        tid = std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()
            .and_then(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                    .find(|&t| t != pid)
            });
        if tid.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let tid = tid.expect("c_mutex started no thread");
    let Some(rec): Option<Recording> = record_pids(&[tid], "1s", &["--min-wait", "1ms"]) else {
        return;
    };
    assert!(
        rec.stderr
            .contains(&format!("{tid} is a thread of process {pid}")),
        "record should say it traces the process:\n{}",
        rec.stderr
    );
    let spanlets = rec.export();
    assert!(
        spanlets
            .iter()
            .any(|s| s.pid == pid && s.kind == "mutex_wait"),
        "the process's mutex waits should be recorded: {spanlets:?}"
    );
    assert!(spanlets.iter().all(|s| s.pid == pid), "{spanlets:?}");
    drop(workload);
}

/// A traced process that execs a new program is, from then on, that
/// program: the capture's process record is read again, so its resources
/// are reported under the new name, not the one it had before the exec.
/// (The same path renews a process record when a PID is reused.)
#[test]
fn a_process_that_execs_is_reported_as_its_new_program() {
    let _serial = kernel_test_lock();
    // Python contends on a lock (so its process record is written as
    // python3), then becomes c_mutex on the same PID.
    let script = r#"
import os, sys, threading, time
lock = threading.Lock()
def holder():
    for _ in range(5):
        with lock:
            time.sleep(0.03)
        time.sleep(0.01)
threads = [threading.Thread(target=holder) for _ in range(3)]
for t in threads: t.start()
for t in threads: t.join()
os.execv(sys.argv[1], [sys.argv[1], "5", "20"])
"#;
    let Some(rec) = record_command(&[], spanlet_tests::python(), &["-c", script, C_MUTEX]) else {
        return;
    };
    let truth: spanlet_tests::LockTruth = rec.truth();
    let addr = truth
        .addr
        .clone()
        .expect("c_mutex prints its mutex address");
    let report = rec.report_json();
    let resources = report["resources"].as_array().expect("resources");
    let mutex = resources
        .iter()
        .find(|r| r["addr"].as_str() == Some(addr.as_str()) && r["pid"] == truth.pid)
        .unwrap_or_else(|| panic!("c_mutex's mutex {addr} is not in the report: {report:#}"));
    assert_eq!(
        mutex["process"], "c_mutex",
        "the exec'd program's mutex is reported under the process name it had before the exec"
    );
}
