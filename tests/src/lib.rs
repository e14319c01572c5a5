//! Harness for spanlet's end-to-end tests.
//!
//! The tests run real workloads with known contention (`workloads/`,
//! `src/bin/rust_mutex.rs`) under `spanlet record`, export the capture as
//! JSON lines and compare it with the ground truth each workload prints.
//!
//! Binaries:
//! - spanlet: `$SPANLET_BIN`, else `spanlet` in the test executable's profile
//!   directory (`target/<profile>/`), else in `target/release/` of the same
//!   target directory. Missing: panic ("build it first").
//! - C workloads: built by build.rs into OUT_DIR ([`C_MUTEX`], [`C_CONDVAR`],
//!   [`C_FUTEX_OPS`]).
//! - Python workload: [`PY_LOCK`], run with `$SPANLET_PYTHON`, else
//!   `/usr/bin/python3`, else `python3` on PATH ([`python`]).
//! - Rust workload: integration tests pass `env!("CARGO_BIN_EXE_rust_mutex")`.
//!
//! Kernel tests need root and eBPF. When `spanlet record` cannot load its
//! eBPF programs (or we are not root), [`record_command`] and
//! [`record_pids`] return `None` after printing "skipping: <reason>", unless
//! `$CI` is set, where they panic with the reason: CI must run them.

pub mod collector;
pub mod node;

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// glibc pthread mutex workload (`workloads/c_mutex.c`).
pub const C_MUTEX: &str = env!("SPANLET_WORKLOAD_C_MUTEX");
/// glibc condvar producer/consumer workload (`workloads/c_condvar.c`).
pub const C_CONDVAR: &str = env!("SPANLET_WORKLOAD_C_CONDVAR");
/// One blocking wait of each futex flavour: PI mutex, futex_wait(2),
/// futex_waitv(2), timeout, signal (`workloads/c_futex_ops.c`).
pub const C_FUTEX_OPS: &str = env!("SPANLET_WORKLOAD_C_FUTEX_OPS");
/// Two threads ping-ponging a futex word: many short blocking waits.
pub const C_PINGPONG: &str = env!("SPANLET_WORKLOAD_C_PINGPONG");
/// Threads blocked when a capture stops, or when their process exits.
pub const C_LIFECYCLE: &str = env!("SPANLET_WORKLOAD_C_LIFECYCLE");
/// Threads contending on their process's mmap_lock in the kernel
/// (`workloads/c_kernel_locks.c`).
pub const C_KERNEL_LOCKS: &str = env!("SPANLET_WORKLOAD_C_KERNEL_LOCKS");
/// A loopback TCP server and client, each with two threads on one socket
/// (`workloads/c_socket_pair.c`).
pub const C_SOCKET_PAIR: &str = env!("SPANLET_WORKLOAD_C_SOCKET_PAIR");
/// pthread mutexes with thread context from a shared library
/// (`workloads/c_thread_ctx.c`, `workloads/otel_ctx_lib.c`).
pub const C_THREAD_CTX: &str = env!("SPANLET_WORKLOAD_C_THREAD_CTX");
/// Thread context from a library dlopened later (`workloads/c_dlopen_ctx.c`)
/// and that library (initial-exec TLS).
pub const C_DLOPEN_CTX: &str = env!("SPANLET_WORKLOAD_C_DLOPEN_CTX");
pub const LIB_OTELCTX_IE: &str = env!("SPANLET_LIB_OTELCTX_IE");
/// Python threading.Lock workload (`workloads/py_lock.py`).
pub const PY_LOCK: &str = env!("SPANLET_WORKLOAD_PY_LOCK");

/// How long a `spanlet` command may run before the test gives up on it.
pub const SPANLET_TIMEOUT: Duration = Duration::from_secs(120);

const MS: u64 = 1_000_000;

/// Allowed disagreement between spanlet's Unix timestamps and the
/// workload's CLOCK_REALTIME readings (spanlet converts kernel monotonic
/// time; the workload reads the wall clock next to its lock calls).
pub const ROUND_CLOCK_TOLERANCE_NS: u64 = 5 * MS;
/// How long after the holder's unlock a waiter may take to run again (and,
/// in a hand-off chain, the next waiter): scheduling latency on a busy
/// 2-core machine.
pub const ROUND_LATE_NS: u64 = 20 * MS;

