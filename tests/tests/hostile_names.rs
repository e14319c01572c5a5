//! Text a traced process chose (its thread names, its command line) must
//! not reach the reader's terminal raw: a thread named
//! `"\x1b]0;PWN\x07\x1b[2J"` would retitle and clear it.
//!
//! Needs root and eBPF (see the harness for skip/fail rules).

use spanlet_tests::{assert_success, kernel_test_lock, python, record_command, spanlet};

/// 14 bytes, within comm's 15: set the terminal title, clear it, and a
/// C1 CSI (U+009B, two bytes in UTF-8) that some terminals act on too.
const HOSTILE: &str = "\x1b]0;PWN\x07\x1b[2J\u{9b}";
/// How the text report must show it instead.
const SHOWN: &str = r"\x1b]0;PWN\x07\x1b[2J\u{9b}";
/// How the JSON report must carry it.
const JSON_SHOWN: &str = r"\u001b]0;PWN\u0007\u001b[2J\u009b";

/// A holder thread named [`HOSTILE`] keeps a lock while a waiter blocks on
/// it, a few rounds, so the holder shows up as the waiter's waker.
const WORKLOAD: &str = r#"
import sys, threading, time
lock = threading.Lock()
taken = threading.Event()
def name(n):
    with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as f:
        f.write(n)
def holder():
    name(sys.argv[1])
    for _ in range(5):
        with lock:
            taken.set()
            time.sleep(0.03)
        time.sleep(0.02)
def waiter():
    for _ in range(5):
        taken.wait()
        taken.clear()
        with lock:
            pass
time.sleep(0.1)
threads = [threading.Thread(target=f) for f in (holder, waiter)]
for t in threads: t.start()
for t in threads: t.join()
"#;

#[test]
fn report_escapes_thread_names_and_command_lines() {
    let _serial = kernel_test_lock();
    let Some(rec) = record_command(&["--min-wait", "1ms"], python(), &["-c", WORKLOAD, HOSTILE])
    else {
        return;
    };
    let out = spanlet(["report".as_ref(), rec.capture.as_os_str()], None);
    assert_success("spanlet report", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    // C0 (ESC, BEL...), DEL and C1 (U+009B is a one-character CSI).
    let raw: Vec<char> = text
        .chars()
        .filter(|&c| c.is_control() && c != '\n')
        .collect();
    assert!(
        raw.is_empty(),
        "the report printed control characters {raw:?}:\n{text:?}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("wakers:") && l.contains(SHOWN)),
        "the holder thread should be shown as a waker named {SHOWN}:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("command:") && l.contains(SHOWN)),
        "the command line should show the argument as {SHOWN}:\n{text}"
    );

    // JSON keeps the name exact, escaped the JSON way.
    let out = spanlet(
        [
            "report".as_ref(),
            rec.capture.as_os_str(),
            "--format".as_ref(),
            "json".as_ref(),
        ],
        None,
    );
    assert_success("spanlet report --format json", &out);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        !json.chars().any(|c| c.is_control() && c != '\n'),
        "the JSON report printed control characters:\n{json:?}"
    );
    serde_json::from_str::<serde_json::Value>(&json).expect("the JSON report parses");
    assert!(
        json.contains(JSON_SHOWN),
        "the JSON report should carry the name as {JSON_SHOWN}:\n{json}"
    );
}
