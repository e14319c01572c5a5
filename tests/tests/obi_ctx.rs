//! The second context source: OpenTelemetry eBPF Instrumentation (OBI)
//! pins a `traces_ctx_v1` map (key pid_tgid, value trace id + span id) for
//! the threads it instruments. For threads without OTEP 4947 context,
//! spanlet reads that map in the kernel at the moment of the wait and of
//! the wake-up. Here a test stands in for OBI: it pins a map of the same
//! shape with bpftool on a private bpffs and fills it for a workload's
//! threads before they wait.
//!
//! Needs root and eBPF (see the harness for skip/fail rules).

use std::path::{Path, PathBuf};
use std::process::Command;

use spanlet_tests::{
    GateTids, GatedWorkload, bpftool, kernel_ready, kernel_test_lock, record_pid_until_exit, text,
};

/// A bpffs mounted on a temporary directory, unmounted on drop.
struct Bpffs {
    dir: tempfile::TempDir,
}

impl Bpffs {
    fn mount() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let out = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(dir.path())
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "cannot mount a bpffs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn hex_bytes(bytes: &[u8]) -> Vec<String> {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex(bytes: &[u8]) -> String {
    hex_bytes(bytes).concat()
}

#[test]
fn threads_without_otep_context_take_it_from_obi_s_pinned_map() {
    let _serial = kernel_test_lock();
    if !kernel_ready() {
        return;
    }
    let bpffs = Bpffs::mount();
    let map: PathBuf = bpffs.path().join("traces_ctx_v1");
    let map_arg = map.to_str().unwrap();
    bpftool(&[
        "map",
        "create",
        map_arg,
        "type",
        "hash",
        "key",
        "8",
        "value",
        "24",
        "entries",
        "64",
        "name",
        "traces_ctx_v1",
    ]);

    let (mut workload, tids): (GatedWorkload, GateTids) = GatedWorkload::start(
        env!("CARGO_BIN_EXE_rust_thread_ctx"),
        &["2", "300", "--obi"],
    );

    // OBI's entries: the holder in trace B, the first waiter in trace A; the
    // second waiter has none.
    let entry = |tid: u32, trace: u8, span: u8| {
        let key = ((u64::from(tids.pid) << 32) | u64::from(tid)).to_le_bytes();
        let mut value = vec![trace; 16];
        value.extend([span; 8]);
        let mut args = vec!["map", "update", "pinned", map_arg, "key", "hex"];
        let (k, v) = (hex_bytes(&key), hex_bytes(&value));
        args.extend(k.iter().map(String::as_str));
        args.extend(["value", "hex"]);
        args.extend(v.iter().map(String::as_str));
        bpftool(&args);
        (hex(&[trace; 16]), hex(&[span; 8]))
    };
    let holder_ctx = entry(tids.holder, 0xbe, 0xb5);
    let waiter_ctx = entry(tids.waiters[0], 0xae, 0xa5);

    let spanlets = record_pid_until_exit(tids.pid, &["--obi-ctx-map", map_arg], || workload.go());
    let long_wait = |tid: u32| {
        let waits: Vec<_> = spanlets
            .iter()
            .filter(|s| s.tid == tid && s.wait_ns > 150_000_000)
            .collect();
        assert_eq!(
            waits.len(),
            1,
            "one long wait of thread {tid}: {spanlets:#?}"
        );
        waits[0].clone()
    };
    let first = long_wait(tids.waiters[0]);
    assert_eq!(first.holder_tid, Some(tids.holder), "{}", first.brief());
    assert_eq!(
        (text(&first.trace_id), text(&first.span_id)),
        (Some(waiter_ctx.0.clone()), Some(waiter_ctx.1.clone())),
        "the waiter's context from OBI's map: {}",
        first.brief()
    );
    assert_eq!(
        (text(&first.holder_trace_id), text(&first.holder_span_id)),
        (Some(holder_ctx.0.clone()), Some(holder_ctx.1.clone())),
        "the holder's context from OBI's map: {}",
        first.brief()
    );
    let second = long_wait(tids.waiters[1]);
    assert_eq!(
        text(&second.trace_id),
        None,
        "no entry, no context: {}",
        second.brief()
    );
    assert_eq!(
        text(&second.holder_trace_id),
        Some(holder_ctx.0.clone()),
        "{}",
        second.brief()
    );
}
