//! `spanlet record`: trace processes (given by PID, or launched) until a
//! duration ends, Ctrl-C, or they exit, writing spanlets to a capture file.

pub mod enrich;
mod launch;
mod options;
mod sink;

use launch::{Launched, child_exit, exit_code_text, launch};
pub use options::{LiveOtlp, RecordError, RecordOptions, RecordSummary};
use sink::Sink;
use std::{
    collections::{BTreeMap, HashSet},
    io::IsTerminal as _,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use agent_ebpf::{
    EventHeader, EventKind, FutexWaitEvent, Outcome, PID_REASON_SPAWNER, PID_REASON_USER, WaitState,
};
use aya::maps::{MapData, RingBuf};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::{
    capture::{CaptureWriter, FORMAT_VERSION, PrivateFile, spanlet_field_names},
    host::procfs,
    kernel::clock::EpochClock,
    kernel::decode::RawEvent,
    kernel::loader::{LoadError, LoadOptions, Tracer},
    kernel::ring_fill::RingFill,
    kernel::ring_reader::{self, ReaderCounters},
    model::{CaptureEnd, CaptureMeta, CaptureStats},
    node::{LoopFigures, Node},
    output::otlp::{Sender, live::LiveExporter},
    record::enrich::{Enricher, Procfs},
};

/// Queue between the RingBuf drain and the capture writer, in events.
pub(super) const QUEUE_EVENTS: usize = 1 << 18;
/// How often counters are re-read and written to the capture.
const STATS_EVERY: Duration = Duration::from_secs(5);
/// How long the end of a run may spend sending what is still queued.
const EXPORT_FLUSH: Duration = Duration::from_secs(5);

fn progress_line(stats: &CaptureStats, started: Instant) {
    eprint!(
        "\r\x1b[Kspanlet: recording {:>5.1}s  spanlets {}  dropped {}",
        started.elapsed().as_secs_f64(),
        stats.spanlets,
        stats.dropped()
    );
}

/// Resolves at the deadline; never without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Loads and attaches the programs, then launches the command if any.
fn start(
    opts: &RecordOptions,
    node: Option<&mut Node>,
) -> Result<(Tracer, RingBuf<MapData>, Option<Launched>), RecordError> {
    let launching = !opts.command.is_empty();
    let mut initial: Vec<(u32, u32)> = opts.pids.iter().map(|&p| (p, PID_REASON_USER)).collect();
    if launching {
        initial.push((std::process::id(), PID_REASON_SPAWNER));
    }
    let mut load = LoadOptions {
        features: opts.features.clone(),
        tolerate_optional_probes: false,
    };
    load.features.follow_forks |= launching;
    if let Some(node) = node {
        node.adjust(&mut load);
        for (pid, reason) in node.initial_pids() {
            if !initial.iter().any(|&(p, _)| p == pid) {
                initial.push((pid, reason));
            }
        }
    }
    let mut tracer = Tracer::load(&load, &initial, &opts.pids)?;
    let ring = tracer
        .take_events()
        .ok_or(LoadError::MissingMap(agent_ebpf::maps::EVENTS))?;
    let launched = if launching {
        Some(launch(&mut tracer, &opts.command)?)
    } else {
        None
    };
    if let (true, Some(l)) = (opts.features.mutex_uprobes, &launched)
        && let Err(err) = tracer.attach_mutex_uprobes(l.pid)
    {
        // A command that is already gone is recorded as it ran; its exit
        // status, not a uprobe error, is what the user needs to see.
        if procfs::is_running(l.pid) {
            return Err(err.into());
        }
        tracing::warn!(
            pid = l.pid,
            "the command exited before the mutex uprobes attached"
        );
    }
    Ok((tracer, ring, launched))
}

/// The processes behind `--pid` values: a thread id names its process (the
/// kernel filter works on processes); unknown or finished ones are errors.
fn resolve_pids(pids: &[u32]) -> Result<Vec<u32>, RecordError> {
    let mut resolved: Vec<u32> = Vec::with_capacity(pids.len());
    for &pid in pids {
        if pid == 0 || !procfs::is_running(pid) {
            return Err(RecordError::NoSuchPid(pid));
        }
        let tgid = procfs::tgid_of(pid).unwrap_or(pid);
        if tgid != pid {
            eprintln!("spanlet: {pid} is a thread of process {tgid}; tracing process {tgid}");
        }
        if !resolved.contains(&tgid) {
            resolved.push(tgid);
        }
    }
    Ok(resolved)
}

/// A wait still open when tracing stopped, as an event ending at `now`.
fn open_wait_event(tid: u32, mut wait: WaitState, now_ns: u64) -> RawEvent {
    wait.outcome = Outcome::InProgress as u32;
    RawEvent::FutexWait(FutexWaitEvent {
        header: EventHeader {
            kind: EventKind::FutexWait as u32,
            cpu: 0,
            ts_ns: now_ns,
            pid: wait.pid,
            tid,
        },
        wait,
    })
}

pub async fn record(opts: RecordOptions) -> Result<RecordSummary, RecordError> {
    record_with(opts, None).await
}

/// Records as a node agent (`spanlet run`): the selection kept up to date,
/// figures published, and running until stopped.
pub async fn record_node(opts: RecordOptions, node: Node) -> Result<RecordSummary, RecordError> {
    record_with(opts, Some(node)).await
}

async fn record_with(
    mut opts: RecordOptions,
    mut node: Option<Node>,
) -> Result<RecordSummary, RecordError> {
    if opts.pids.is_empty() && opts.command.is_empty() && node.is_none() {
        return Err(RecordError::NoTarget);
    }
    opts.pids = resolve_pids(&opts.pids)?;
    // Privileges first, then the output, before touching the kernel or the
    // command. The capture goes to a new private file that replaces the
    // output path only once recording starts, so a failed run leaves an
    // existing capture as it was (see `capture::PrivateFile`).
    crate::kernel::caps::check().map_err(LoadError::from)?;
    let output_file = match &opts.output {
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
    // Bad OTLP settings are an error before anything starts.
    let sender = match &opts.otlp {
        Some(otlp) => Some(Sender::new(otlp.settings.clone())?),
        None => None,
    };
    let (mut tracer, ring, mut launched) = start(&opts, node.as_mut())?;
    let mut pids = opts.pids.clone();
    pids.extend(launched.as_ref().map(|l| l.pid));

    let clock = EpochClock::calibrate();
    let launching = launched.is_some();
    let meta = CaptureMeta {
        format_version: FORMAT_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        kernel_release: procfs::kernel_release(),
        hostname: procfs::hostname(),
        start_unix_nano: EpochClock::unix_now(),
        command: launching.then(|| opts.command.clone()),
        pids: pids.clone(),
        min_wait_ns: u64::try_from(opts.features.min_wait.as_nanos()).unwrap_or(u64::MAX),
        spanlet_fields: spanlet_field_names(),
    };
    let mut sink = Sink {
        writer: output_file
            .map(|file| CaptureWriter::start(file, &meta))
            .transpose()?,
        exporter: sender
            .zip(opts.otlp.as_ref())
            .map(|(sender, otlp)| LiveExporter::start(sender, otlp.resource.clone())),
        enricher: Enricher::new(clock, Procfs),
        processes: HashSet::new(),
        stats: CaptureStats::default(),
        by_kind: BTreeMap::new(),
        unsent_forgets: Vec::new(),
        min_wait_ns: meta.min_wait_ns,
    };
    for &pid in &pids {
        sink.add_process(pid)?;
    }
    if let Some(node) = node.as_mut() {
        // What loading needed is not needed any more.
        let mask = crate::kernel::caps::drop_after_load().map_err(|source| RecordError::Io {
            what: "dropping capabilities after load",
            source,
        })?;
        tracing::info!("capabilities dropped after load; effective now {mask:#x}");
        // Processes that started while the programs loaded.
        for pid in node.tick_now(&mut tracer) {
            sink.add_process(pid)?;
        }
        node.set_ready(true);
    }
    sink.write_stats()?;
    let ring_fill = match RingFill::new(&ring, opts.features.ringbuf_bytes) {
        Ok(fill) => Some(fill),
        Err(err) => {
            tracing::warn!(%err, "cannot map the event ring's positions; its fill is not reported");
            None
        }
    };

    let (tx, mut rx) = mpsc::channel::<RawEvent>(QUEUE_EVENTS);
    let (stop_tx, stop_rx) = watch::channel(false);
    let reader_counters = Arc::new(ReaderCounters::default());
    let reader = tokio::spawn(ring_reader::run(ring, tx, stop_rx, reader_counters.clone()));

    let started = Instant::now();
    let progress = std::io::stderr().is_terminal();
    let mut sigint = signal(SignalKind::interrupt()).map_err(|source| RecordError::Io {
        what: "SIGINT handler",
        source,
    })?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|source| RecordError::Io {
        what: "SIGTERM handler",
        source,
    })?;
    let mut sighup = signal(SignalKind::hangup()).map_err(|source| RecordError::Io {
        what: "SIGHUP handler",
        source,
    })?;
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut last_stats = Instant::now();
    let mut command_status = None;
    let mut alive: Vec<u32> = opts.pids.clone();

    let reason = loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(RawEvent::ProcessExec(exec)) => {
                    let pid = exec.header.pid;
                    // A new program (or, on a reused PID, a new process):
                    // its command line is read again for its next spanlet.
                    sink.forget_process(pid);
                    let added = match node.as_mut() {
                        Some(node) => node.exec(pid, exec.start_boottime_ns, &mut tracer),
                        None => false,
                    };
                    if added {
                        sink.add_process(pid)?;
                    } else if tracer.has_pid(pid) || node.as_ref().is_none_or(Node::traces_all) {
                        tracer.track_thread_ctx(pid);
                    }
                }
                Some(event) => sink.handle(&event)?,
                None => break "the event reader stopped".to_owned(),
            },
            _ = sigint.recv() => break "interrupted (SIGINT)".to_owned(),
            _ = sigterm.recv() => break "terminated (SIGTERM)".to_owned(),
            _ = sighup.recv() => match node.as_mut() {
                Some(node) => {
                    for pid in node.reload(&mut tracer) {
                        sink.add_process(pid)?;
                    }
                }
                None => tracing::info!("SIGHUP ignored: only `spanlet run` reloads"),
            },
            _ = until(deadline) => break "duration elapsed".to_owned(),
            status = child_exit(launched.as_mut()) => {
                let status = status.map_err(|source| RecordError::Io { what: "waiting for the command", source })?;
                command_status = Some(status);
                break format!("command exited ({})", exit_code_text(&status));
            }
            _ = ticker.tick() => {
                tracer.retry_thread_ctx();
                alive.retain(|&p| procfs::is_running(p));
                let stays = node.as_ref().is_some_and(Node::waits_for_new_processes);
                if launched.is_none() && alive.is_empty() && !stays {
                    break "all traced processes exited".to_owned();
                }
                let stats_due = last_stats.elapsed() >= STATS_EVERY;
                // The node agent publishes its figures every tick.
                if stats_due || node.is_some() {
                    tracer.kernel_counters(&mut sink.stats)?;
                }
                if stats_due {
                    let gone_threads = sink.enricher.prune();
                    if node.is_some() {
                        sink.prune_exited(gone_threads);
                    }
                    sink.write_stats()?;
                    last_stats = Instant::now();
                }
                if let Some(node) = node.as_mut() {
                    for pid in node.tick(&mut tracer) {
                        sink.add_process(pid)?;
                    }
                    node.set_ready(true);
                    node.publish(&tracer, &LoopFigures {
                        stats: &sink.stats,
                        spanlets_by_kind: &sink.by_kind,
                        user_queue_full: reader_counters.queue_full.load(Ordering::Relaxed),
                        malformed: reader_counters.malformed.load(Ordering::Relaxed),
                        export: sink.exporter.as_ref().map(LiveExporter::counters),
                        export_unsent_at_exit: 0,
                        ring: ring_fill.as_ref(),
                    });
                }
                if progress {
                    progress_line(&sink.stats, started);
                }
            }
        }
    };

    // Detach first, so nothing races in; then drain what the kernel has
    // written, and report the waits still open as in progress.
    if let Some(node) = &node {
        node.set_ready(false);
    }
    drop(ring_fill);
    tracer.detach();
    let stopped_ns = EpochClock::monotonic_now();
    let _ = stop_tx.send(true);
    while let Some(event) = rx.recv().await {
        sink.handle(&event)?;
    }
    match reader.await {
        Ok(result) => result.map_err(|source| RecordError::Io {
            what: "draining the event ring",
            source,
        })?,
        Err(join) => {
            return Err(RecordError::Io {
                what: "event reader task",
                source: std::io::Error::other(join),
            });
        }
    }
    tracer.kernel_counters(&mut sink.stats)?;
    let threads = sink
        .processes
        .iter()
        .flat_map(|&pid| procfs::threads(pid))
        .map(|t| t.tid);
    for (tid, wait) in tracer.open_waits(threads.collect::<Vec<_>>()) {
        if stopped_ns.saturating_sub(wait.block_ns) < sink.min_wait_ns {
            sink.stats.below_min_wait += 1;
        } else {
            sink.handle(&open_wait_event(tid, wait, stopped_ns))?;
        }
    }
    sink.stats.dropped_user_queue_full = reader_counters.queue_full.load(Ordering::Relaxed);
    sink.stats.malformed_events = reader_counters.malformed.load(Ordering::Relaxed);
    if progress {
        eprintln!();
    }
    let end = CaptureEnd {
        end_unix_nano: EpochClock::unix_now(),
        reason,
    };
    if let Some(mut w) = sink.writer.take() {
        w.write_stats(&sink.stats)?;
        w.finish(&end)?;
    }
    let export = match sink.exporter.take() {
        Some(exporter) => {
            let counters = exporter.counters_handle();
            let summary = exporter.shutdown(EXPORT_FLUSH).await;
            // The final figures, for the last metrics export.
            if let Some(node) = &node {
                node.publish(
                    &tracer,
                    &LoopFigures {
                        stats: &sink.stats,
                        spanlets_by_kind: &sink.by_kind,
                        user_queue_full: sink.stats.dropped_user_queue_full,
                        malformed: sink.stats.malformed_events,
                        export: Some(&counters),
                        export_unsent_at_exit: summary.dropped_at_exit,
                        ring: None,
                    },
                );
            }
            Some(summary)
        }
        None => None,
    };
    drop(tracer);
    if let Some(l) = &launched
        && command_status.is_none()
    {
        eprintln!(
            "spanlet: {} (pid {}) is still running, no longer traced",
            opts.command[0], l.pid
        );
    }
    Ok(RecordSummary {
        stats: sink.stats,
        end,
        elapsed: started.elapsed(),
        command_status,
        export,
    })
}
