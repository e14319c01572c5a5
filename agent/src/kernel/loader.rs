//! Loads the embedded programs with this kernel's offsets, attaches them and
//! hands out the maps the agent uses.
use std::{path::Path, time::Duration};

use agent_ebpf::{FileKey, PID_HINT_SLOTS, PID_REASON_USER, PidEntry, WaitState, globals, maps};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf},
};

use crate::{
    kernel::btf::{BtfError, KernelBtf},
    kernel::caps::{self, CapsError},
    kernel::ebpf_object::EBPF_OBJECT,
    kernel::features::Features,
    kernel::kernel_config,
    kernel::probes::{self, AttachError, AttachPlan},
    kernel::thread_ctx::{LibraryCtx, TlsSlot},
    model::KernelCounters,
};

/// How to load the programs.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub features: Features,
    /// Leave out opt-in probes the kernel refuses instead of failing.
    pub tolerate_optional_probes: bool,
}

/// How soon processes without a thread-context slot are looked at again;
/// the interval doubles up to [`CTX_RETRY_MAX`].
const CTX_RETRY: Duration = Duration::from_secs(2);
const CTX_RETRY_MAX: Duration = Duration::from_secs(60);
/// Files remembered as defining no thread-context variable.
const MAX_FILES_WITHOUT_CTX: usize = 16_384;

