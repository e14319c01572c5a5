//! What `report`, `export` and `replay` make of damaged or hostile capture
//! files, and what `record -o` and `export -o` do with a link planted at
//! their output path.
//!
//! The captures are written with spanlet's own capture writer, so only the
//! `record` test needs eBPF; the planted-link tests need root (to plant the
//! link as another user).

use std::{
    fs,
    io::Read as _,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use spanlet::{
    capture::CaptureWriter,
    model::{
        CaptureEnd, CaptureMeta, CaptureStats, ProcessInfo, Spanlet, SpanletKind, ThreadInfo,
        WaitOutcome,
    },
};
use spanlet_tests::{
    SPANLET_TIMEOUT, kernel_ready, kernel_test_lock, run_with_timeout, spanlet, spanlet_bin,
};

const PID: u32 = 4242;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn meta() -> CaptureMeta {
    CaptureMeta {
        format_version: 0,
        agent_version: "test".into(),
        kernel_release: "6.0.0-test".into(),
        hostname: "testhost".into(),
        start_unix_nano: 1_700_000_000_000_000_000,
        command: Some(vec!["./app".into()]),
        pids: vec![PID],
        min_wait_ns: 10_000,
        spanlet_fields: Vec::new(),
    }
}

/// The `i`th spanlet: waits of one of three threads on one of three locks.
fn spanlet_no(i: u64) -> Spanlet {
    let tid = PID + 1 + (i % 3) as u32;
    Spanlet {
        kind: SpanletKind::MutexWait,
        pid: PID,
        tid,
        comm: format!("worker-{}", i % 3).into(),
        addr: 0x1000 + 0x40 * (i % 3),
        start_unix_nano: 1_700_000_000_000_000_000 + i * 1_000_000,
        wait_ns: 100_000 + i,
        woken_after_ns: Some(90_000),
        outcome: WaitOutcome::Woken,
        holder_tid: Some(PID + 1 + ((i + 1) % 3) as u32),
        waker_pid: Some(PID),
        waker_tid: Some(PID + 1 + ((i + 1) % 3) as u32),
        waker_comm: Some("holder".into()),
        syscall: 202,
        op: 0x80,
        arg: 2,
        flags: 0,
        context: None,
        holder_context: None,
        waker_context: None,
        socket: None,
    }
}

/// Writes a capture of `spanlets` spanlets, with a stats record every 100
/// and at the end, as `record` does.
fn write_capture(path: &Path, spanlets: u64) {
    let mut w = CaptureWriter::create(path, &meta()).expect("create capture");
    w.write_process(&ProcessInfo {
        pid: PID,
        comm: "app".into(),
        cmdline: vec!["./app".into()],
        ..ProcessInfo::default()
    })
    .expect("process");
    for t in 0..3 {
        w.write_thread(&ThreadInfo {
            pid: PID,
            tid: PID + 1 + t,
            name: format!("worker-{t}"),
            ns_tid: None,
        })
        .expect("thread");
    }
    let mut stats = CaptureStats::default();
    for i in 0..spanlets {
        w.write_spanlet(&spanlet_no(i)).expect("spanlet");
        stats.spanlets += 1;
        stats.waits_seen += 1;
        if stats.spanlets % 100 == 0 {
            w.write_stats(&stats).expect("stats");
        }
    }
    w.write_stats(&stats).expect("stats");
    w.finish(&CaptureEnd {
        end_unix_nano: 1_700_000_010_000_000_000,
        reason: "duration elapsed".into(),
    })
    .expect("finish");
}

/// (offset, total length, type) of each record after the file header.
fn records(bytes: &[u8]) -> Vec<(usize, usize, u8)> {
    let mut out = Vec::new();
    let mut at = 12;
    while at + 9 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        out.push((at, 9 + len, bytes[at + 8]));
        at += 9 + len;
    }
    out
}

const SPANLET_RECORD: u8 = 4;

