//! What the programs do in this run, beyond the futex and scheduler waits
//! they always record: one value from the command line (or the node agent's
//! settings) down to the programs' configuration and the attach plan.
use std::{path::PathBuf, time::Duration};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Features {
    /// Waits shorter than this are counted, not reported.
    pub min_wait: Duration,
    /// Record pthread mutex holds with uprobes on libc.
    pub mutex_uprobes: bool,
    /// Attach the `lock:contention_begin/end` programs.
    pub kernel_locks: bool,
    /// Trace the processes traced processes fork.
    pub follow_forks: bool,
    /// Size of the event ring in bytes (checked by the loader).
    pub ringbuf_bytes: u32,
    /// Where OBI pins its trace-context map; used if it is there.
    pub obi_ctx_map: Option<PathBuf>,
    /// Trace every process but those marked as not traced (a node agent's
    /// `--all`); never set from a flag directly.
    pub trace_all: bool,
    /// Report every process's exec, for a selection that takes processes
    /// as they start (a node agent).
    pub report_all_execs: bool,
}

impl Features {
    /// `min_wait` in nanoseconds, as the programs and the capture hold it
    /// (saturating: no wait is that long).
    pub fn min_wait_ns(&self) -> u64 {
        u64::try_from(self.min_wait.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// OBI's default pin path for its trace-context map.
pub const OBI_CTX_MAP: &str = "/sys/fs/bpf/otel/traces_ctx_v1";