// ---------------------------------------------------------------------------
// Locating programs

/// `target/<profile>` of the running test executable
/// (`target/<profile>/deps/<test>-<hash>`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let deps = exe
        .parent()
        .expect("test executable has a parent directory");
    // Integration tests live in deps/; a harness binary would sit in the
    // profile directory itself.
    if deps.file_name() == Some(OsStr::new("deps")) {
        deps.parent().expect("deps/ has a parent").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// The spanlet binary under test. Panics if it is not built.
pub fn spanlet_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SPANLET_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "SPANLET_BIN={} is not a file; build it first: cargo build --release -p agent",
            bin.display()
        );
        return bin;
    }
    let profile = profile_dir();
    let mut candidates = vec![profile.join("spanlet")];
    // The tests may be built in debug while spanlet is built with --release
    // in the same target directory.
    if let Some(target) = profile.parent() {
        let release = target.join("release").join("spanlet");
        if !candidates.contains(&release) {
            candidates.push(release);
        }
    }
    match candidates.iter().find(|p| p.is_file()) {
        Some(bin) => bin.clone(),
        None => panic!(
            "spanlet binary not found (looked at {}); build it first: \
             cargo build --release -p agent (same CARGO_TARGET_DIR as the tests), \
             or set SPANLET_BIN",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The Python interpreter for `py_lock.py`. Prefers the system python3 over
/// a pyenv shim on PATH: a shim is a shell script that forks helpers before
/// it execs Python, which would add processes to the traced tree.
pub fn python() -> PathBuf {
    if let Some(py) = std::env::var_os("SPANLET_PYTHON") {
        return PathBuf::from(py);
    }
    let system = PathBuf::from("/usr/bin/python3");
    if system.is_file() {
        system
    } else {
        PathBuf::from("python3")
    }
}

// ---------------------------------------------------------------------------
// Running processes

/// `bpftool ARGS`, which must succeed (`cargo xtask setup` installs
/// bpftool); its standard output.
pub fn bpftool(args: &[&str]) -> Vec<u8> {
    let out = Command::new("bpftool")
        .args(args)
        .output()
        .expect("bpftool runs (cargo xtask setup installs it)");
    assert!(
        out.status.success(),
        "bpftool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `cmd` to completion with stdin closed and stdout/stderr captured.
/// Kills it and panics after `timeout` so a hung spanlet fails the test
/// instead of hanging CI.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if start.elapsed() > timeout {
            // The readers are left behind: a grandchild may still hold the
            // pipes open, and joining them could hang.
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not finish within {timeout:?}; killed it");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Runs `spanlet ARGS...` (with cwd `cwd` if given), with [`SPANLET_TIMEOUT`].
pub fn spanlet<I, S>(args: I, cwd: Option<&Path>) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(spanlet_bin());
    cmd.args(args);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    run_with_timeout(cmd, SPANLET_TIMEOUT)
}

/// A process started in the background for the duration of a test; killed
/// (by its own pid) and reaped on drop so a failing test leaves nothing
/// running.
pub struct Background {
    child: Child,
}

impl Background {
    /// Starts `program ARGS...` with stdin closed and stdout captured.
    pub fn start<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: &[S]) -> Self {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Background { child }
    }

    /// Starts a prepared command (its stdio as the caller set it).
    pub fn from_command(mut cmd: Command) -> Self {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Background { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("poll child").is_none()
    }

    /// Waits up to `timeout` for it to exit; returns its stdout.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll child") {
                break status;
            }
            assert!(
                start.elapsed() < timeout,
                "background workload {} did not exit within {timeout:?}",
                self.pid()
            );
            thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        if let Some(mut pipe) = self.child.stdout.take() {
            pipe.read_to_string(&mut out).expect("read workload stdout");
        }
        (status, out)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Serializes kernel tests within one test binary: concurrent recordings and
/// workloads on 2 cores would distort the timings the tests check. Poisoning
/// is ignored: one failed test should not fail the others.
pub fn kernel_test_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Recording

/// A finished `spanlet record`.
pub struct Recording {
    /// Holds the capture; removed on drop.
    pub dir: tempfile::TempDir,
    pub capture: PathBuf,
    /// stdout of `spanlet record` (the launched workload's stdout).
    pub stdout: String,
    pub stderr: String,
}

impl Recording {
    /// The workload's ground truth (see [`parse_truth`]).
    pub fn truth<T: DeserializeOwned>(&self) -> T {
        parse_truth(&self.stdout, &self.stderr)
    }

    /// `spanlet export CAPTURE --format jsonl`, parsed and checked.
    pub fn export(&self) -> Vec<Spanlet> {
        export_jsonl(&self.capture)
    }

    /// Like [`Recording::export`], but also accepts `mutex_hold` spanlets
    /// (recorded with `--mutex-uprobes`).
    pub fn export_with_holds(&self) -> Vec<Spanlet> {
        export_jsonl_with_holds(&self.capture)
    }

    /// Like [`Recording::export`], but also accepts `socket_wait` spanlets.
    pub fn export_with_sockets(&self) -> Vec<Spanlet> {
        export_kinds(&self.capture, &["futex_wait", "mutex_wait", "socket_wait"])
    }

    /// Like [`Recording::export`], but also accepts `kernel_lock_wait`
    /// spanlets (recorded with `--kernel-locks`).
    pub fn export_with_kernel_locks(&self) -> Vec<Spanlet> {
        export_kinds(
            &self.capture,
            &["futex_wait", "mutex_wait", "kernel_lock_wait"],
        )
    }

    /// `spanlet report CAPTURE` (text).
    pub fn report_text(&self) -> String {
        let out = spanlet([OsStr::new("report"), self.capture.as_os_str()], None);
        assert_success("spanlet report", &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `spanlet report CAPTURE --format json`, parsed.
    pub fn report_json(&self) -> Value {
        let out = spanlet(
            [
                OsStr::new("report"),
                self.capture.as_os_str(),
                OsStr::new("--format"),
                OsStr::new("json"),
            ],
            None,
        );
        assert_success("spanlet report --format json", &out);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "spanlet report --format json printed invalid JSON: {e}\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

/// Why kernel tests cannot run here, decided before running spanlet.
fn precondition_failure() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    (euid != 0).then(|| format!("not running as root (euid {euid}); spanlet needs eBPF"))
}

/// Whether a failed `spanlet record`'s stderr says eBPF is not usable here
/// (as opposed to spanlet being broken, which must fail the test).
fn looks_like_ebpf_unavailable(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    [
        "bpf",
        "btf",
        "operation not permitted",
        "permission denied",
        "cap_sys_admin",
        "cap_perfmon",
        "memlock",
    ]
    .iter()
    .any(|needle| s.contains(needle))
}

/// For kernel tests that run spanlet themselves: false (after printing
/// "skipping: …") when they cannot run here; panics in CI instead.
pub fn kernel_ready() -> bool {
    match precondition_failure() {
        Some(reason) => skip::<()>(&reason).is_some(),
        None => true,
    }
}

/// Skip (locally) or fail (in CI) a kernel test. Returns `None` to the caller
/// when skipping.
fn skip<T>(reason: &str) -> Option<T> {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    if ci {
        panic!("kernel test cannot run, and CI is set: {reason}");
    }
    println!("skipping: {reason}");
    None
}

fn record(mut args: Vec<OsString>) -> Option<Recording> {
    let bin = spanlet_bin();
    if let Some(reason) = precondition_failure() {
        return skip(&reason);
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let capture = dir.path().join("capture.spanlet");
    let mut full: Vec<OsString> = vec!["record".into(), "--output".into(), capture.clone().into()];
    full.append(&mut args);

    let mut cmd = Command::new(&bin);
    cmd.args(&full).current_dir(dir.path());
    let out = run_with_timeout(cmd, SPANLET_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();

    if !out.status.success() {
        // No workload output means spanlet failed before (or instead of)
        // running it: that is where an eBPF load failure shows.
        if stdout.trim().is_empty() && looks_like_ebpf_unavailable(&stderr) {
            return skip(&format!(
                "spanlet record could not load eBPF ({}): {}",
                out.status,
                stderr.trim()
            ));
        }
        panic!(
            "`spanlet {}` failed ({}).\nstderr:\n{stderr}\nstdout:\n{stdout}",
            show_args(&full),
            out.status
        );
    }
    assert!(
        capture.is_file(),
        "`spanlet {}` succeeded but wrote no capture at {}.\nstderr:\n{stderr}",
        show_args(&full),
        capture.display()
    );
    Some(Recording {
        dir,
        capture,
        stdout,
        stderr,
    })
}

fn show_args(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `spanlet record --output F [SPANLET_ARGS...] -- PROGRAM ARGS...`.
/// `None`: skipped (eBPF unavailable, not in CI).
pub fn record_command<S: AsRef<OsStr>>(
    spanlet_args: &[&str],
    program: impl AsRef<OsStr>,
    args: &[S],
) -> Option<Recording> {
    let mut full: Vec<OsString> = spanlet_args.iter().map(OsString::from).collect();
    full.push("--".into());
    full.push(program.as_ref().to_owned());
    full.extend(args.iter().map(|a| a.as_ref().to_owned()));
    record(full)
}

/// `spanlet record --output F --pid P... --duration D [SPANLET_ARGS...]`.
/// `None`: skipped (eBPF unavailable, not in CI).
pub fn record_pids(pids: &[u32], duration: &str, spanlet_args: &[&str]) -> Option<Recording> {
    let mut full: Vec<OsString> = Vec::new();
    for pid in pids {
        full.push("--pid".into());
        full.push(pid.to_string().into());
    }
    full.push("--duration".into());
    full.push(duration.into());
    full.extend(spanlet_args.iter().map(OsString::from));
    record(full)
}

/// `spanlet record --ringbuf-size 4096 --min-wait 0s -- C_PINGPONG 60000`,
/// with the agent stopped for half a second once the workload starts: a
/// one-page ring with its reader stopped overflows. `rust_log` is the
/// agent's `RUST_LOG` (`None`: unset); `while_stopped` is called with the
/// agent's pid while it is stopped. `None`: skipped (not root, not in CI).
pub fn record_overflowing(
    rust_log: Option<&str>,
    while_stopped: impl FnOnce(u32),
) -> Option<Recording> {
    if !kernel_ready() {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let capture = dir.path().join("drops.spanlet");
    let mut cmd = Command::new(spanlet_bin());
    cmd.args(["record", "--ringbuf-size", "4096", "--min-wait", "0s"])
        .arg("--output")
        .arg(&capture)
        // Launched, the workload starts once the programs are attached,
        // however slow the start: it cannot run its course unseen.
        .args(["--", C_PINGPONG, "60000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match rust_log {
        Some(filter) => cmd.env("RUST_LOG", filter),
        None => cmd.env_remove("RUST_LOG"),
    };
    let mut recorder = cmd.spawn().expect("start spanlet record");
    let agent_pid = recorder.id();
    let agent = i32::try_from(agent_pid).expect("pid fits");
    // The capture appears as the workload starts: stop the agent then.
    let started = Instant::now();
    while !capture.exists() {
        if let Some(status) = recorder.try_wait().expect("poll spanlet record") {
            panic!("spanlet record ended before it started recording: {status}");
        }
        assert!(
            started.elapsed() < SPANLET_TIMEOUT,
            "spanlet record did not start within {SPANLET_TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: plain signals to our own child.
    unsafe { libc::kill(agent, libc::SIGSTOP) };
    let stopped = Instant::now();
    while_stopped(agent_pid);
    thread::sleep(Duration::from_millis(500).saturating_sub(stopped.elapsed()));
    // SAFETY: as above.
    unsafe { libc::kill(agent, libc::SIGCONT) };
    // Its exit code is the launched workload's.
    let out = recorder
        .wait_with_output()
        .expect("wait for spanlet record");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "record failed ({}):\n{stderr}",
        out.status
    );
    Some(Recording {
        dir,
        capture,
        stdout: String::new(),
        stderr,
    })
}

pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}).\nstderr:\n{}\nstdout:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

// ---------------------------------------------------------------------------
// Exported spanlets

/// One line of `spanlet export --format jsonl`.
#[derive(Clone, Debug, Deserialize)]
pub struct Spanlet {
    pub kind: String,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// Hex, "0x...": see [`Spanlet::addr`].
    pub addr: String,
    pub start_unix_nano: u64,
    pub wait_ns: u64,
    pub holder_tid: Option<u32>,
    pub waker_tid: Option<u32>,
    pub outcome: String,
    pub trace_id: Option<Value>,
    pub span_id: Option<Value>,
    pub holder_trace_id: Option<Value>,
    pub holder_span_id: Option<Value>,
    /// From the block to the wake-up (None: no wake-up seen).
    pub woken_after_ns: Option<u64>,
    pub waker_pid: Option<u32>,
    pub waker_comm: Option<String>,
    /// Syscall number the thread waited in (202 futex, 449 futex_waitv,
    /// 455 futex_wait); 0 for mutex_hold. Option: absent in older exports.
    pub syscall: Option<u32>,
    pub futex_op: Option<u32>,
    pub futex_val: Option<u32>,
    pub flags: Option<u32>,
    pub waker_trace_id: Option<Value>,
    pub waker_span_id: Option<Value>,
    /// `socket_wait` only.
    pub socket: Option<SocketLine>,
}

/// The `socket` object of a `socket_wait` line.
#[derive(Clone, Debug, Deserialize)]
pub struct SocketLine {
    pub op: String,
    pub transport: String,
    pub local_address: Option<String>,
    pub local_port: Option<u16>,
    pub peer_address: Option<String>,
    pub peer_port: Option<u16>,
}

impl Spanlet {
    pub fn addr(&self) -> u64 {
        parse_hex(&self.addr)
    }

    pub fn end_unix_nano(&self) -> u64 {
        self.start_unix_nano + self.wait_ns
    }

    pub fn wait_ms(&self) -> f64 {
        self.wait_ns as f64 / MS as f64
    }

    /// Short description for failure messages.
    pub fn brief(&self) -> String {
        format!(
            "{} pid={} tid={} ({}) addr={} wait={:.2}ms holder={:?} waker={:?} {}",
            self.kind,
            self.pid,
            self.tid,
            self.comm,
            self.addr,
            self.wait_ms(),
            self.holder_tid,
            self.waker_tid,
            self.outcome
        )
    }
}

/// Parses "0x..." (the form spanlet and the workloads print addresses in).
pub fn parse_hex(s: &str) -> u64 {
    let digits = s
        .strip_prefix("0x")
        .unwrap_or_else(|| panic!("address {s:?} does not start with 0x"));
    u64::from_str_radix(digits, 16).unwrap_or_else(|e| panic!("bad hex address {s:?}: {e}"))
}

/// An address in a report or elsewhere: "0x..." string or plain integer.
pub fn value_addr(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => Some(parse_hex(s)),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// `spanlet export FILE --format jsonl`, parsed line by line; checks the
/// enumerated fields hold documented values (wait kinds only).
pub fn export_jsonl(capture: &Path) -> Vec<Spanlet> {
    export_kinds(capture, &["futex_wait", "mutex_wait"])
}

/// [`export_jsonl`] for captures made with `--mutex-uprobes`: kind may also
/// be `mutex_hold`.
pub fn export_jsonl_with_holds(capture: &Path) -> Vec<Spanlet> {
    export_kinds(capture, &["futex_wait", "mutex_wait", "mutex_hold"])
}

fn export_kinds(capture: &Path, kinds: &[&str]) -> Vec<Spanlet> {
    let out = spanlet(
        [
            OsStr::new("export"),
            capture.as_os_str(),
            OsStr::new("--format"),
            OsStr::new("jsonl"),
        ],
        None,
    );
    assert_success("spanlet export --format jsonl", &out);
    let text = String::from_utf8(out.stdout).expect("export output is UTF-8");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let s: Spanlet = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad export line {line:?}: {e}"));
            assert!(
                kinds.contains(&s.kind.as_str()),
                "unexpected kind in {line}"
            );
            assert!(
                [
                    "woken",
                    "timed_out",
                    "interrupted",
                    "unknown",
                    "in_progress"
                ]
                .contains(&s.outcome.as_str()),
                "unexpected outcome in {line}"
            );
            parse_hex(&s.addr);
            s
        })
        .collect()
}

/// Lines describing up to `max` spanlets, for failure messages.
pub fn describe<'a>(spanlets: impl IntoIterator<Item = &'a Spanlet>, max: usize) -> String {
    let all: Vec<&Spanlet> = spanlets.into_iter().collect();
    let mut s: String = all
        .iter()
        .take(max)
        .map(|x| format!("  {}\n", x.brief()))
        .collect();
    if all.len() > max {
        s.push_str(&format!("  ... and {} more\n", all.len() - max));
    }
    s
}

// ---------------------------------------------------------------------------
// Ground truth

/// Parses a workload's ground truth: the last non-empty line of its stdout.
/// `context` (e.g. spanlet's stderr) is shown if there is none.
pub fn parse_truth<T: DeserializeOwned>(stdout: &str, context: &str) -> T {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("the workload printed no ground truth; context:\n{context}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad ground truth {line:?}: {e}"))
}

/// Printed by c_mutex, rust_mutex and py_lock.
#[derive(Clone, Debug, Deserialize)]
pub struct LockTruth {
    pub workload: String,
    pub pid: u32,
    pub main_tid: u32,
    /// Futex word of the measured lock (absent for Python).
    pub addr: Option<String>,
    pub holder_tid: u32,
    pub waiter_tids: Vec<u32>,
    pub hold_ms: u64,
    pub gap_ms: u64,
    pub rounds: usize,
    pub acquisitions: u64,
    /// [lock, unlock] of each round by the holder, Unix ns.
    pub round_windows_unix_nano: Vec<[u64; 2]>,
}

impl LockTruth {
    pub fn addr(&self) -> u64 {
        parse_hex(
            self.addr
                .as_deref()
                .expect("this workload prints its lock address"),
        )
    }

    /// All threads of the workload.
    pub fn tids(&self) -> Vec<u32> {
        let mut t = vec![self.main_tid, self.holder_tid];
        t.extend(&self.waiter_tids);
        t
    }

    pub fn hold_ns(&self) -> u64 {
        self.hold_ms * MS
    }

    /// Sanity of the workload itself, so a broken workload is not blamed on
    /// spanlet.
    pub fn check(&self) {
        assert_eq!(self.round_windows_unix_nano.len(), self.rounds);
        assert_eq!(
            self.acquisitions,
            (self.rounds * self.waiter_tids.len()) as u64,
            "workload did not complete its rounds"
        );
    }

    /// Rounds (0-based) with at least one of `spanlets` that started while
    /// the holder held the lock and ended when the holder released it:
    /// start in `[lock, unlock]` and end in `[unlock, unlock + ROUND_LATE_NS]`,
    /// each widened by [`ROUND_CLOCK_TOLERANCE_NS`]. Callers pass the waits
    /// that should occur once per round (e.g. long waits woken by the
    /// holder). Checking the end as well as the start makes a skew of more
    /// than a few ms in spanlet's Unix timestamps fail, whatever the round
    /// period.
    pub fn rounds_covered(&self, spanlets: &[&Spanlet]) -> Vec<usize> {
        let tol = ROUND_CLOCK_TOLERANCE_NS;
        self.round_windows_unix_nano
            .iter()
            .enumerate()
            .filter(|(_, [lock, unlock])| {
                spanlets.iter().any(|s| {
                    let (start, end) = (s.start_unix_nano, s.end_unix_nano());
                    start + tol >= *lock
                        && start <= unlock + tol
                        && end + tol >= *unlock
                        && end <= unlock + ROUND_LATE_NS + tol
                })
            })
            .map(|(i, _)| i)
            .collect()
    }
}

impl LockTruth {
    /// At least 80% of rounds have a long wait woken by the holder that
    /// starts during the hold and ends at the unlock: each unlock hands the
    /// lock to a waiter, at the time the workload saw it.
    pub fn assert_holder_woke_rounds(&self, long: &[&Spanlet], ctx: &str) {
        let by_holder: Vec<&Spanlet> = long
            .iter()
            .copied()
            .filter(|s| s.waker_tid == Some(self.holder_tid))
            .collect();
        let covered = self.rounds_covered(&by_holder).len();
        assert!(
            ratio(covered, self.rounds) >= 0.8,
            "only {covered}/{} rounds have a long wait woken by the holder {} that starts \
             during the hold and ends at the unlock; windows {:?}:\n{ctx}",
            self.rounds,
            self.holder_tid,
            self.round_windows_unix_nano
        );
    }

    /// Blocked behind one hold, never much longer.
    pub fn assert_longest_within_hold(&self, long: &[&Spanlet], ctx: &str) {
        let max = long.iter().map(|s| s.wait_ns).max().unwrap_or(0);
        let limit = self.hold_ns() * 3 / 2 + 20 * MS;
        assert!(
            max <= limit,
            "longest wait {:.1} ms exceeds {:.1} ms for a {} ms hold:\n{ctx}",
            max as f64 / MS as f64,
            limit as f64 / MS as f64,
            self.hold_ms
        );
    }
}

/// All spanlets come from `pid`: the PID filter let nothing else in.
pub fn assert_only_pid(spanlets: &[Spanlet], pid: u32) {
    let others: Vec<&Spanlet> = spanlets.iter().filter(|s| s.pid != pid).collect();
    assert!(
        others.is_empty(),
        "spanlets from processes other than the traced {pid}:\n{}",
        describe(others, 20)
    );
}

/// Printed by c_condvar.
#[derive(Clone, Debug, Deserialize)]
pub struct CondvarTruth {
    pub workload: String,
    pub pid: u32,
    pub main_tid: u32,
    pub cond_addr: String,
    pub cond_size: u64,
    pub mutex_addr: String,
    pub producer_tid: u32,
    pub consumer_tid: u32,
    pub period_ms: u64,
    pub items: usize,
    pub consumed: usize,
    pub produced_unix_nano: Vec<u64>,
}

impl CondvarTruth {
    /// Whether `addr` is inside the pthread_cond_t: glibc waits on a word in
    /// its middle (`__g_signals`), not on its first byte.
    pub fn in_cond(&self, addr: u64) -> bool {
        let base = parse_hex(&self.cond_addr);
        (base..base + self.cond_size).contains(&addr)
    }
}

/// Printed by c_futex_ops: one [`FutexOpTruth`] per scenario.
#[derive(Clone, Debug, Deserialize)]
pub struct FutexOpsTruth {
    pub workload: String,
    pub pid: u32,
    pub main_tid: u32,
    /// The second word of the futex_waitv scenario (spanlet names the first).
    pub waitv_second_addr: String,
    /// PTHREAD_PRIO_INHERIT mutex (FUTEX_LOCK_PI); other = the holder.
    pub pi: FutexOpTruth,
    /// futex_wait(2); other = the futex_wake(2) caller.
    pub fwait2: FutexOpTruth,
    /// futex_waitv(2) on two words, woken on the first; other = the waker.
    pub waitv: FutexOpTruth,
    /// FUTEX_WAIT with a timeout, never woken; other = 0.
    pub timeout: FutexOpTruth,
    /// FUTEX_WAIT interrupted by pthread_kill; other = the sender.
    pub signal: FutexOpTruth,
}

/// One scenario of c_futex_ops.
#[derive(Clone, Debug, Deserialize)]
pub struct FutexOpTruth {
    /// The futex word (for the PI mutex: the mutex, whose first field it is).
    pub addr: String,
    pub waiter_tid: u32,
    /// Holder, waker or signal sender; 0 when there is none.
    pub other_tid: u32,
    pub expected_ms: u64,
    /// Measured by the waiter around its blocking call (CLOCK_MONOTONIC).
    pub measured_ns: u64,
    /// "ok", or what went wrong, e.g. "futex_wait: ENOSYS".
    pub result: String,
}

impl FutexOpTruth {
    pub fn addr(&self) -> u64 {
        parse_hex(&self.addr)
    }
}

/// Fraction `part / whole`, 0 for an empty whole.
pub fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

// ---------------------------------------------------------------------------
// Thread-context workloads

/// A thread of `rust_thread_ctx`'s ground truth, with the context it
/// published (hex ids, `None` when it published none).
#[derive(Clone, Debug, Deserialize)]
pub struct CtxThread {
    pub tid: u32,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
}

/// `rust_thread_ctx`'s ground truth.
#[derive(Clone, Debug, Deserialize)]
pub struct CtxTruth {
    pub pid: u32,
    pub hold_ms: u64,
    pub holder: CtxThread,
    pub waiters: Vec<CtxThread>,
}

impl CtxTruth {
    /// Waiters that published a context.
    pub fn waiters_with_ctx(&self) -> usize {
        self.waiters.iter().filter(|w| w.trace_id.is_some()).count()
    }
}

/// `rust_thread_ctx 3 300` (tests pass `env!("CARGO_BIN_EXE_rust_thread_ctx")`)
/// recorded with `--min-wait 1ms` and `extra` spanlet flags, with its ground
/// truth. `None`: skipped (see the harness).
pub fn record_ctx_workload(program: &str, extra: &[&str]) -> Option<(Recording, CtxTruth)> {
    let mut args = vec!["--min-wait", "1ms"];
    args.extend_from_slice(extra);
    let rec = record_command(&args, program, &["3", "300"])?;
    let truth = rec.truth();
    Some((rec, truth))
}

/// A JSON string field of an exported spanlet, as text.
pub fn text(v: &Option<Value>) -> Option<String> {
    v.as_ref().and_then(|v| v.as_str().map(str::to_owned))
}

/// A child killed and reaped when the test ends, however it ends.
pub struct Reaped(pub Child);

impl Reaped {
    /// Waits for it to exit, at most `within` (panicking with `what`
    /// otherwise), and returns its status and its piped stderr.
    pub fn exit_within(&mut self, within: Duration, what: &str) -> (ExitStatus, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.0.try_wait().expect("poll child") {
                break status;
            }
            assert!(Instant::now() < deadline, "{what} within {within:?}");
            thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        self.0
            .stderr
            .take()
            .expect("stderr piped")
            .read_to_string(&mut stderr)
            .expect("read stderr");
        (status, stderr)
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `spanlet record --pid PID --min-wait 1ms [EXTRA...]` until the
/// process exits: `go` is called once the programs are attached (the
/// capture's first record is written then), to let the workload start.
/// Returns the exported spanlets.
pub fn record_pid_until_exit(pid: u32, extra: &[&str], go: impl FnOnce()) -> Vec<Spanlet> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let capture = dir.path().join("pid.spanlet");
    let mut agent = Reaped(
        Command::new(spanlet_bin())
            .args(["record", "--min-wait", "1ms", "--pid", &pid.to_string()])
            .arg("--output")
            .arg(&capture)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spanlet record starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&capture).map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < deadline, "spanlet record did not start");
        thread::sleep(Duration::from_millis(50));
    }
    go();
    let status = agent
        .0
        .wait()
        .expect("spanlet record ends with its process");
    let mut stderr = String::new();
    if let Some(mut pipe) = agent.0.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(status.success(), "spanlet record failed: {stderr}");
    export_jsonl(&capture)
}

/// A workload started with stdin and stdout piped that prints its threads'
/// ids as a JSON line, then waits for a line on stdin before it contends.
pub struct GatedWorkload {
    child: Reaped,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl GatedWorkload {
    /// Starts it and returns it with its first line, parsed.
    pub fn start<T: DeserializeOwned>(program: &str, args: &[&str]) -> (Self, T) {
        let mut cmd = Command::new(program);
        cmd.args(args);
        Self::from_command(cmd)
    }

    /// The same for a prepared command (its stdin and stdout are piped).
    pub fn from_command<T: DeserializeOwned>(mut cmd: Command) -> (Self, T) {
        let program = format!("{cmd:?}");
        let mut child = Reaped(
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {program}: {e}")),
        );
        let mut out = std::io::BufReader::new(child.0.stdout.take().expect("stdout piped"));
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).expect("the workload's first line");
        let first = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("bad first line {line:?} from {program}: {e}"));
        (Self { child, out }, first)
    }

    /// Lets it go, and reads the rest of its output (until it exits).
    pub fn go(&mut self) {
        use std::io::Write as _;
        let mut stdin = self.child.0.stdin.take().expect("stdin piped");
        stdin.write_all(b"go\n").expect("write to the workload");
        drop(stdin);
        let mut rest = String::new();
        let _ = self.out.read_to_string(&mut rest);
    }
}

/// Thread ids printed first by the gated workloads.
#[derive(Clone, Debug, Deserialize)]
pub struct GateTids {
    pub pid: u32,
    pub holder: u32,
    pub waiters: Vec<u32>,
}