fn report_json(path: &Path) -> (Value, String) {
    let out = spanlet(
        [
            "report".as_ref(),
            path.as_os_str(),
            "--format".as_ref(),
            "json".as_ref(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "report failed ({}): {}",
        out.status,
        text(&out.stderr)
    );
    let json = serde_json::from_slice(&out.stdout).expect("report JSON");
    (json, text(&out.stderr))
}

fn export_lines(path: &Path) -> (usize, String) {
    let out = spanlet(["export".as_ref(), path.as_os_str()], None);
    assert!(
        out.status.success(),
        "export failed ({}): {}",
        out.status,
        text(&out.stderr)
    );
    (text(&out.stdout).lines().count(), text(&out.stderr))
}

#[test]
fn a_flipped_bit_mid_capture_costs_only_the_record_it_hits() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("flipped.spanlet");
    write_capture(&path, 1200);
    let mut bytes = fs::read(&path).expect("read capture");
    let spanlets: Vec<_> = records(&bytes)
        .into_iter()
        .filter(|r| r.2 == SPANLET_RECORD)
        .collect();
    assert_eq!(spanlets.len(), 1200);
    // One bit in the payload of the 600th spanlet, one in the length field
    // of the 900th.
    let (at, len, _) = spanlets[600];
    bytes[at + 9 + 20] ^= 0x10;
    let (at900, len900, _) = spanlets[900];
    bytes[at900 + 1] ^= 0x01;
    fs::write(&path, &bytes).expect("write damaged copy");

    let (json, stderr) = report_json(&path);
    assert_eq!(
        json["total_spanlets"], 1198,
        "only the two damaged records are lost"
    );
    let integrity = &json["integrity"];
    assert_eq!(integrity["damaged_stretches"], 2, "{integrity}");
    assert_eq!(integrity["damaged_bytes"], len + len900, "{integrity}");
    assert_eq!(integrity["damaged_offsets"][0], at, "{integrity}");
    assert_eq!(integrity["stats_spanlets"], 1200, "{integrity}");
    assert_eq!(integrity["spanlets_read_before_stats"], 1198, "{integrity}");
    assert_eq!(json["truncated"], false);
    assert!(
        stderr.contains("2 damaged stretch(es)") && stderr.contains("2 spanlets are missing"),
        "report should warn of the damage on stderr:\n{stderr}"
    );

    let out = spanlet(["report".as_ref(), path.as_os_str()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(
        report.contains("WARNING: the capture is damaged: 2 damaged stretch(es)")
            && report.contains(&format!(
                "({} bytes, the first at byte offset {at})",
                len + len900
            ))
            && report.contains("WARNING: 2 spanlets are missing"),
        "the text report should say what was skipped:\n{report}"
    );
    assert!(!report.contains("crashed"), "{report}");

    let (lines, stderr) = export_lines(&path);
    assert_eq!(lines, 1198);
    assert!(stderr.contains("2 spanlets are missing"), "{stderr}");
}

#[test]
fn a_capture_missing_records_says_how_many() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("cut.spanlet");
    write_capture(&path, 1200);
    let bytes = fs::read(&path).expect("read capture");
    // Drop every other spanlet record, framing intact: nothing is damaged,
    // but the stats records still count 1200.
    let mut kept = bytes[..12].to_vec();
    let mut n = 0;
    for (at, len, ty) in records(&bytes) {
        if ty == SPANLET_RECORD {
            n += 1;
            if n % 2 == 0 {
                continue;
            }
        }
        kept.extend_from_slice(&bytes[at..at + len]);
    }
    fs::write(&path, &kept).expect("write");

    let (json, stderr) = report_json(&path);
    assert_eq!(json["total_spanlets"], 600);
    assert_eq!(json["integrity"]["damaged_stretches"], 0);
    assert_eq!(json["integrity"]["stats_spanlets"], 1200);
    assert_eq!(json["integrity"]["spanlets_read_before_stats"], 600);
    assert!(
        stderr.contains("600 spanlets are missing: the capture's stats record counts 1200"),
        "{stderr}"
    );
    let warnings = json["warnings"].as_array().expect("warnings");
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.contains("600 spanlets are missing"))),
        "{warnings:?}"
    );
}

