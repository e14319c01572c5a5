//! `spanlet record`: trace processes (given by PID, or launched) until a
//! duration ends, Ctrl-C, or they exit, writing spanlets to a capture file
//! and handing them to a live consumer.
//!
//! [`Recorder::new`] checks what can be checked before anything starts;
//! [`Recorder::run`] loads the programs (`start.rs`), runs the event loop
//! (`event_loop.rs`) and stops (`stop.rs`). What the layers above add comes
//! in through [`RecordHooks`], [`Progress`] and [`LiveConsumer`].

pub mod enrich;
mod event_loop;
mod hooks;
mod launch;
mod live;
mod options;
mod seen;
mod sink;
mod start;
mod stop;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

pub use hooks::{ExecSeen, LoopFigures, NoHooks, Progress, RecordHooks};
use launch::Launched;
pub use live::{LiveConsumer, LiveItem, LiveSummary};
pub use options::{RecordError, RecordOptions, RecordSummary};
use seen::Seen;
use sink::Sink;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::{
    capture::PrivateFile,
    host::procfs,
    kernel::decode::RawEvent,
    kernel::loader::{LoadError, Tracer},
    kernel::ring_fill::RingFill,
    kernel::ring_reader::ReaderCounters,
};

/// Queue between the RingBuf drain and the capture writer, in events.
pub(super) const QUEUE_EVENTS: usize = 1 << 18;
/// How often counters are re-read and written to the capture.
const STATS_EVERY: Duration = Duration::from_secs(5);
/// How long the end of a run may spend sending what is still queued.
const EXPORT_FLUSH: Duration = Duration::from_secs(5);

/// A recording whose settings were checked: its processes exist, the agent
/// has the privileges, and the capture file is created (it replaces the
/// output path only once recording starts). Nothing started yet.
pub struct Recorder {
    opts: RecordOptions,
    output: Option<PrivateFile>,
    hooks: Box<dyn RecordHooks>,
    progress: Box<dyn Progress>,
}

impl Recorder {
    pub fn new(
        mut opts: RecordOptions,
        hooks: Box<dyn RecordHooks>,
        mut progress: Box<dyn Progress>,
    ) -> Result<Self, RecordError> {
        if opts.pids.is_empty() && opts.command.is_empty() && !hooks.selects_processes() {
            return Err(RecordError::NoTarget);
        }
        opts.pids = resolve_pids(&opts.pids, progress.as_mut())?;
        // Privileges first, then the output, before touching the kernel or
        // the command. The capture goes to a new private file that replaces
        // the output path only once recording starts, so a failed run
        // leaves an existing capture as it was (see `capture::PrivateFile`).
        crate::kernel::caps::check().map_err(LoadError::from)?;
        let output = match &opts.output {
            Some(output) => {
                Some(
                    PrivateFile::create(output).map_err(|source| RecordError::Output {
                        path: output.display().to_string(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Ok(Self {
            opts,
            output,
            hooks,
            progress,
        })
    }

    /// Loads the programs, launches the command if any, and records until
    /// the end; `live` is handed what the capture gets.
    pub async fn run(
        self,
        live: Option<Box<dyn LiveConsumer>>,
    ) -> Result<RecordSummary, RecordError> {
        let mut recording = Recording::start(self, live)?;
        let (reason, command_status) = recording.run_loop().await?;
        recording.stop(reason, command_status).await
    }
}

/// The processes behind `--pid` values: a thread id names its process (the
/// kernel filter works on processes); unknown or finished ones are errors.
fn resolve_pids(pids: &[u32], progress: &mut dyn Progress) -> Result<Vec<u32>, RecordError> {
    let mut resolved: Vec<u32> = Vec::with_capacity(pids.len());
    for &pid in pids {
        if pid == 0 || !procfs::is_running(pid) {
            return Err(RecordError::NoSuchPid(pid));
        }
        let tgid = procfs::tgid_of(pid).unwrap_or(pid);
        if tgid != pid {
            progress.pid_is_thread(pid, tgid);
        }
        if !resolved.contains(&tgid) {
            resolved.push(tgid);
        }
    }
    Ok(resolved)
}

/// A recording under way: the loaded programs, what reads their events,
/// and where the spanlets go.
struct Recording {
    opts: RecordOptions,
    hooks: Box<dyn RecordHooks>,
    progress: Box<dyn Progress>,
    tracer: Tracer,
    launched: Option<Launched>,
    seen: Seen,
    sink: Sink,
    min_wait_ns: u64,
    ring_fill: Option<RingFill>,
    events: mpsc::Receiver<RawEvent>,
    stop_reader: watch::Sender<bool>,
    reader: JoinHandle<std::io::Result<()>>,
    reader_counters: Arc<ReaderCounters>,
    started: Instant,
    last_stats: Instant,
    /// The `--pid` processes still running.
    alive: Vec<u32>,
}
