//! Loads the embedded programs with this kernel's offsets, attaches them and
//! hands out the maps the agent uses.
use std::path::Path;

use agent_ebpf::{PID_HINT_SLOTS, PID_REASON_USER, PidEntry, WaitState, globals, maps};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf},
};

use crate::{
    kernel::btf::{BtfError, KernelBtf},
    kernel::caps::{self, CapsError},
    kernel::ctx_slots::CtxSlots,
    kernel::ebpf_object::EBPF_OBJECT,
    kernel::features::Features,
    kernel::kernel_config,
    kernel::kernel_log::{self, KernelLog},
    kernel::probes::{self, AttachError, AttachPlan},
    kernel::thread_ctx::TlsSlot,
    model::KernelCounters,
};

/// How to load the programs.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub features: Features,
    /// Leave out opt-in probes the kernel refuses instead of failing.
    pub tolerate_optional_probes: bool,
}

/// Whether the map pinned at `path` is one the programs can read as OBI's
/// `traces_ctx_v1` (a hash keyed by pid_tgid, values starting with a trace
/// and a span id). Absent is normal; anything else is said once.
fn usable_obi_map(path: &Path) -> bool {
    if !path.exists() {
        tracing::debug!(path = %path.display(), "no OBI trace-context map");
        return false;
    }
    let info = match aya::maps::MapInfo::from_pin(path) {
        Ok(info) => info,
        Err(err) => {
            tracing::warn!(path = %path.display(), %err, "cannot open the OBI trace-context map; not using it");
            return false;
        }
    };
    let hash = matches!(
        info.map_type(),
        Ok(aya::maps::MapType::Hash | aya::maps::MapType::LruHash)
    );
    let fits =
        info.key_size() == 8 && info.value_size() as usize >= size_of::<agent_ebpf::ObiCtxValue>();
    if !(hash && fits) {
        tracing::warn!(
            path = %path.display(),
            key_size = info.key_size(),
            value_size = info.value_size(),
            "the map at this path is not shaped like OBI's traces_ctx_v1; not using it"
        );
        return false;
    }
    tracing::info!(path = %path.display(), "reading trace context from OBI's map too");
    true
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Caps(#[from] CapsError),
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error(
        "this spanlet was built without its eBPF programs (AYA_BUILD_SKIP); rebuild it with `cargo build --release`"
    )]
    NoObject,
    #[error("--ringbuf-size must be a power of two of at least 4096 bytes, got {0}")]
    RingbufSize(u32),
    #[error("loading the eBPF programs failed")]
    Load(#[source] aya::EbpfError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error(
        "spanlet needs Linux 5.18 or later (sched_switch's prev_state argument); this kernel is {0}"
    )]
    KernelTooOld(String),
    #[error(
        "spanlet runs in a nested PID namespace, where process ids differ from the kernel's; run it in the host PID namespace (e.g. hostPID: true)"
    )]
    PidNamespace,
    #[error("map {0} is missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("map {name}")]
    Map {
        name: &'static str,
        source: MapError,
    },
}