#[test]
fn unknown_records_are_counted_in_text_and_json() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("future.spanlet");
    write_capture(&path, 10);
    let bytes = fs::read(&path).expect("read capture");
    let (at, _, _) = records(&bytes)[3];
    // Two intact records of a type no writer uses yet.
    let payload = b"from a newer spanlet";
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[200]);
    crc.update(payload);
    let mut record = (payload.len() as u32).to_le_bytes().to_vec();
    record.extend_from_slice(&crc.finalize().to_le_bytes());
    record.push(200);
    record.extend_from_slice(payload);
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(&record);
    out.extend_from_slice(&record);
    out.extend_from_slice(&bytes[at..]);
    fs::write(&path, &out).expect("write");

    let (json, _) = report_json(&path);
    assert_eq!(json["integrity"]["unknown_records"], 2);
    assert_eq!(json["total_spanlets"], 10);
    let report = spanlet(["report".as_ref(), path.as_os_str()], None);
    assert!(
        text(&report.stdout).contains("2 records of unknown types"),
        "{}",
        text(&report.stdout)
    );
}

/// Runs spanlet and returns its output and peak resident memory in KiB
/// (`wait4`'s rusage of that one child).
// The child is reaped by `wait4` (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_measuring_memory(args: &[&std::ffi::OsStr]) -> (Output, u64) {
    let mut child = Command::new(spanlet_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start spanlet");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_reader = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let pid = i32::try_from(child.id()).expect("pid");
    let start = Instant::now();
    let (status, maxrss) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 writes into both.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child only; pointers are to locals.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4 failed");
        if r == pid {
            use std::os::unix::process::ExitStatusExt as _;
            break (ExitStatus::from_raw(status), usage.ru_maxrss as u64);
        }
        if start.elapsed() > SPANLET_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("spanlet {args:?} did not finish within {SPANLET_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let out = Output {
        status,
        stdout: out_reader.join().expect("stdout"),
        stderr: err_reader.join().expect("stderr"),
    };
    (out, maxrss)
}

/// A user-visible bound: reading a capture must not need memory in
/// proportion to the file's size.
const MAX_RSS_KIB: u64 = 200 * 1024;

#[test]
fn a_sparse_10_gib_capture_is_read_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("sparse.spanlet");
    write_capture(&path, 20);
    let real = fs::metadata(&path).expect("stat").len();
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open capture");
    file.set_len(10 << 30).expect("make it sparse to 10 GiB");
    drop(file);
    let tail = (10u64 << 30) - real;

    // A port nothing listens on: replay must read the whole file for its
    // names, then fail to send, cleanly.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);

    let p = path.as_os_str();
    for args in [
        vec!["report".as_ref(), p],
        vec!["export".as_ref(), p],
        vec![
            "replay".as_ref(),
            p,
            "--otlp-endpoint".as_ref(),
            endpoint.as_ref(),
            "--otlp-timeout".as_ref(),
            "1s".as_ref(),
        ],
    ] {
        let (out, rss) = run_measuring_memory(&args);
        let stderr = text(&out.stderr);
        let what = format!("spanlet {args:?}");
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(out.status.signal(), None, "{what} was killed:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{what}:\n{stderr}");
        assert!(
            rss < MAX_RSS_KIB,
            "{what} used {rss} KiB at its peak, more than {MAX_RSS_KIB}"
        );
        assert!(
            stderr.contains(&format!("ends in {tail} damaged bytes")),
            "{what} should say the capture ends in {tail} damaged bytes:\n{stderr}"
        );
        if args[0] == "replay" {
            assert_eq!(out.status.code(), Some(1), "{what}:\n{stderr}");
            let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
            assert_eq!(errors.len(), 1, "{what}: one error line:\n{stderr}");
        } else {
            assert!(out.status.success(), "{what}:\n{stderr}");
        }
        if args[0] == "export" {
            assert_eq!(text(&out.stdout).lines().count(), 20, "{what}");
        }
    }
}

