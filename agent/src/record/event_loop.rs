//! The recording loop: events to the sink, execs, signals, and a tick
//! every second, until something ends the recording.
use std::{
    process::ExitStatus,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{
    ExecSeen, LiveSummary, LoopFigures, RecordError,
    launch::{child_exit, exit_code_text},
    recording::Recording,
};
use crate::{host::procfs, kernel::decode::RawEvent};

/// How often counters are re-read and written to the capture.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// Why the loop ended, and the launched command's status if it exited.
pub(super) type Ended = (String, Option<ExitStatus>);

/// The signals that stop (SIGINT, SIGTERM) or reload (SIGHUP) a recording.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn new() -> Result<Self, RecordError> {
        let handler = |kind, what| signal(kind).map_err(|source| RecordError::Io { what, source });
        Ok(Self {
            interrupt: handler(SignalKind::interrupt(), "SIGINT handler")?,
            terminate: handler(SignalKind::terminate(), "SIGTERM handler")?,
            hangup: handler(SignalKind::hangup(), "SIGHUP handler")?,
        })
    }
}

/// Resolves at the deadline; never without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Recording {
    pub(super) async fn run_loop(&mut self) -> Result<Ended, RecordError> {
        let mut signals = Signals::new()?;
        let deadline = self.opts.duration.map(|d| tokio::time::Instant::now() + d);
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        self.last_stats = Instant::now();
        loop {
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(RawEvent::ProcessExec(exec)) => {
                        self.exec(exec.header.pid, exec.start_boottime_ns)?;
                    }
                    Some(event) => self.seen.event(&event, &mut self.sink)?,
                    None => return Ok(("the event reader stopped".to_owned(), None)),
                },
                _ = signals.interrupt.recv() => return Ok(("interrupted (SIGINT)".to_owned(), None)),
                _ = signals.terminate.recv() => return Ok(("terminated (SIGTERM)".to_owned(), None)),
                _ = signals.hangup.recv() => {
                    let added = self.hooks.reload(&mut self.tracer);
                    self.add_processes(added)?;
                }
                _ = until(deadline) => return Ok(("duration elapsed".to_owned(), None)),
                status = child_exit(self.launched.as_mut()) => {
                    let status = status.map_err(|source| RecordError::Io { what: "waiting for the command", source })?;
                    return Ok((format!("command exited ({})", exit_code_text(&status)), Some(status)));
                }
                _ = ticker.tick() => {
                    if let Some(reason) = self.tick()? {
                        return Ok((reason, None));
                    }
                }
            }
        }
    }

    /// A process exec'd: a new program (or, on a reused PID, a new
    /// process), whose command line is read again for its next spanlet.
    fn exec(&mut self, pid: u32, start_boottime_ns: u64) -> Result<(), RecordError> {
        self.seen.forget_process(pid);
        match self.hooks.exec(pid, start_boottime_ns, &mut self.tracer) {
            ExecSeen::Added => self.seen.add_process(pid, &mut self.sink)?,
            ExecSeen::Traced => {
                self.tracer.track_thread_ctx(pid);
            }
            ExecSeen::Ignored => {}
        }
        Ok(())
    }

    fn add_processes(&mut self, pids: Vec<u32>) -> Result<(), RecordError> {
        for pid in pids {
            self.seen.add_process(pid, &mut self.sink)?;
        }
        Ok(())
    }

    /// Every second: ends the recording when nothing is left to trace,
    /// refreshes the figures (written every few seconds), and lets the
    /// hooks add processes and publish. Returns why to stop, if so.
    fn tick(&mut self) -> Result<Option<String>, RecordError> {
        self.tracer.retry_thread_ctx();
        self.alive.retain(|&p| procfs::is_running(p));
        let stays = self.hooks.waits_for_new_processes();
        if self.launched.is_none() && self.alive.is_empty() && !stays {
            return Ok(Some("all traced processes exited".to_owned()));
        }
        let stats_due = self.last_stats.elapsed() >= STATS_EVERY;
        if stats_due || self.hooks.publishes_figures() {
            self.read_kernel_counters()?;
        }
        if stats_due {
            let gone_threads = self.seen.prune_threads();
            if self.hooks.forgets_exited() {
                let exited = self.seen.prune_processes();
                self.sink.forget_exited(&exited, gone_threads);
            }
            self.sink.write_stats()?;
            self.last_stats = Instant::now();
        }
        let added = self.hooks.tick(&mut self.tracer);
        self.add_processes(added)?;
        if self.hooks.publishes_figures() {
            self.hooks.set_ready(true);
            let export = self.sink.live.as_ref().map(|live| live.figures());
            let figures = self.figures(export);
            self.hooks.publish(&self.tracer, &figures);
        }
        self.progress
            .recording(&self.sink.stats, self.started.elapsed());
        Ok(None)
    }

    pub(super) fn read_kernel_counters(&mut self) -> Result<(), RecordError> {
        let counters = self.tracer.kernel_counters()?;
        self.sink.stats.set_kernel(&counters);
        Ok(())
    }

    /// The loop's figures for the hooks.
    pub(super) fn figures(&self, export: Option<LiveSummary>) -> LoopFigures<'_> {
        LoopFigures {
            stats: &self.sink.stats,
            spanlets_by_kind: &self.sink.by_kind,
            user_queue_full: self.reader_counters.queue_full.load(Ordering::Relaxed),
            malformed: self.reader_counters.malformed.load(Ordering::Relaxed),
            export,
            ring: self.ring_fill.as_ref(),
        }
    }
}
