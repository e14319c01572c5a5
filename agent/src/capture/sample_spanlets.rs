//! Sample spanlets for tests, in a file of their own: the codec's tests use
//! them, and [`testutil`](super::testutil), which needs the codec, hands
//! them on to the other tests, so neither depends back on the other.

use crate::model::{SpanContext, Spanlet, SpanletKind, WaitOutcome};

/// Every optional field set, every integer at an unusual value.
pub(crate) fn full_spanlet() -> Spanlet {
    Spanlet {
        kind: SpanletKind::MutexWait,
        pid: 100,
        tid: u32::MAX,
        comm: "worker-é\"\n".into(),
        addr: 0x7fff_dead_beef_0010,
        start_unix_nano: u64::MAX,
        wait_ns: 1_234_567,
        woken_after_ns: Some(1_000_000),
        outcome: WaitOutcome::Woken,
        holder_tid: Some(101),
        waker_pid: Some(100),
        waker_tid: Some(102),
        waker_comm: Some("waker".into()),
        syscall: 202,
        op: 0x80,
        arg: 2,
        flags: 0xffff_ffff,
        context: Some(SpanContext {
            trace_id: [
                0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
                0x47, 0x36,
            ],
            span_id: [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7],
        }),
        holder_context: Some(SpanContext {
            trace_id: [1; 16],
            span_id: [2; 8],
        }),
        waker_context: None,
        socket: None,
    }
}

/// Every optional field absent, integers zero.
pub(crate) fn minimal_spanlet() -> Spanlet {
    Spanlet::new(SpanletKind::FutexWait, 0, 0)
}
