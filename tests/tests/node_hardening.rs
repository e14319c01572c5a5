//! The node agent hardened: no_new_privs in every thread and no capability
//! back through an exec, idle connections to its metrics port that do not
//! starve the kubelet's probes, and every figure that closes the books on
//! the waits seen shown (summary line and /metrics).
//!
//! Needs root and eBPF, and rotel (`cargo xtask setup` installs it).

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spanlet_tests::{
    Background, C_MUTEX,
    collector::Rotel,
    kernel_ready, kernel_test_lock,
    node::{TestCgroup, http_get, metric, start_agent, stop_agent, wait_for_metric},
    record_command,
};

/// The summary line's figures, by the label after each number.
struct Summary {
    spanlets: u64,
    seen: u64,
    below: u64,
    exited: u64,
    dropped: u64,
    ended_at_wake: u64,
}

fn summary(stderr: &str) -> Summary {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("spanlet: ") && l.contains(" spanlets in "))
        .unwrap_or_else(|| panic!("no summary line:\n{stderr}"));
    let before = |label: &str| -> u64 {
        let at = line
            .find(label)
            .unwrap_or_else(|| panic!("the summary line has no {label:?}: {line}"));
        line[..at]
            .split_whitespace()
            .next_back()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number before {label:?}: {line}"))
    };
    Summary {
        spanlets: before(" spanlets in "),
        seen: before(" waits seen"),
        below: before(" below --min-wait"),
        exited: before(" still waiting when their thread exited"),
        dropped: before(" dropped"),
        ended_at_wake: before(" recorded as ending at their wake-up"),
    }
}

/// Every wait the kernel saw is in exactly one of: recorded, below
/// --min-wait, still open when its thread exited, dropped. Waits closed at
/// their wake-up are among those recorded or filtered, so the line shows
/// them without adding them.
#[test]
fn record_summary_line_closes_the_books() {
    let _serial = kernel_test_lock();
    let Some(rec) = record_command(&["--min-wait", "1ms"], C_MUTEX, &["40", "30"]) else {
        return;
    };
    let s = summary(&rec.stderr);
    assert!(s.seen > 0, "{}", rec.stderr);
    assert_eq!(
        s.seen,
        s.spanlets + s.below + s.exited + s.dropped,
        "waits seen = recorded + below --min-wait + exited while waiting + dropped:\n{}",
        rec.stderr
    );
    assert!(s.ended_at_wake <= s.seen, "{}", rec.stderr);
}

/// The same books from /metrics of `spanlet run`, once a traced workload
/// has exited and everything it did has been read.
#[test]
fn run_metrics_close_the_books() {
    let _serial = kernel_test_lock();
    if !kernel_ready() {
        return;
    }
    let Some(rotel) = Rotel::start() else {
        return;
    };
    let cgroup = TestCgroup::new("books");
    let port = Rotel::free_ports().0;
    let parent = cgroup.parent.display().to_string();
    let agent = start_agent(&["--cgroup", &parent], &rotel, port);
    let workload = Background::from_command(cgroup.command(C_MUTEX, &["40", "30"]));
    let (status, _) = workload.wait(Duration::from_secs(60));
    assert!(status.success());
    wait_for_metric(
        port,
        "spanlet_spanlets_total{kind=\"mutex_wait\"}",
        Duration::from_secs(10),
        |v| v > 0.0,
    );
    // Kernel counters are read once a second, spanlets as they arrive:
    // the two agree within a few ticks of the workload's exit.
    let books = |text: &str| -> Option<(f64, f64)> {
        let m = |series: &str| metric(text, series);
        let recorded: f64 = ["futex_wait", "mutex_wait", "socket_wait"]
            .iter()
            .map(|k| m(&format!("spanlet_spanlets_total{{kind=\"{k}\"}}")))
            .sum::<Option<f64>>()?;
        let dropped: f64 = [
            "ringbuf_full",
            "wait_map_full",
            "user_queue_full",
            "malformed",
        ]
        .iter()
        .map(|c| m(&format!("spanlet_dropped_total{{cause=\"{c}\"}}")))
        .sum::<Option<f64>>()?;
        let accounted = recorded
            + m("spanlet_waits_below_min_wait_total")?
            + m("spanlet_waits_thread_exited_total")?
            + dropped;
        m("spanlet_waits_ended_at_wake_total")?;
        Some((m("spanlet_waits_seen_total")?, accounted))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = http_get(port, "/metrics").expect("/metrics answers").1;
        match books(&text) {
            Some((seen, accounted)) if seen > 0.0 && seen == accounted => break,
            got => assert!(
                std::time::Instant::now() < deadline,
                "waits seen != recorded + below + exited + dropped (seen, accounted) = {got:?}:\n{text}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop_agent(agent);
}

/// `GET /healthz` as a kubelet probe does, given `within` for all of it:
/// the status, or why there was none.
fn probe(port: u16, within: Duration) -> Result<u16, String> {
    let deadline = Instant::now() + within;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        TcpStream::connect_timeout(&addr, left()).map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut text = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        stream
            .set_read_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read after {} bytes: {e}", text.len())),
        }
    }
    let text = String::from_utf8_lossy(&text);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))
}

