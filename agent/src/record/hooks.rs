//! What the layers above add to a recording: a node agent keeps its target
//! selection up to date and publishes figures ([`RecordHooks`]); a command
//! tells the user how it goes ([`Progress`]). The defaults are a plain
//! `spanlet record`.
use std::{collections::BTreeMap, time::Duration};

use super::{LiveSummary, RecordError};
use crate::{
    kernel::loader::{LoadOptions, Tracer},
    kernel::ring_fill::RingFill,
    model::CaptureStats,
};

/// What became of a process that exec'd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecSeen {
    /// Newly selected: traced from now on, its records written.
    Added,
    /// Traced already: its thread-context slot is looked up again.
    Traced,
    /// Not traced.
    Ignored,
}

/// The recording loop's figures, for a node agent's metrics.
pub struct LoopFigures<'a> {
    pub stats: &'a CaptureStats,
    pub spanlets_by_kind: &'a BTreeMap<&'static str, u64>,
    pub user_queue_full: u64,
    pub malformed: u64,
    /// The live consumer's figures, when there is one.
    pub export: Option<LiveSummary>,
    pub ring: Option<&'a RingFill>,
}

/// Points in the recording loop where a node agent steps in.
pub trait RecordHooks {
    /// Whether processes are chosen here, so neither a PID nor a command
    /// is needed.
    fn selects_processes(&self) -> bool {
        false
    }
    /// Changes the load settings before the programs load.
    fn adjust_load(&self, _load: &mut LoadOptions) {}
    /// More processes (and why they are in the set) to load with.
    fn initial_pids(&mut self) -> Vec<(u32, u32)> {
        Vec::new()
    }
    /// The programs are loaded and attached: returns the processes to add
    /// (those that started meanwhile).
    fn after_load(&mut self, _tracer: &mut Tracer) -> Result<Vec<u32>, RecordError> {
        Ok(Vec::new())
    }
    /// A process exec'd. By default the kernel reports only the execs of
    /// traced processes.
    fn exec(&mut self, _pid: u32, _start_boottime_ns: u64, _tracer: &mut Tracer) -> ExecSeen {
        ExecSeen::Traced
    }
    /// Every second: returns the processes to add.
    fn tick(&mut self, _tracer: &mut Tracer) -> Vec<u32> {
        Vec::new()
    }
    /// SIGHUP: returns the processes to add.
    fn reload(&mut self, _tracer: &mut Tracer) -> Vec<u32> {
        tracing::info!("SIGHUP ignored: only `spanlet run` reloads");
        Vec::new()
    }
    /// Whether the recording goes on when no traced process is left.
    fn waits_for_new_processes(&self) -> bool {
        false
    }
    /// Whether exited processes and threads are forgotten as they go (a
    /// long-running agent), so the live consumer's tables hold the living
    /// only.
    fn forgets_exited(&self) -> bool {
        false
    }
    /// Whether [`Self::publish`] wants the kernel's counters read every
    /// second (they are read every few seconds otherwise).
    fn publishes_figures(&self) -> bool {
        false
    }
    /// The loop's figures: every second, and once more at the end when
    /// there was a live consumer.
    fn publish(&self, _tracer: &Tracer, _figures: &LoopFigures<'_>) {}
    /// Whether the recording is attached and running (false as it stops).
    fn set_ready(&self, _attached: bool) {}
}

/// A plain recording: nothing added.
pub struct NoHooks;

impl RecordHooks for NoHooks {}

/// What a recording tells its user as it goes.
pub trait Progress {
    /// A `--pid` named a thread: its process is traced instead.
    fn pid_is_thread(&mut self, _tid: u32, _tgid: u32) {}
    /// Every second while recording.
    fn recording(&mut self, _stats: &CaptureStats, _elapsed: Duration) {}
    /// Recording stopped; the summary follows.
    fn stopped(&mut self) {}
}