/// The loaded, attached programs and the maps the agent talks to. Dropping
/// it detaches everything.
pub struct Tracer {
    /// Keeps programs and links alive.
    /// None once detached.
    ebpf: Option<Ebpf>,
    pids: HashMap<MapData, u32, PidEntry>,
    /// Task-local storage of open waits, read by thread pidfd.
    wait_state: MapData,
    pid_hints: Array<MapData, u64>,
    /// Where traced processes keep their OTEP 4947 thread context.
    ctx_slots: CtxSlots,
    counters: PerCpuArray<MapData, u64>,
    events: Option<RingBuf<MapData>>,
    /// Optional probes left out because the kernel refused them.
    attach_failures: u32,
    /// Forwards the programs' diagnostics, when `RUST_LOG` asks for them.
    _kernel_log: Option<KernelLog>,
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> LoadError {
    move |source| LoadError::Map { name, source }
}

impl Tracer {
    /// Loads the programs and puts `pids` in the PID set before attaching,
    /// so tracing starts with the filter in place. `uprobe_pids` scopes the
    /// optional mutex uprobes.
    pub fn load(
        opts: &LoadOptions,
        pids: &[(u32, u32)],
        uprobe_pids: &[u32],
    ) -> Result<Self, LoadError> {
        caps::check()?;
        preflight()?;
        let btf = KernelBtf::from_sys_fs()?;
        if EBPF_OBJECT.is_empty() {
            return Err(LoadError::NoObject);
        }
        let features = &opts.features;
        if !features.ringbuf_bytes.is_power_of_two() || features.ringbuf_bytes < 4096 {
            return Err(LoadError::RingbufSize(features.ringbuf_bytes));
        }
        let obi = features
            .obi_ctx_map
            .as_deref()
            .filter(|p| usable_obi_map(p));
        let mut config = kernel_config::build(&btf, features)?;
        config.obi_ctx = u32::from(obi.is_some());
        let log_level = kernel_log::level();
        let mut ebpf = {
            // The loader holds the kernel's parsed BTF (about 9 MiB here):
            // dropped as soon as the object is loaded, before attaching
            // parses it again, so the two never add up in the peak RSS.
            let mut loader = EbpfLoader::new();
            if let Some(path) = obi {
                // aya opens a pinned map at this path (and would create one
                // if there were none: `usable_obi_map` just checked there is).
                loader.map_pin_path(maps::OBI_CTX, path);
            }
            kernel_log::configure(&mut loader, &log_level);
            loader
                // SPANLET_WAIT_STATE is task-local storage, which aya creates
                // but has no typed API for (see `task_storage`).
                .allow_unsupported_maps()
                .override_global(globals::CONFIG, &config, true)
                .map_max_entries(maps::EVENTS, features.ringbuf_bytes)
                .load(EBPF_OBJECT)
                .map_err(LoadError::Load)?
        };

        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name).ok_or(LoadError::MissingMap(name))
        };
        let pid_map: HashMap<MapData, u32, PidEntry> =
            HashMap::try_from(take(&mut ebpf, maps::PIDS)?).map_err(map_err(maps::PIDS))?;
        let pid_hints =
            Array::try_from(take(&mut ebpf, maps::PID_HINTS)?).map_err(map_err(maps::PID_HINTS))?;
        let wait_state = match take(&mut ebpf, maps::WAIT_STATE)? {
            aya::maps::Map::Unsupported(data) => data,
            _ => return Err(LoadError::MissingMap(maps::WAIT_STATE)),
        };
        let thread_ctx = HashMap::try_from(take(&mut ebpf, maps::THREAD_CTX)?)
            .map_err(map_err(maps::THREAD_CTX))?;
        let thread_ctx_by_file = HashMap::try_from(take(&mut ebpf, maps::THREAD_CTX_BY_FILE)?)
            .map_err(map_err(maps::THREAD_CTX_BY_FILE))?;
        let thread_ctx_any = Array::try_from(take(&mut ebpf, maps::THREAD_CTX_ANY)?)
            .map_err(map_err(maps::THREAD_CTX_ANY))?;
        let counters = PerCpuArray::try_from(take(&mut ebpf, maps::COUNTERS)?)
            .map_err(map_err(maps::COUNTERS))?;
        let events =
            RingBuf::try_from(take(&mut ebpf, maps::EVENTS)?).map_err(map_err(maps::EVENTS))?;
        let kernel_log = kernel_log::start(&mut ebpf, log_level);

