//! The machine around spanlet: a kernel without (readable) BTF, no tracefs
//! mounted, and a traced process that exits mid-capture.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use spanlet_tests::{
    Background, C_MUTEX, SPANLET_TIMEOUT, kernel_test_lock, run_with_timeout, spanlet_bin,
};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn missing_kernel_btf_is_one_clear_error() {
    if !is_root() {
        eprintln!("skipping: needs root (the capability check comes first)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("never.spanlet");
    let mut cmd = Command::new(spanlet_bin());
    cmd.env("SPANLET_KERNEL_BTF", "/nonexistent/vmlinux")
        .arg("record")
        .arg("--output")
        .arg(&output)
        .args(["--", "true"]);
    let out = run_with_timeout(cmd, SPANLET_TIMEOUT);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "record without BTF should fail:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "panicked:\n{stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one line expected:\n{stderr}"
    );
    assert!(
        stderr.contains("no BTF") && stderr.contains("/nonexistent/vmlinux"),
        "the error should name the missing BTF file:\n{stderr}"
    );
    assert!(
        !output.exists(),
        "a failed record left {} behind",
        output.display()
    );

    // A failed record must not clobber an earlier capture at that path.
    let earlier = b"an earlier capture";
    std::fs::write(&output, earlier).expect("write earlier capture");
    let mut again = Command::new(spanlet_bin());
    again
        .env("SPANLET_KERNEL_BTF", "/nonexistent/vmlinux")
        .arg("record")
        .arg("--output")
        .arg(&output)
        .args(["--", "true"]);
    let out = run_with_timeout(again, SPANLET_TIMEOUT);
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read(&output).expect("read earlier capture"),
        earlier,
        "a failed record changed the existing capture"
    );
}

/// tp_btf programs attach by BTF id and uprobes through the perf PMU, so
/// neither needs tracefs: record works in a mount namespace without it.
#[test]
fn records_without_tracefs_mounted() {
    let _serial = kernel_test_lock();
    if !is_root() || !Path::new("/usr/bin/unshare").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this as root with unshare"
        );
        eprintln!("skipping: needs root and unshare");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let capture = dir.path().join("no-tracefs.spanlet");
    let script = format!(
        "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null; \
         if grep -q tracefs /proc/mounts; then echo 'tracefs still mounted' >&2; exit 99; fi; \
         exec '{}' record --mutex-uprobes --min-wait 1ms --output '{}' -- '{C_MUTEX}'",
        spanlet_bin().display(),
        capture.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let out = run_with_timeout(cmd, SPANLET_TIMEOUT);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "record without tracefs failed ({}):\n{stderr}",
        out.status
    );

    let mut export = Command::new(spanlet_bin());
    export.arg("export").arg(&capture);
    let lines = text(&run_with_timeout(export, SPANLET_TIMEOUT).stdout);
    let kinds: Vec<String> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["kind"].as_str().map(str::to_owned))
        .collect();
    let waits = kinds.iter().filter(|k| *k == "mutex_wait").count();
    let holds = kinds.iter().filter(|k| *k == "mutex_hold").count();
    assert!(
        waits >= 10,
        "expected mutex waits without tracefs, got {kinds:?}"
    );
    assert!(
        holds >= 8,
        "expected uprobe mutex holds without tracefs, got {kinds:?}"
    );
}

/// `--pid` with a long duration ends as soon as the process exits, and the
/// capture says why.
#[test]
fn capture_ends_cleanly_when_the_traced_process_exits() {
    let _serial = kernel_test_lock();
    if !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI must run this as root");
        eprintln!("skipping: needs root");
        return;
    }
    let workload = Background::start(C_MUTEX, &["20", "30"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let capture = dir.path().join("exit.spanlet");
    let started = Instant::now();
    let mut cmd = Command::new(spanlet_bin());
    cmd.args(["record", "--min-wait", "1ms", "--duration", "60s", "--pid"])
        .arg(workload.pid().to_string())
        .arg("--output")
        .arg(&capture);
    let out = run_with_timeout(cmd, SPANLET_TIMEOUT);
    let elapsed = started.elapsed();
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "record failed ({}):\n{stderr}",
        out.status
    );
    assert!(
        elapsed < Duration::from_secs(15),
        "record should stop when the process exits, ran {elapsed:?}"
    );
    assert!(stderr.contains("all traced processes exited"), "{stderr}");
    let _ = workload.wait(SPANLET_TIMEOUT);

    let mut report = Command::new(spanlet_bin());
    report.args(["report", "--format", "json"]).arg(&capture);
    let out = run_with_timeout(report, SPANLET_TIMEOUT);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report json");
    assert_eq!(
        json["end"].as_str(),
        Some("all traced processes exited"),
        "{json}"
    );
    assert!(json["total_spanlets"].as_u64().unwrap_or(0) > 0, "{json}");
}
