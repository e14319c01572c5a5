//! The programs' own diagnostics: on a rare path (here the event ring
//! full) the kernel says what happened at debug level, on stderr through
//! the agent's log, when `RUST_LOG` asks for the `spanlet::ebpf` target,
//! and is off otherwise, down to the log ring it keeps.

use spanlet_tests::{Recording, kernel_test_lock, record_overflowing};

const RING_FULL: &str = "event ring full: an event lost";

/// aya-log's ring as built; one page when logging is off.
const LOG_RING_BYTES: u64 = 128 * 1024;

/// The sizes of the eBPF ring buffers the agent `pid` holds open.
fn ring_buffer_sizes(pid: u32) -> Vec<u64> {
    const BPF_MAP_TYPE_RINGBUF: &str = "27";
    let dir = format!("/proc/{pid}/fdinfo");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
        .filter_map(|info| {
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(":\t"))
            };
            if field("map_type")? != BPF_MAP_TYPE_RINGBUF {
                return None;
            }
            field("max_entries")?.parse().ok()
        })
        .collect()
}

fn ring_drops(rec: &Recording) -> u64 {
    let stats = &rec.report_json()["stats"];
    stats["dropped_ringbuf_full"]
        .as_u64()
        .unwrap_or_else(|| panic!("report stats have no dropped_ringbuf_full: {stats}"))
}

#[test]
fn a_full_ring_is_said_at_debug_level_when_asked() {
    let _serial = kernel_test_lock();
    let mut rings = Vec::new();
    let Some(rec) = record_overflowing(Some("warn,spanlet::ebpf=debug"), |pid| {
        rings = ring_buffer_sizes(pid);
    }) else {
        return;
    };
    assert!(
        rings.contains(&LOG_RING_BYTES),
        "the agent should keep aya-log's ring: ring buffers {rings:?}"
    );
    assert!(ring_drops(&rec) > 0, "the ring should have overflowed");
    let lines: Vec<&str> = rec
        .stderr
        .lines()
        .filter(|l| l.contains(RING_FULL))
        .collect();
    assert!(
        !lines.is_empty(),
        "the kernel should say the ring was full:\n{}",
        rec.stderr
    );
    for line in &lines {
        assert!(
            line.contains("DEBUG") && line.contains("spanlet::ebpf"),
            "a kernel diagnostic at debug level, target spanlet::ebpf: {line}"
        );
    }
    // The first loss on a CPU is said, then every power of two: a few
    // lines per CPU, not one per lost event.
    assert!(
        lines.iter().any(|l| l.contains("(1 so far on CPU")),
        "the first loss should be said:\n{}",
        rec.stderr
    );
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as usize;
    assert!(
        lines.len() <= 64 * cpus,
        "{} lines for {} lost events: more than one per power of two and CPU",
        lines.len(),
        ring_drops(&rec)
    );
}

#[test]
fn kernel_diagnostics_are_off_without_rust_log() {
    let _serial = kernel_test_lock();
    let mut rings = Vec::new();
    let Some(rec) = record_overflowing(None, |pid| rings = ring_buffer_sizes(pid)) else {
        return;
    };
    assert!(ring_drops(&rec) > 0, "the ring should have overflowed");
    // Off in the kernel too: the level was set before load, and the log
    // ring shrank to a page.
    assert!(
        rings.len() == 2 && !rings.contains(&LOG_RING_BYTES),
        "the event ring and a one-page log ring: ring buffers {rings:?}"
    );
    assert!(
        !rec.stderr.contains(RING_FULL) && !rec.stderr.contains("spanlet::ebpf"),
        "no kernel diagnostics unless RUST_LOG asks:\n{}",
        rec.stderr
    );
}
