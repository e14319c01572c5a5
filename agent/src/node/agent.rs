//! What `spanlet run` adds to the recording loop as a node agent: the
//! target selection kept up to date (new processes, pods, SIGHUP), and its
//! own figures published for /metrics and OTLP metrics.
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use agent_ebpf::{PID_REASON_SPAWNER, PID_REASON_USER};

use crate::{
    host::procfs,
    kernel::loader::{LoadOptions, Tracer},
    kernel::ring_fill::RingFill,
    node::config::RunSettings,
    node::k8s::PodCache,
    node::observe::{Snapshot, State},
    node::targets::{Selection, Targets},
    record::{ExecSeen, LiveSummary, LoopFigures, RecordError, RecordHooks},
};

/// How often /proc is scanned for selected processes that no exec
/// revealed (moved into a cgroup after their exec, or missed while the
/// agent was busy).
const RESCAN_EVERY: Duration = Duration::from_secs(5);

pub struct Node {
    settings: RunSettings,
    targets: Targets,
    pods: Option<PodCache>,
    state: Option<Arc<State>>,
    in_cluster: bool,
    reloads: u64,
    reload_errors: u64,
    pod_generation: u64,
    last_rescan: Instant,
    start_unix_nano: u64,
}

impl Node {
    pub fn new(
        settings: RunSettings,
        selection: Selection,
        pods: Option<PodCache>,
        state: Option<Arc<State>>,
        in_cluster: bool,
        start_unix_nano: u64,
    ) -> Self {
        let pod_generation = pods.as_ref().map_or(0, PodCache::generation);
        Self {
            settings,
            targets: Targets::new(selection, pods.clone()),
            pods,
            state,
            in_cluster,
            reloads: 0,
            reload_errors: 0,
            pod_generation,
            last_rescan: Instant::now(),
            start_unix_nano,
        }
    }

    /// `--all`: the kernel traces every process; nothing to keep up.
    pub fn traces_all(&self) -> bool {
        self.targets.selection().all
    }

    /// Rescans now (after loading: processes that started meanwhile). With
    /// `--all`, looks for every running process's thread-context slot.
    fn tick_now(&mut self, tracer: &mut Tracer) -> Vec<u32> {
        if self.traces_all() {
            let own = std::process::id();
            for pid in procfs::all_pids().into_iter().filter(|&p| p != own) {
                tracer.track_thread_ctx(pid);
            }
            return Vec::new();
        }
        self.last_rescan = Instant::now();
        self.targets.rescan(tracer)
    }

    /// Processes traced now.
    fn traced_processes(&self, tracer: &Tracer) -> u64 {
        if self.traces_all() {
            procfs::all_pids().len().saturating_sub(1) as u64
        } else {
            tracer.traced_count() as u64
        }
    }
}

impl RecordHooks for Node {
    /// The selection names the processes, `--pid` or not.
    fn selects_processes(&self) -> bool {
        true
    }

    /// Load settings for a node agent. Execs are always reported (rare, and
    /// a reload may add selectors that need them). Forks are followed for
    /// selectors that take new processes (a container's processes fork
    /// more), never with `--all`, where following would only fill the PID
    /// set (the fork program then only hands the thread-context slot on);
    /// `--pid` alone follows them only with `--follow-forks`.
    fn adjust_load(&self, load: &mut LoadOptions) {
        let all = self.traces_all();
        let features = &mut load.features;
        features.trace_all = all;
        features.report_all_execs = true;
        features.follow_forks =
            !all && (features.follow_forks || self.targets.selection().is_dynamic());
        load.tolerate_optional_probes = true;
    }

    /// The PID set to load with: the selected processes running now, and,
    /// with `--all`, the agent itself marked as not traced.
    fn initial_pids(&mut self) -> Vec<(u32, u32)> {
        if self.traces_all() {
            return vec![(std::process::id(), PID_REASON_SPAWNER)];
        }
        let pids = self.targets.scan();
        self.targets.note_added(&pids);
        pids.into_iter()
            .map(|(p, _)| (p, PID_REASON_USER))
            .collect()
    }

    /// Drops the capabilities only loading needed, then rescans.
    fn after_load(&mut self, tracer: &mut Tracer) -> Result<Vec<u32>, RecordError> {
        let mask = crate::kernel::caps::drop_after_load().map_err(|source| RecordError::Io {
            what: "dropping capabilities after load",
            source,
        })?;
        tracing::info!("capabilities dropped after load; effective now {mask:#x}");
        Ok(self.tick_now(tracer))
    }

