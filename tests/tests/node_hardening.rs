//! The node agent hardened: idle connections to its metrics port do not
//! starve the kubelet's probes, and the figures that close the books on
//! the waits seen are all shown (summary line and /metrics).
//!
//! Needs root and eBPF, and rotel (`cargo xtask setup` installs it).

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spanlet_tests::{
    Background, C_MUTEX, Reaped,
    collector::Rotel,
    kernel_ready, kernel_test_lock,
    node::{TestCgroup, http_get, metric, wait_for_metric, wait_ready},
    record_command, spanlet_bin,
};

/// `spanlet run ARGS` exporting to `rotel`, metrics on 127.0.0.1:`port`.
fn start_agent(args: &[&str], rotel: &Rotel, port: u16) -> Reaped {
    let mut agent = Reaped(
        Command::new(spanlet_bin())
            .arg("run")
            .args(args)
            .args(["--min-wait", "1ms", "--otlp-protocol", "grpc"])
            .arg("--otlp-endpoint")
            .arg(rotel.grpc_url())
            .arg("--metrics-address")
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spanlet run starts"),
    );
    wait_ready(port, &mut agent.0);
    agent
}

/// SIGTERM, and the agent must exit cleanly; returns its stderr.
fn stop_agent(mut agent: Reaped) -> String {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    let (status, stderr) = agent.exit_within(Duration::from_secs(15), "spanlet run exits");
    assert!(status.success(), "spanlet run failed ({status}):\n{stderr}");
    stderr
}

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