/// Keeps `n` connections to `port` open that never send a byte: those
/// the agent closed are opened again, as a client bent on it would.
fn keep_idle(port: u16, idle: &mut Vec<TcpStream>, n: usize) {
    idle.retain(|s| matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock));
    while idle.len() < n {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect an idle client");
        s.set_nonblocking(true).expect("nonblocking");
        idle.push(s);
    }
}

/// 150 idle connections to the metrics port (reopened when closed), and
/// 20 liveness probes: every one answers 200 within the DaemonSet's 2 s
/// probe timeout.
#[test]
fn run_answers_probes_with_150_idle_connections_open() {
    let _serial = kernel_test_lock();
    if !kernel_ready() {
        return;
    }
    let Some(rotel) = Rotel::start() else {
        return;
    };
    let cgroup = TestCgroup::new("probes");
    let port = Rotel::free_ports().0;
    let parent = cgroup.parent.display().to_string();
    let agent = start_agent(&["--cgroup", &parent], &rotel, port);
    let mut idle = Vec::new();
    let mut failed = Vec::new();
    for n in 0..20 {
        keep_idle(port, &mut idle, 150);
        match probe(port, Duration::from_secs(2)) {
            Ok(200) => {}
            other => failed.push(format!("probe {n}: {other:?}")),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(idle);
    stop_agent(agent);
    assert!(failed.is_empty(), "of 20 probes, failed: {failed:#?}");
}

const CAP_DAC_READ_SEARCH: u64 = 1 << 2;
const CAP_SYS_PTRACE: u64 = 1 << 19;
const CAP_SYS_ADMIN: u64 = 1 << 21;
const CAP_PERFMON: u64 = 1 << 38;
const CAP_BPF: u64 = 1 << 39;

/// A field of a /proc/.../status text, e.g. `CapPrm` (hex) or `NoNewPrivs`.
fn status_field(status: &str, field: &str) -> Option<u64> {
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim();
    if field.starts_with("Cap") {
        u64::from_str_radix(value, 16).ok()
    } else {
        value.parse().ok()
    }
}

/// Every thread of the agent has no_new_privs (so no exec by any of them
/// gains a capability) and, as root, a bounding set without the loading
/// capabilities.
#[test]
fn run_sets_no_new_privs_in_every_thread() {
    let _serial = kernel_test_lock();
    if !kernel_ready() {
        return;
    }
    let Some(rotel) = Rotel::start() else {
        return;
    };
    let cgroup = TestCgroup::new("nnp");
    let port = Rotel::free_ports().0;
    let parent = cgroup.parent.display().to_string();
    let agent = start_agent(&["--cgroup", &parent], &rotel, port);
    let tasks = std::path::PathBuf::from(format!("/proc/{}/task", agent.0.id()));
    let statuses: Vec<(String, String)> = std::fs::read_dir(&tasks)
        .expect("the agent's threads")
        .filter_map(Result::ok)
        .filter_map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            Some((t.file_name().to_string_lossy().into_owned(), status))
        })
        .collect();
    stop_agent(agent);
    assert!(!statuses.is_empty());
    for (tid, status) in &statuses {
        assert_eq!(
            status_field(status, "NoNewPrivs"),
            Some(1),
            "thread {tid} of the agent:\n{status}"
        );
        let bounding = status_field(status, "CapBnd").expect("CapBnd");
        assert_eq!(
            bounding & (CAP_BPF | CAP_PERFMON | CAP_SYS_ADMIN),
            0,
            "thread {tid} could regain a loading capability:\n{status}"
        );
    }
}