        let plan = AttachPlan {
            features,
            uprobe_pids,
            tolerate_optional: opts.tolerate_optional_probes,
        };
        let mut tracer = Self {
            ebpf: Some(ebpf),
            pids: pid_map,
            wait_state,
            pid_hints,
            ctx_slots: CtxSlots::new(thread_ctx, thread_ctx_by_file, thread_ctx_any),
            counters,
            events: Some(events),
            attach_failures: 0,
            _kernel_log: kernel_log,
        };
        for &(pid, reason) in pids {
            tracer.insert_pid(pid, reason)?;
            if reason != agent_ebpf::PID_REASON_SPAWNER {
                tracer.track_thread_ctx(pid);
            }
        }
        if let Some(ebpf) = tracer.ebpf.as_mut() {
            tracer.attach_failures = probes::attach_all(ebpf, &plan)?;
        }
        Ok(tracer)
    }

    /// The event ring, for the one task that drains it.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }

    /// Scopes the mutex uprobes to one more process.
    pub fn attach_mutex_uprobes(&mut self, pid: u32) -> Result<(), LoadError> {
        match self.ebpf.as_mut() {
            Some(ebpf) => Ok(probes::attach_uprobes(ebpf, &[pid])?),
            None => Ok(()),
        }
    }

    /// Detaches and unloads every program; the maps stay readable, so the
    /// ring can be drained and counters read without new events racing in.
    pub fn detach(&mut self) {
        self.ebpf = None;
    }

    /// Waits still open (threads blocked now) among `tids`, for the end of
    /// a capture. Threads gone meanwhile have none.
    pub fn open_waits(&self, tids: impl IntoIterator<Item = u32>) -> Vec<(u32, WaitState)> {
        use std::os::fd::AsFd as _;
        tids.into_iter()
            .filter_map(|tid| {
                match crate::kernel::task_storage::lookup::<WaitState>(
                    self.wait_state.fd().as_fd(),
                    tid,
                ) {
                    // An epoll sleep is a wait only once a socket ends it.
                    Ok(Some(wait))
                        if wait.block_ns != 0
                            && wait.flags & agent_ebpf::wait_flags::EPOLL == 0 =>
                    {
                        Some((tid, wait))
                    }
                    Ok(_) => None,
                    Err(err) => {
                        tracing::debug!(tid, %err, "reading a thread's wait state");
                        None
                    }
                }
            })
            .collect()
    }

    /// Finds where `pid` publishes OTEP 4947 thread context and tells the
    /// kernel side (see [`CtxSlots::track`]).
    pub fn track_thread_ctx(&mut self, pid: u32) -> Option<TlsSlot> {
        self.ctx_slots.track(pid)
    }

    /// Looks again where no thread-context slot was found yet.
    pub fn retry_thread_ctx(&mut self) {
        self.ctx_slots.retry();
    }

    /// Tells the kernel side the slot of the program at `path`, if it has
    /// one (see [`CtxSlots::know_program`]).
    pub fn know_program(&mut self, path: &Path) -> Option<TlsSlot> {
        self.ctx_slots.know_program(path)
    }

    /// Optional probes the kernel refused (left out, see `LoadOptions`).
    pub fn attach_failures(&self) -> u32 {
        self.attach_failures
    }

    /// Processes in the PID set now (added, or followed at fork), not
    /// counting a spawner.
    pub fn traced_count(&self) -> usize {
        self.pids
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, e)| e.reason != agent_ebpf::PID_REASON_SPAWNER)
            .count()
    }

    /// Every process in the PID set with the reason it is there, but a
    /// spawner: added by the agent ([`PID_REASON_USER`]) or followed at
    /// fork by the kernel ([`agent_ebpf::PID_REASON_FORK`]).
    pub fn members(&self) -> Vec<(u32, u32)> {
        self.pids
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, e)| e.reason != agent_ebpf::PID_REASON_SPAWNER)
            .map(|(pid, e)| (pid, e.reason))
            .collect()
    }

    /// Whether the process is in the PID set (added, or followed at fork).
    pub fn has_pid(&self, pid: u32) -> bool {
        self.pids.get(&pid, 0).is_ok()
    }

    /// Adds a process to the PID set and looks for its thread context.
    pub fn add_pid(&mut self, pid: u32) -> Result<(), LoadError> {
        self.join_pid(pid)?;
        self.track_thread_ctx(pid);
        Ok(())
    }

    /// Adds a process to the PID set, nothing more: the caller checks it is
    /// still the process it meant (see `targets`).
    pub fn join_pid(&mut self, pid: u32) -> Result<(), LoadError> {
        self.insert_pid(pid, PID_REASON_USER)
    }

    fn insert_pid(&mut self, pid: u32, reason: u32) -> Result<(), LoadError> {
        self.pids
            .insert(pid, PidEntry { reason, _pad: 0 }, 0)
            .map_err(map_err(maps::PIDS))?;
        self.update_hint(pid, |slot| {
            agent_ebpf::pid_hint_after_insert(slot, pid, reason)
        })
    }

    /// Rewrites the PID-hint slot of `pid` from its current value. An
    /// unchanged value is not written back: writing "absent" (0) over a slot
    /// the kernel filled meanwhile would hide a member (see `filter.rs`).
    fn update_hint(&mut self, pid: u32, value: impl FnOnce(u64) -> u64) -> Result<(), LoadError> {
        let index = pid & (PID_HINT_SLOTS - 1);
        let slot = self
            .pid_hints
            .get(&index, 0)
            .map_err(map_err(maps::PID_HINTS))?;
        let new = value(slot);
        if new == slot {
            return Ok(());
        }
        self.pid_hints
            .set(index, new, 0)
            .map_err(map_err(maps::PID_HINTS))
    }

    /// Removes a process from the PID set (no error if absent). Its hint
    /// turns to "look it up", as the kernel's own removals do.
    pub fn remove_pid(&mut self, pid: u32) {
        let _ = self.pids.remove(&pid);
        self.ctx_slots.forget(pid);
        let _ = self.update_hint(pid, |slot| {
            if slot == 0 {
                0
            } else {
                agent_ebpf::PID_HINT_SHARED
            }
        });
    }

    /// The kernel's counters, each summed over the CPUs.
    pub fn kernel_counters(&self) -> Result<KernelCounters, LoadError> {
        let mut sums = KernelCounters::default();
        for (slot, sum) in sums.0.iter_mut().enumerate() {
            let values = self
                .counters
                .get(&(slot as u32), 0)
                .map_err(map_err(maps::COUNTERS))?;
            *sum = values.iter().sum();
        }
        Ok(sums)
    }
}

