//! What a user sees when they get spanlet's command line or input wrong:
//! a non-zero exit and a clear, short message, never a panic.
//!
//! Only the truncated-capture test needs eBPF (to make a real capture); the
//! missing-capability test needs root (to drop to an unprivileged user).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use spanlet_tests::{
    C_MUTEX, SPANLET_TIMEOUT, kernel_test_lock, record_command, run_with_timeout, spanlet,
    spanlet_bin,
};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Non-zero exit, something on stderr, and no Rust panic.
fn assert_clean_failure(what: &str, out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "{what} should fail; stdout:\n{}\nstderr:\n{stderr}",
        text(&out.stdout)
    );
    assert!(
        !stderr.trim().is_empty(),
        "{what} failed ({}) without saying why",
        out.status
    );
    assert!(
        !stderr.contains("panicked"),
        "{what} panicked instead of reporting an error:\n{stderr}"
    );
    stderr
}

#[test]
fn record_of_a_missing_pid_fails_with_one_line() {
    // In a scratch directory, in case a default output file is created.
    let dir = tempfile::tempdir().expect("temporary directory");
    // Above any pid_max (at most 2^22), so no such process can exist.
    let pid = "999999999";
    let out = spanlet(
        ["record", "--pid", pid, "--duration", "1s"],
        Some(dir.path()),
    );
    let stderr = assert_clean_failure("spanlet record --pid 999999999", &out);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error, got:\n{stderr}");
    assert!(
        lines[0].contains(pid),
        "the error should name the pid {pid}: {}",
        lines[0]
    );
}

#[test]
fn report_of_a_missing_file_fails_clearly() {
    let path = "/nonexistent/spanlet-capture.spanlet";
    let out = spanlet(["report", path], None);
    let stderr = assert_clean_failure("spanlet report <missing file>", &out);
    assert!(
        stderr.contains(path),
        "the error should name the file {path}:\n{stderr}"
    );
    let lower = stderr.to_lowercase();
    assert!(
        ["no such file", "not found", "does not exist"]
            .iter()
            .any(|s| lower.contains(s)),
        "the error should say the file does not exist:\n{stderr}"
    );
}

#[test]
fn an_error_line_shows_control_characters_escaped() {
    let path = "/nonexistent/\x1b]0;PWN\x07\x1b[2J.spanlet";
    let out = spanlet(["report", path], None);
    let stderr = assert_clean_failure("spanlet report <name with escapes>", &out);
    assert!(
        !stderr.chars().any(|c| c.is_control() && c != '\n'),
        "the error printed control characters: {stderr:?}"
    );
    assert!(
        stderr.contains(r"/nonexistent/\x1b]0;PWN\x07\x1b[2J.spanlet"),
        "the error should name the file, escaped: {stderr}"
    );
}

#[test]
fn report_of_garbage_says_not_a_capture() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("garbage.spanlet");
    // Deterministic noise (xorshift), so a failure reproduces.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    fs::write(&path, bytes).expect("write garbage file");
    let out = spanlet(["report".as_ref(), path.as_os_str()], None);
    let stderr = assert_clean_failure("spanlet report <garbage>", &out);
    assert!(
        stderr.to_lowercase().contains("not a spanlet capture"),
        "the error should say the file is not a spanlet capture:\n{stderr}"
    );
}

#[test]
fn report_of_a_truncated_capture_succeeds_and_says_so() {
    let _serial = kernel_test_lock();
    let no_args: &[&str] = &[];
    let Some(rec) = record_command(&["--min-wait", "1ms"], C_MUTEX, no_args) else {
        return;
    };
    let full = fs::read(&rec.capture).expect("read capture");
    // Cut inside the stream of records, as a crash or a full disk would.
    let cut = full.len() * 3 / 5;
    assert!(cut > 0, "capture is empty");
    let truncated = rec.dir.path().join("truncated.spanlet");
    fs::write(&truncated, &full[..cut]).expect("write truncated copy");

    let out = spanlet(["report".as_ref(), truncated.as_os_str()], None);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "report of a truncated capture ({cut} of {} bytes) should still succeed ({}):\n\
         stderr:\n{stderr}\nstdout:\n{stdout}",
        full.len(),
        out.status
    );
    assert!(
        !stderr.contains("panicked"),
        "report panicked on a truncated capture:\n{stderr}"
    );
    assert!(
        format!("{stdout}\n{stderr}")
            .to_lowercase()
            .contains("truncated"),
        "report should say the capture is truncated:\nstderr:\n{stderr}\nstdout:\n{stdout}"
    );
}

/// Skips (locally) or fails (in CI, which must run every test) a test that
/// cannot run here.
fn skip_unless_ci(reason: &str) {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    assert!(!ci, "test cannot run, and CI is set: {reason}");
    println!("skipping: {reason}");
}