/// Set in the child of [`exec_after_the_drop`].
const EXEC_CHILD: &str = "SPANLET_TEST_EXEC_AFTER_DROP";

/// Only the child process of [`exec_after_the_drop`] (with [`EXEC_CHILD`]
/// set; otherwise it returns at once): hardens and drops capabilities as
/// `spanlet run` does, then execs `cat /proc/self/status` from this thread,
/// whose credentials the exec takes.
#[test]
fn exec_after_drop_child() {
    if std::env::var_os(EXEC_CHILD).is_none() {
        return;
    }
    spanlet::kernel::caps::harden().expect("harden");
    spanlet::kernel::caps::drop_after_load().expect("drop after load");
    let err = Command::new("/bin/cat").arg("/proc/self/status").exec();
    panic!("exec: {err}");
}

/// What a program exec'd after the agent's capability drop runs with
/// (its /proc/self/status), the test process started through `setpriv
/// SETPRIV` if given.
fn exec_after_the_drop(setpriv: &[&str]) -> String {
    let exe = std::env::current_exe().expect("the test binary");
    let mut cmd = if setpriv.is_empty() {
        Command::new(&exe)
    } else {
        let mut c = Command::new("setpriv");
        c.args(setpriv).arg(&exe);
        c
    };
    let out = cmd
        .args(["--exact", "exec_after_drop_child", "--nocapture"])
        .env(EXEC_CHILD, "1")
        .stdin(Stdio::null())
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("NoNewPrivs:"),
        "the child did not exec cat ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// As root with every capability (CAP_SETPCAP among them, so the
/// securebits are locked): an exec after the drop gets no capability.
#[test]
fn an_exec_after_the_drop_gets_nothing_as_root() {
    if !kernel_ready() {
        return;
    }
    let status = exec_after_the_drop(&[]);
    for set in ["CapPrm", "CapEff", "CapAmb", "CapInh"] {
        assert_eq!(status_field(&status, set), Some(0), "{set}:\n{status}");
    }
    assert_eq!(status_field(&status, "NoNewPrivs"), Some(1), "{status}");
}

/// With only the DaemonSet's four capabilities (no CAP_SETPCAP, so no
/// securebits): an exec after the drop gets back neither CAP_BPF nor
/// CAP_PERFMON, only what the agent kept.
#[test]
fn an_exec_after_the_drop_gets_no_loading_capability_in_the_daemonset() {
    if !kernel_ready() {
        return;
    }
    let status = exec_after_the_drop(&[
        "--bounding-set=-all,+bpf,+perfmon,+sys_ptrace,+dac_read_search",
        "--inh-caps=-all",
    ]);
    for set in ["CapPrm", "CapEff"] {
        let caps = status_field(&status, set).expect(set);
        assert_eq!(
            caps & !(CAP_SYS_PTRACE | CAP_DAC_READ_SEARCH),
            0,
            "{set} beyond what the agent keeps:\n{status}"
        );
    }
    assert_eq!(status_field(&status, "NoNewPrivs"), Some(1), "{status}");
}