#[test]
fn export_and_replay_stream_a_large_capture_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("large.spanlet");
    // About 130 MB on disk; held in memory as spanlets it would take
    // several hundred MB.
    let n = 1_500_000;
    write_capture(&path, n);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let p = path.as_os_str();
    for args in [
        vec!["export".as_ref(), p, "-o".as_ref(), "/dev/null".as_ref()],
        vec![
            "replay".as_ref(),
            p,
            "--otlp-endpoint".as_ref(),
            endpoint.as_ref(),
            "--otlp-timeout".as_ref(),
            "1s".as_ref(),
        ],
    ] {
        let (out, rss) = run_measuring_memory(&args);
        let stderr = text(&out.stderr);
        let what = format!("spanlet {args:?}");
        assert!(!stderr.contains("panicked"), "{what}:\n{stderr}");
        assert!(
            rss < MAX_RSS_KIB,
            "{what} used {rss} KiB at its peak, more than {MAX_RSS_KIB}"
        );
        if args[0] == "export" {
            assert!(out.status.success(), "{what}:\n{stderr}");
        } else {
            assert!(
                stderr.contains(&format!("(0 of {n} spanlets delivered)")),
                "{what} should fail to send, cleanly:\n{stderr}"
            );
        }
    }
}

#[test]
fn report_to_a_full_disk_is_a_one_line_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("c.spanlet");
    write_capture(&path, 50);
    for format in ["text", "json"] {
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        let out = Command::new(spanlet_bin())
            .args(["report".as_ref(), path.as_os_str()])
            .args(["--format", format])
            .stdout(full)
            .output()
            .expect("run spanlet report");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "report > /dev/full:\n{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line:\n{stderr}");
        assert!(
            lines[0].starts_with("spanlet: error:") && lines[0].contains("No space left"),
            "{stderr}"
        );
    }
}

/// A directory the unprivileged user `nobody` owns (like a home directory
/// root records into), with a root-owned file elsewhere that `nobody` points
/// links at.
struct Planted {
    top: tempfile::TempDir,
    dir: PathBuf,
    target: PathBuf,
}

const TARGET_TEXT: &str = "precious root-owned file\n";

/// Runs a shell command as `nobody`.
fn as_nobody(script: &str, dir: &Path) {
    let out = Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["/bin/sh", "-c", script])
        .current_dir(dir)
        .output()
        .expect("run setpriv");
    assert!(
        out.status.success(),
        "as nobody: {script}: {}",
        text(&out.stderr)
    );
}

/// `None` (after printing why) when not root; fails in CI instead.
fn plant() -> Option<Planted> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/usr/bin/setpriv").is_file() {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        assert!(!ci, "needs root and setpriv, and CI is set");
        println!("skipping: needs root and /usr/bin/setpriv");
        return None;
    }
    let top = tempfile::tempdir().expect("temporary directory");
    fs::set_permissions(top.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let target = top.path().join("target");
    fs::write(&target, TARGET_TEXT).expect("write target");
    let dir = top.path().join("nobodys");
    fs::create_dir(&dir).expect("mkdir");
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("chown to nobody");
    Some(Planted { top, dir, target })
}

impl Planted {
    fn plant_link(&self, name: &str) -> PathBuf {
        as_nobody(
            &format!("ln -s {} {name}", self.target.display()),
            &self.dir,
        );
        self.dir.join(name)
    }

    fn assert_target_untouched(&self, what: &str) {
        assert!(
            fs::read(&self.target).expect("read target") == TARGET_TEXT.as_bytes(),
            "{what} wrote through the planted link"
        );
    }