    /// Adds the process if it is selected and still the process that
    /// exec'd (`start_boottime_ns`, from the kernel).
    fn exec(&mut self, pid: u32, start_boottime_ns: u64, tracer: &mut Tracer) -> ExecSeen {
        if !self.traces_all() && self.targets.on_exec(pid, start_boottime_ns, tracer) {
            ExecSeen::Added
        } else if tracer.has_pid(pid) || self.traces_all() {
            ExecSeen::Traced
        } else {
            ExecSeen::Ignored
        }
    }

    /// Rescans when due or when the pods changed.
    fn tick(&mut self, tracer: &mut Tracer) -> Vec<u32> {
        if self.traces_all() {
            return Vec::new();
        }
        let generation = self.pods.as_ref().map_or(0, PodCache::generation);
        if generation == self.pod_generation && self.last_rescan.elapsed() < RESCAN_EVERY {
            return Vec::new();
        }
        self.pod_generation = generation;
        self.last_rescan = Instant::now();
        self.targets.rescan(tracer)
    }

    /// Reads the config file again and applies its selection. A bad file
    /// keeps the selection in force (says why, and counts it).
    fn reload(&mut self, tracer: &mut Tracer) -> Vec<u32> {
        let resolved = self
            .settings
            .reload_selection()
            .map_err(|e| e.to_string())
            .and_then(|spec| Selection::resolve(&spec, self.in_cluster).map_err(|e| e.to_string()));
        let mut selection = match resolved {
            Ok(s) => s,
            Err(err) => {
                tracing::error!(%err, "reload failed; the selection in force stays");
                self.reload_errors += 1;
                return Vec::new();
            }
        };
        if selection.all != self.traces_all() {
            tracing::warn!(
                "`all` changes only with a restart (it is fixed when the programs load)"
            );
            selection.all = self.traces_all();
        }
        self.reloads += 1;
        let added = self.targets.replace(selection, tracer);
        tracing::info!(added = added.len(), "selection reloaded");
        added
    }

    /// Always, but for `--pid` alone.
    fn waits_for_new_processes(&self) -> bool {
        self.traces_all() || self.targets.selection().is_dynamic()
    }

    /// An agent runs for months: its tables hold the living only.
    fn forgets_exited(&self) -> bool {
        true
    }

    fn publishes_figures(&self) -> bool {
        true
    }

    /// Publishes the figures for /metrics and OTLP metrics, and beats.
    fn publish(&self, tracer: &Tracer, figures: &LoopFigures<'_>) {
        let Some(state) = &self.state else {
            return;
        };
        let s = figures.stats;
        let export = |f: fn(&LiveSummary) -> u64| figures.export.as_ref().map_or(0, f);
        let drops: BTreeMap<&'static str, u64> = [
            ("ringbuf_full", s.dropped_ringbuf_full),
            ("wait_map_full", s.dropped_waits_map_full),
            ("hold_map_full", s.dropped_held_map_full),
            ("kernel_lock_map_full", s.dropped_kernel_locks_map_full),
            // Forks the kernel could not add, and selected processes the
            // agent could not.
            (
                "pid_map_full",
                s.dropped_pids_map_full + self.targets.failed_adds(),
            ),
            ("user_queue_full", figures.user_queue_full),
            ("malformed", figures.malformed),
            ("export_queue_full", export(|e| e.dropped_queue_full)),
            ("export_failed", export(|e| e.dropped_send_failed)),
            ("export_unsent_at_exit", export(|e| e.dropped_at_exit)),
        ]
        .into_iter()
        .collect();
        state.publish(Snapshot {
            spanlets_by_kind: figures.spanlets_by_kind.clone(),
            waits_seen: s.waits_seen,
            below_min_wait: s.below_min_wait,
            exited_in_wait: s.exited_in_wait,
            waits_ended_at_wake: s.waits_ended_at_wake,
            drops_by_cause: drops,
            exported: export(|e| e.exported),
            export_failed_batches: export(|e| e.failed_batches),
            ringbuf_size_bytes: figures.ring.map_or(0, RingFill::size_bytes),
            ringbuf_used_bytes: figures.ring.map_or(0, RingFill::used_bytes),
            traced_processes: self.traced_processes(tracer),
            probe_attach_failures: u64::from(tracer.attach_failures()),
            selection_reloads: self.reloads,
            selection_reload_errors: self.reload_errors,
            k8s_pods: self.pods.as_ref().map(|p| p.len() as u64),
            start_unix_nano: self.start_unix_nano,
            ..Snapshot::default()
        });
        state.beat();
    }

    /// Ready once the programs are attached and, in a cluster, the pods of
    /// this node are known.
    fn set_ready(&self, attached: bool) {
        let Some(state) = &self.state else {
            return;
        };
        match (&self.pods, attached) {
            (_, false) => state.set_ready(false, "shutting down"),
            (Some(pods), true) if !pods.synced() => {
                state.set_ready(false, "waiting for the first list of this node's pods");
            }
            _ => state.set_ready(true, ""),
        }
    }
}
