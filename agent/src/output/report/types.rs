//! The report's types: what [`build_report`](super::build_report) fills in,
//! [`render_text`](super::render_text) prints and
//! [`render_json`](super::render_json) serializes (the field names and their
//! serde attributes are the JSON report's).

use serde::{Serialize, Serializer};

use crate::{
    capture::Integrity,
    model::{CaptureMeta, CaptureStats, SpanletKind},
};

/// How many threads each holder / waker / waiter list keeps: enough to see
/// who matters without drowning the report.
pub const TOP_THREADS: usize = 5;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub meta: CaptureMeta,
    /// `None` when the capture has no stats record (it died very early).
    pub stats: Option<StatsReport>,
    /// Why the capture ended; `None` when it did not end cleanly.
    pub end: Option<String>,
    /// From the capture start to its end record or, without one, to the end
    /// of the last spanlet.
    pub duration_ns: Option<u64>,
    pub truncated: bool,
    pub damaged_tail_bytes: u64,
    /// Damage skipped in the middle of the file, unknown records, and the
    /// stats record's spanlet count against the spanlets read.
    pub integrity: Integrity,
    /// One sentence per problem with the capture (also in the text report).
    pub warnings: Vec<String>,
    pub total_spanlets: u64,
    /// Resources before truncation to `top`.
    pub total_resources: u64,
    pub resources: Vec<ResourceReport>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatsReport {
    #[serde(flatten)]
    pub counters: CaptureStats,
    /// `CaptureStats::dropped`, so JSON readers need not re-derive it.
    pub dropped: u64,
}

/// Everything known about one resource (futex word or mutex) of one process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResourceReport {
    pub pid: u32,
    /// Process name, or "?" when the capture has no process record.
    pub process: String,
    /// `mutex_wait` if any wait on it was a lock wait, else `futex_wait`;
    /// `mutex_hold` only for resources seen in holds alone.
    #[serde(serialize_with = "serialize_kind")]
    pub kind: SpanletKind,
    #[serde(serialize_with = "serialize_hex")]
    pub addr: u64,
    pub waits: u64,
    pub total_wait_ns: u64,
    pub max_wait_ns: u64,
    pub p50_wait_ns: u64,
    pub p99_wait_ns: u64,
    pub outcomes: Outcomes,
    /// Threads that held the resource while others waited.
    pub holders: Vec<ThreadStat>,
    /// Threads that woke the waiters.
    pub wakers: Vec<ThreadStat>,
    pub waiters: Vec<ThreadStat>,
    /// Lock-to-unlock statistics, when holds were traced.
    pub holds: Option<HoldStats>,
    /// For a kernel lock: its type (`mutex`, `rwsem_write`, `spinlock`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_lock: Option<&'static str>,
    /// For a socket (`addr` is its inode): transport and addresses, e.g.
    /// "tcp 127.0.0.1:8080 <- 127.0.0.1:43210".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    pub woken: u64,
    pub timed_out: u64,
    pub interrupted: u64,
    pub unknown: u64,
    /// Still blocked when tracing stopped.
    pub in_progress: u64,
}

/// A thread's share of the waits on a resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ThreadStat {
    pub tid: u32,
    pub name: String,
    pub waits: u64,
    pub wait_ns: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HoldStats {
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
}

fn serialize_kind<S: Serializer>(kind: &SpanletKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.as_str())
}

fn serialize_hex<S: Serializer>(addr: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{addr:#x}"))
}
