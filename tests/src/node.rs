//! For tests of `spanlet run` as a node agent: a throwaway cgroup named like
//! a container's, the agent with its metrics endpoint, and reading that.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use crate::{Reaped, collector::Rotel, spanlet_bin};

/// A container id as runtimes write them (64 hex digits).
pub const CONTAINER_ID: &str = "5e1f0c0ffee0ddba11c0de5e1f0c0ffee0ddba11c0de5e1f0c0ffee0ddba11c0";

/// Where cgroup v2 is mounted here (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on hybrid hosts).
pub fn cgroup2_mount() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    mountinfo
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            (right.split(' ').next()? == "cgroup2").then(|| PathBuf::from(point))
        })
        .expect("a cgroup2 mount")
}

/// `<cgroup2>/spanlet-test-<pid>-<name>/cri-containerd-<id>.scope`: a
/// cgroup shaped like a Kubernetes container's, removed on drop (after its
/// processes have exited).
pub struct TestCgroup {
    pub parent: PathBuf,
    pub leaf: PathBuf,
}

impl TestCgroup {
    pub fn new(name: &str) -> Self {
        Self::for_container(name, CONTAINER_ID)
    }

    /// One for the container with this (64 hex digit) id.
    pub fn for_container(name: &str, container_id: &str) -> Self {
        let parent = cgroup2_mount().join(format!("spanlet-test-{}-{name}", std::process::id()));
        let leaf = parent.join(format!("cri-containerd-{container_id}.scope"));
        std::fs::create_dir_all(&leaf)
            .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", leaf.display()));
        Self { parent, leaf }
    }

    /// `PROGRAM ARGS`, started (exec'd) inside the leaf cgroup.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        in_cgroup(&self.leaf, program, args)
    }
}

/// `sh -c 'move into cgroup DIR; exec PROGRAM ARGS'`, so the program
/// starts (execs) inside it.
pub fn in_cgroup(dir: &Path, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
        .arg(dir)
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    cmd
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.leaf).is_err() && Instant::now() < deadline {
            sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir(&self.parent);
    }
}

/// `GET path` on 127.0.0.1:port: (status, body), or None if nothing
/// answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// A sample's value from Prometheus text, e.g.
/// `metric(text, "spanlet_spanlets_total{kind=\"mutex_wait\"}")`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Polls /metrics until `series` satisfies `ok`; panics after `within`.
pub fn wait_for_metric(port: u16, series: &str, within: Duration, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let text = http_get(port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        if let Some(v) = metric(&text, series).filter(|&v| ok(v)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{series} did not reach the expected value within {within:?}; /metrics:\n{text}"
        );
        sleep(Duration::from_millis(100));
    }
}

/// `spanlet run ARGS` exporting to `rotel` over gRPC (1 s timeout),
/// metrics on 127.0.0.1:`port`, outside any cluster, `--min-wait 1ms`
/// unless `args` give one; returns once it is ready.
pub fn start_agent(args: &[&str], rotel: &Rotel, port: u16) -> Reaped {
    start_agent_with(Command::new(spanlet_bin()), args, rotel, port)
}

/// The same, from `command` (spanlet, or something that execs it, with
/// any environment of its own).
pub fn start_agent_with(mut command: Command, args: &[&str], rotel: &Rotel, port: u16) -> Reaped {
    command.arg("run").args(args);
    if !args.contains(&"--min-wait") {
        command.args(["--min-wait", "1ms"]);
    }
    // Outside a cluster, whatever machine the tests run on, unless the
    // caller gave the agent a cluster of its own.
    if !command
        .get_envs()
        .any(|(key, _)| key == "KUBERNETES_SERVICE_HOST")
    {
        command.env_remove("KUBERNETES_SERVICE_HOST");
    }
    let mut agent = Reaped(
        command
            .args(["--otlp-protocol", "grpc", "--otlp-timeout", "1s"])
            .arg("--otlp-endpoint")
            .arg(rotel.grpc_url())
            .arg("--metrics-address")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spanlet run starts"),
    );
    wait_ready(port, &mut agent.0);
    agent
}

/// SIGTERM, then the agent must flush and exit promptly (15 s) and
/// cleanly; returns its stderr.
pub fn stop_agent(mut agent: Reaped) -> String {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    let (status, stderr) = agent.exit_within(
        Duration::from_secs(15),
        "spanlet run did not exit after SIGTERM",
    );
    assert!(status.success(), "spanlet run failed ({status}):\n{stderr}");
    assert!(stderr.contains("(terminated (SIGTERM))"), "{stderr}");
    stderr
}

/// Waits until /readyz answers 200 (the programs are attached).
pub fn wait_ready(port: u16, agent: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, _)) = http_get(port, "/readyz") {
            return;
        }
        if let Ok(Some(status)) = agent.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = agent.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("spanlet run exited ({status}) before it was ready:\n{err}");
        }
        assert!(
            Instant::now() < deadline,
            "spanlet run was not ready within 30 s"
        );
        sleep(Duration::from_millis(50));
    }
}

/// The process a process forked, e.g. the program `unshare --fork` runs.
pub fn only_child(pid: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(child) = children
            .split_whitespace()
            .next()
            .and_then(|c| c.parse().ok())
        {
            return child;
        }
        assert!(Instant::now() < deadline, "process {pid} forked no child");
        sleep(Duration::from_millis(10));
    }
}

/// Effective capabilities of every thread of `pid`.
pub fn thread_caps(pid: u32) -> Vec<u64> {
    let dir = Path::new("/proc").join(pid.to_string()).join("task");
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
                .filter_map(|s| {
                    let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
                    u64::from_str_radix(hex.trim(), 16).ok()
                })
                .collect()
        })
        .unwrap_or_default()
}