#[test]
fn record_without_capabilities_names_cap_bpf() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return skip_unless_ci(&format!(
            "not running as root (euid {euid}); setpriv needs root to drop to nobody"
        ));
    }
    let setpriv = Path::new("/usr/bin/setpriv");
    if !setpriv.is_file() {
        return skip_unless_ci("no /usr/bin/setpriv (util-linux)");
    }
    // spanlet checks that it can write the output before it checks its
    // capabilities, so nobody must be able to: a world-writable scratch
    // directory. spanlet is copied there so nobody can surely run it,
    // wherever the build put it.
    let dir = tempfile::tempdir().expect("temporary directory");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777))
        .expect("make the scratch directory world-writable");
    let bin = dir.path().join("spanlet");
    fs::copy(spanlet_bin(), &bin).expect("copy spanlet to the scratch directory");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod spanlet");
    let output = dir.path().join("capture.spanlet");

    let mut cmd = Command::new(setpriv);
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ])
    .arg(&bin)
    .args(["record", "--pid", &std::process::id().to_string()])
    .args(["--duration", "1s", "--output"])
    .arg(&output)
    .current_dir(dir.path());
    let out = run_with_timeout(cmd, SPANLET_TIMEOUT);
    let what = "spanlet record as nobody without capabilities";
    let stderr = assert_clean_failure(what, &out);
    assert!(
        !stderr.contains("setpriv:"),
        "setpriv itself failed, spanlet did not run:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected a one-line error, got:\n{stderr}"
    );
    assert!(
        lines[0].contains("missing capability CAP_BPF"),
        "{what}: the error should name the missing CAP_BPF: {}",
        lines[0]
    );
}

/// A collector stand-in that counts who connects: a bad setting must be
/// reported before anything is sent.
struct Collector(std::net::TcpListener);

impl Collector {
    fn new() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("make the listener non-blocking");
        Self(listener)
    }

    fn url(&self) -> String {
        let port = self.0.local_addr().expect("listener address").port();
        format!("http://127.0.0.1:{port}")
    }

    /// Whether anyone connected (the connection is already queued when the
    /// spanlet process has exited).
    fn contacted(&self) -> bool {
        self.0.accept().is_ok()
    }
}

/// `spanlet run` with only `env` as OTEL_* variables, on a PID that cannot
/// exist (above any pid_max), so that nothing can be traced even when a
/// setting is wrongly accepted.
fn run_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(spanlet_bin());
    cmd.args(["run", "--pid", "999999999", "--metrics-address", "off"])
        .args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    run_with_timeout(cmd, SPANLET_TIMEOUT)
}

#[test]
fn run_reports_a_bad_pid_before_any_metrics_export() {
    let collector = Collector::new();
    let url = collector.url();
    let out = run_with(&["--otlp-endpoint", &url], &[]);
    let stderr = assert_clean_failure("spanlet run --pid 999999999", &out);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error, got:\n{stderr}");
    assert!(
        !collector.contacted(),
        "the collector was contacted:\n{stderr}"
    );
}

/// One bad OTLP setting and what its error must (and must not) say.
struct BadSetting<'a> {
    args: Vec<&'a str>,
    env: Vec<(&'a str, &'a str)>,
    /// The flag or variable the error must name.
    names: &'a str,
    /// Text the error must not show; empty: none.
    secret: &'a str,
}

#[test]
fn bad_otlp_settings_are_named_before_anything_starts() {
    let collector = Collector::new();
    let url = collector.url();
    let port = url.rsplit(':').next().unwrap_or_default().to_owned();
    let with_credentials = format!("http://alice:hunter2@127.0.0.1:{port}");
    let cases = [
        BadSetting {
            args: vec!["--otlp-endpoint", "http://127.0.0.1:99999"],
            env: vec![],
            names: "--otlp-endpoint",
            secret: "",
        },
        BadSetting {
            args: vec![],
            env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT", &with_credentials)],
            names: "OTEL_EXPORTER_OTLP_ENDPOINT",
            secret: "hunter2",
        },
        BadSetting {
            args: vec![
                "--otlp-endpoint",
                &url,
                "--otlp-header",
                "Authorization=Bearer s3cret\r\nX: 1",
            ],
            env: vec![],
            names: "--otlp-header",
            secret: "s3cret",
        },
        BadSetting {
            args: vec!["--otlp-endpoint", &url, "--otlp-timeout", "0s"],
            env: vec![],
            names: "--otlp-timeout",
            secret: "",
        },
        BadSetting {
            args: vec!["--otlp-endpoint", &url],
            env: vec![("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret%zz")],
            names: "OTEL_EXPORTER_OTLP_HEADERS",
            secret: "s3cret",
        },
        BadSetting {
            args: vec!["--otlp-endpoint", &url],
            env: vec![("OTEL_RESOURCE_ATTRIBUTES", "=,x")],
            names: "OTEL_RESOURCE_ATTRIBUTES",
            secret: "",
        },
    ];
    for BadSetting {
        args,
        env,
        names,
        secret,
    } in cases
    {
        let what = format!("spanlet run {args:?} with {env:?}");
        let out = run_with(&args, &env);
        let stderr = assert_clean_failure(&what, &out);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{what}: expected a one-line error, got:\n{stderr}"
        );
        assert!(
            lines[0].contains(names),
            "{what}: the error should name {names}: {}",
            lines[0]
        );
        assert!(
            !lines[0].contains("999999999"),
            "{what}: the setting, not the PID, is the first error: {}",
            lines[0]
        );
        if !secret.is_empty() {
            assert!(
                !stderr.contains(secret),
                "{what}: the secret was shown: {stderr}"
            );
        }
        if names == "OTEL_RESOURCE_ATTRIBUTES" {
            assert!(
                !lines[0].to_lowercase().contains("header"),
                "{what}: resource attributes are not a header: {}",
                lines[0]
            );
        }
        assert!(
            !collector.contacted(),
            "{what}: the collector was contacted"
        );
    }
}