    /// `spanlet ARGS` failed with one line naming the link, and left the
    /// link and its target as they were.
    fn assert_refused(&self, out: &Output, link: &Path, what: &str) {
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: expected one line:\n{stderr}");
        assert!(
            lines[0].contains(&link.display().to_string()) && lines[0].contains("symbolic link"),
            "{what}: the error should name the link: {stderr}"
        );
        self.assert_target_untouched(what);
        let meta = fs::symlink_metadata(link).expect("stat link");
        assert!(meta.file_type().is_symlink(), "{what} removed the link");
    }
}

/// A regular file of mode 0600 owned by root.
fn assert_private(path: &Path, what: &str) {
    let meta = fs::symlink_metadata(path).expect("stat output");
    assert!(meta.file_type().is_file(), "{what}: not a regular file");
    assert_eq!(
        meta.mode() & 0o7777,
        0o600,
        "{what}: mode {:o}",
        meta.mode()
    );
    assert_eq!(meta.uid(), 0, "{what}: not owned by root");
}

/// Runs spanlet with umask 000, as a careless shell would: the mode must not
/// depend on it.
fn spanlet_with_umask_0(args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(spanlet_bin())
        .args(args);
    run_with_timeout(cmd, SPANLET_TIMEOUT)
}

#[test]
fn export_does_not_write_through_what_another_user_planted() {
    let Some(planted) = plant() else {
        return;
    };
    let capture = planted.top.path().join("c.spanlet");
    write_capture(&capture, 30);
    let export = |output: &Path| {
        spanlet_with_umask_0(&[
            "export".as_ref(),
            capture.as_os_str(),
            "-o".as_ref(),
            output.as_os_str(),
        ])
    };

    let link = planted.plant_link("out.jsonl");
    planted.assert_refused(&export(&link), &link, "export -o <planted link>");

    // A world-writable file of nobody's, with a second name nobody keeps:
    // it is replaced, not written into.
    as_nobody(
        "echo nobody > mine.jsonl && chmod 666 mine.jsonl && ln mine.jsonl kept",
        &planted.dir,
    );
    let output = planted.dir.join("mine.jsonl");
    let out = export(&output);
    assert!(out.status.success(), "export: {}", text(&out.stderr));
    assert_private(&output, "export -o <nobody's file>");
    assert_eq!(
        fs::read_to_string(planted.dir.join("kept")).expect("read"),
        "nobody\n",
        "export wrote into nobody's file"
    );
    let lines = fs::read_to_string(&output).expect("read export");
    assert_eq!(lines.lines().count(), 30);
    assert_eq!(
        fs::read_dir(&planted.dir).expect("ls").count(),
        3,
        "export left a temporary file behind"
    );

    // Devices are written in place: /dev/null stays /dev/null.
    let out = export(Path::new("/dev/null"));
    assert!(
        out.status.success(),
        "export -o /dev/null: {}",
        text(&out.stderr)
    );
    use std::os::unix::fs::FileTypeExt as _;
    let null = fs::symlink_metadata("/dev/null").expect("stat /dev/null");
    assert!(null.file_type().is_char_device(), "/dev/null was replaced");
}

#[test]
fn record_does_not_write_through_a_planted_link() {
    let _serial = kernel_test_lock();
    if !kernel_ready() {
        return;
    }
    let Some(planted) = plant() else {
        return;
    };
    let record = |output: &Path| {
        spanlet_with_umask_0(&[
            "record".as_ref(),
            "-o".as_ref(),
            output.as_os_str(),
            "--".as_ref(),
            "true".as_ref(),
        ])
    };
    let link = planted.plant_link("spanlet.data");
    planted.assert_refused(&record(&link), &link, "record -o <planted link>");

    let output = planted.dir.join("run.data");
    let out = record(&output);
    assert!(out.status.success(), "record: {}", text(&out.stderr));
    assert_private(&output, "record -o");
    let (json, _) = report_json(&output);
    assert_eq!(json["end"], "command exited (exit code 0)", "{json}");
}
