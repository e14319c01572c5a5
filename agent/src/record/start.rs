//! Starting a recording: load and attach the programs, launch the command,
//! write the capture's first records, and start reading events.
use std::{sync::Arc, time::Instant};

use agent_ebpf::{PID_REASON_SPAWNER, PID_REASON_USER};
use aya::maps::{MapData, RingBuf};
use tokio::sync::{mpsc, watch};

use super::{
    LiveConsumer, RecordError, RecordHooks, RecordOptions, Recorder,
    launch::{Launched, launch},
    recording::Recording,
    seen::Seen,
    sink::{QUEUE_EVENTS, Sink},
};
use crate::{
    capture::{CaptureWriter, FORMAT_VERSION, spanlet_field_names},
    host::procfs,
    kernel::clock::EpochClock,
    kernel::decode::RawEvent,
    kernel::loader::{LoadError, LoadOptions, Tracer},
    kernel::ring_fill::RingFill,
    kernel::ring_reader::{self, ReaderCounters},
    model::CaptureMeta,
};

impl Recording {
    pub(super) fn start(
        recorder: Recorder,
        live: Option<Box<dyn LiveConsumer>>,
    ) -> Result<Self, RecordError> {
        let Recorder {
            opts,
            output,
            mut hooks,
            progress,
        } = recorder;
        let (mut tracer, ring, launched) = load(&opts, hooks.as_mut())?;
        let mut pids = opts.pids.clone();
        pids.extend(launched.as_ref().map(|l| l.pid));
        let clock = EpochClock::calibrate();
        let meta = CaptureMeta {
            format_version: FORMAT_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            kernel_release: procfs::kernel_release(),
            hostname: procfs::hostname(),
            start_unix_nano: EpochClock::unix_now(),
            command: launched.is_some().then(|| opts.command.clone()),
            pids: pids.clone(),
            min_wait_ns: opts.features.min_wait_ns(),
            spanlet_fields: spanlet_field_names(),
        };
        let writer = output
            .map(|file| CaptureWriter::start(file, &meta))
            .transpose()?;
        let mut sink = Sink::new(writer, live);
        let mut seen = Seen::new(clock);
        for pid in pids {
            seen.add_process(pid, &mut sink)?;
        }
        // Processes that started while the programs loaded.
        for pid in hooks.after_load(&mut tracer)? {
            seen.add_process(pid, &mut sink)?;
        }
        hooks.set_ready(true);
        sink.write_stats()?;
        let ring_fill = match RingFill::new(&ring, opts.features.ringbuf_bytes) {
            Ok(fill) => Some(fill),
            Err(err) => {
                tracing::warn!(%err, "cannot map the event ring's positions; its fill is not reported");
                None
            }
        };
        let (tx, events) = mpsc::channel::<RawEvent>(QUEUE_EVENTS);
        let (stop_reader, stop_rx) = watch::channel(false);
        let reader_counters = Arc::new(ReaderCounters::default());
        let reader = tokio::spawn(ring_reader::run(ring, tx, stop_rx, reader_counters.clone()));
        let alive = opts.pids.clone();
        Ok(Self {
            opts,
            hooks,
            progress,
            tracer,
            launched,
            seen,
            sink,
            min_wait_ns: meta.min_wait_ns,
            ring_fill,
            events,
            stop_reader,
            reader,
            reader_counters,
            started: Instant::now(),
            last_stats: Instant::now(),
            alive,
        })
    }
}

/// Loads and attaches the programs, then launches the command if any.
fn load(
    opts: &RecordOptions,
    hooks: &mut dyn RecordHooks,
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
    hooks.adjust_load(&mut load);
    for (pid, reason) in hooks.initial_pids() {
        if !initial.iter().any(|&(p, _)| p == pid) {
            initial.push((pid, reason));
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