/// OBI's default pin path for its trace-context map.
pub const OBI_CTX_MAP: &str = "/sys/fs/bpf/otel/traces_ctx_v1";

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
    /// tgid -> OTEP 4947 thread-context slot offset from fsbase.
    thread_ctx: HashMap<MapData, u32, i64>,
    /// Executable (inode, device) -> slot offset, applied at exec.
    thread_ctx_by_file: HashMap<MapData, FileKey, i64>,
    /// Set to 1 with the first slot (see the ABI).
    thread_ctx_any: Array<MapData, u32>,
    /// Traced processes without a slot yet: when they were last looked at,
    /// and how long until the next look (doubling, see [`CTX_RETRY`]).
    ctx_missing: std::collections::HashMap<u32, (std::time::Instant, Duration)>,
    /// Executables and libraries already read that do not define the
    /// variable: the periodic look does not read them again.
    files_without_ctx: std::collections::HashSet<FileKey>,
    counters: PerCpuArray<MapData, u64>,
    events: Option<RingBuf<MapData>>,
    /// Optional probes left out because the kernel refused them.
    attach_failures: u32,
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
            thread_ctx,
            thread_ctx_by_file,
            thread_ctx_any,
            ctx_missing: std::collections::HashMap::new(),
            files_without_ctx: std::collections::HashSet::new(),
            counters,
            events: Some(events),
            attach_failures: 0,
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

    /// Finds where `pid` publishes OTEP 4947 thread context (its executable's
    /// `otel_thread_ctx_v1`) and tells the kernel side, which then reads
    /// each waiter's and waker's context as the wait happens. Called for
    /// every traced process at start and again after it calls exec. A
    /// process that publishes none, or is gone, simply has no context.
    pub fn track_thread_ctx(&mut self, pid: u32) -> Option<TlsSlot> {
        let exe = self.know_program(Path::new(&format!("/proc/{pid}/exe")));
        let Some(slot) = exe.or_else(|| self.library_slot(pid)) else {
            // Perhaps a library that publishes it is not loaded yet, or not
            // used yet: look again from time to time while it runs, less
            // and less often (a node agent may trace every process).
            let next = self
                .ctx_missing
                .get(&pid)
                .map_or(CTX_RETRY, |&(_, after)| (after * 2).min(CTX_RETRY_MAX));
            self.ctx_missing
                .insert(pid, (std::time::Instant::now(), next));
            return None;
        };
        self.ctx_missing.remove(&pid);
        let inserted = self
            .thread_ctx
            .insert(pid, slot.tp_offset, 0)
            .and_then(|()| self.thread_ctx_any.set(0, 1, 0));
        match inserted {
            Ok(()) => {
                tracing::debug!(pid, tp_offset = slot.tp_offset, "thread context found");
                Some(slot)
            }
            Err(err) => {
                tracing::warn!(pid, %err, "cannot record the thread-context slot");
                None
            }
        }
    }

    /// Looks again, every [`CTX_RETRY`] at most, in the traced processes
    /// where no thread-context slot was found (libraries load late).
    pub fn retry_thread_ctx(&mut self) {
        let due: Vec<u32> = self
            .ctx_missing
            .iter()
            .filter(|(_, (at, after))| at.elapsed() >= *after)
            .map(|(&pid, _)| pid)
            .collect();
        for pid in due {
            if crate::host::procfs::is_running(pid) {
                self.track_thread_ctx(pid);
            } else {
                self.ctx_missing.remove(&pid);
            }
        }
    }

    /// Remembers a file that defines no thread-context variable. The set
    /// is bounded: a node agent sees new files for months (every new image
    /// brings some); when full it starts over, costing one more read each.
    fn note_without_ctx(&mut self, key: Option<FileKey>) {
        if self.files_without_ctx.len() >= MAX_FILES_WITHOUT_CTX {
            self.files_without_ctx.clear();
        }
        self.files_without_ctx.extend(key);
    }

    /// The slot in one of the shared libraries `pid` has mapped, if any.
    /// Libraries already seen not to define the variable are not read again.
    fn library_slot(&mut self, pid: u32) -> Option<TlsSlot> {
        for m in crate::host::procfs::file_mappings(pid) {
            // map_files opens the very file mapped, whatever mount namespace
            // or later rename, but needs CAP_CHECKPOINT_RESTORE (or
            // CAP_SYS_ADMIN), which a node agent drops or never has; the
            // path through the process's root needs only what it keeps.
            let map_file = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
            let path = match crate::kernel::thread_ctx::key_of(Path::new(&map_file)) {
                Ok(_) => map_file,
                Err(_) => format!("/proc/{pid}/root{}", m.path),
            };
            let key = crate::kernel::thread_ctx::key_of(Path::new(&path)).ok();
            if key.is_some_and(|k| self.files_without_ctx.contains(&k)) {
                continue;
            }
            match crate::kernel::thread_ctx::find_in_library(pid, Path::new(&path), m.start) {
                Ok(LibraryCtx::Slot(slot)) => {
                    tracing::debug!(pid, library = %m.path, "thread context in a shared library");
                    return Some(slot);
                }
                Ok(LibraryCtx::NotYet) => {}
                Ok(LibraryCtx::NoVariable) => self.note_without_ctx(key),
                Err(err) => {
                    tracing::trace!(pid, library = %m.path, %err, "not a library to look in");
                }
            }
        }
        None
    }

    /// Looks for the thread-context slot in the program at `path` and, if
    /// it has one, tells the kernel side, so that any traced process that
    /// execs this file gets its slot at exec, before its first instruction
    /// (a launched command is looked at before it is started).
    pub fn know_program(&mut self, path: &Path) -> Option<TlsSlot> {
        let key = crate::kernel::thread_ctx::key_of(path);
        if key
            .as_ref()
            .is_ok_and(|k| self.files_without_ctx.contains(k))
        {
            return None;
        }
        let slot = match crate::kernel::thread_ctx::find_in_file(path) {
            Ok(Some(slot)) => slot,
            Ok(None) => {
                self.note_without_ctx(key.ok());
                return None;
            }
            Err(err) => {
                tracing::debug!(path = %path.display(), %err, "looking for thread context");
                return None;
            }
        };
        if !slot.exported {
            tracing::info!(
                path = %path.display(),
                "{} is not in .dynsym as OTEP 4947 asks; found in .symtab",
                crate::kernel::thread_ctx::SYMBOL
            );
        }
        let known = match key {
            Ok(key) => self.thread_ctx_by_file.insert(key, slot.tp_offset, 0),
            Err(err) => {
                tracing::debug!(path = %path.display(), %err, "stat");
                Ok(())
            }
        };
        match known.and_then(|()| self.thread_ctx_any.set(0, 1, 0)) {
            Ok(()) => Some(slot),
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "cannot record a thread-context slot");
                None
            }
        }
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
        let _ = self.thread_ctx.remove(&pid);
        self.ctx_missing.remove(&pid);
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
