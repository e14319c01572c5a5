//! Nothing recorded is lost silently: when the kernel's event ring is too
//! small for the wait rate, the losses are counted, add up with what was
//! recorded, and are reported to the user.

use serde_json::Value;
use spanlet_tests::{C_PINGPONG, Recording, kernel_test_lock, record_command, record_overflowing};

fn counter(stats: &Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("report stats have no counter {name}: {stats}"))
}

/// Every wait the kernel saw is accounted for: recorded, filtered, or
/// dropped; at most a few (threads still blocked at the end) are none.
fn assert_accounted(rec: &Recording) -> Value {
    let report = rec.report_json();
    let stats = report["stats"].clone();
    let seen = counter(&stats, "waits_seen");
    let recorded = counter(&stats, "spanlets");
    let below = counter(&stats, "below_min_wait");
    let dropped = counter(&stats, "dropped_ringbuf_full");
    let exited = counter(&stats, "exited_in_wait");
    let exported = rec.export().len() as u64;
    assert_eq!(exported, recorded, "export and stats disagree: {stats}");
    let accounted = recorded + below + dropped + exited;
    assert!(
        accounted <= seen && seen - accounted <= 4,
        "waits seen {seen} vs recorded {recorded} + filtered {below} + dropped {dropped} + exited {exited}: {stats}"
    );
    stats
}

/// An agent starved of CPU (stopped for half a second here) cannot drain
/// the ring; the kernel counts what it could not write.
#[test]
fn a_full_ring_is_counted_and_reported() {
    let _serial = kernel_test_lock();
    let Some(rec) = record_overflowing(None, |_| {}) else {
        return;
    };
    let stats = assert_accounted(&rec);
    let dropped = counter(&stats, "dropped_ringbuf_full");
    assert!(
        dropped > 0,
        "a 4 KiB ring with its reader stopped for 500 ms should overflow: {stats}"
    );
    assert!(
        rec.stderr.contains("events lost") && rec.stderr.contains(&dropped.to_string()),
        "record should warn about the {dropped} lost events:\n{}",
        rec.stderr
    );
    assert_eq!(counter(&stats, "dropped"), dropped, "{stats}");
    let text = rec.report_text();
    assert!(
        text.contains("WARNING") && text.contains(&dropped.to_string()),
        "the report should warn about the drops:\n{text}"
    );
}

#[test]
fn the_default_ring_keeps_up_with_a_ping_pong() {
    let _serial = kernel_test_lock();
    let Some(rec) = record_command(&["--min-wait", "0s"], C_PINGPONG, &["20000"]) else {
        return;
    };
    let stats = assert_accounted(&rec);
    assert_eq!(counter(&stats, "dropped"), 0, "{stats}");
    assert!(
        counter(&stats, "spanlets") >= 20_000,
        "20000 round trips should block at least once per round: {stats}"
    );
}