/// What the programs need from the kernel and the agent's own placement,
/// checked up front for a clear error instead of a verifier message.
fn preflight() -> Result<(), LoadError> {
    let release = crate::host::procfs::kernel_release();
    if crate::host::procfs::kernel_version(&release).is_some_and(|v| v < (5, 18)) {
        return Err(LoadError::KernelTooOld(release));
    }
    if crate::host::procfs::in_nested_pid_namespace() {
        return Err(LoadError::PidNamespace);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use agent_ebpf::{
        PID_HINT_SHARED, PID_REASON_FORK, PID_REASON_USER, pid_hint, pid_hint_after_insert,
    };

    #[test]
    fn pid_hints_name_one_process_or_send_to_the_map() {
        let one = pid_hint_after_insert(0, 70_000, PID_REASON_USER);
        assert_eq!(one, pid_hint(70_000, PID_REASON_USER));
        // The same process again (a launched command, first added by the
        // fork hook): its reason is updated in place.
        assert_eq!(
            pid_hint_after_insert(pid_hint(70_000, PID_REASON_FORK), 70_000, PID_REASON_USER),
            one
        );
        // Another process in the same slot (70_000 + 65_536): both are
        // looked up in the map from then on.
        assert_eq!(
            pid_hint_after_insert(one, 135_536, PID_REASON_USER),
            PID_HINT_SHARED
        );
        assert_eq!(
            pid_hint_after_insert(PID_HINT_SHARED, 70_000, PID_REASON_USER),
            PID_HINT_SHARED
        );
    }
}
