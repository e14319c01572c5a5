//! Where traced processes keep their OTEP 4947 thread context: found in
//! their executable or a shared library, and told to the kernel side, which
//! reads each waiter's and waker's context as the wait happens. Processes
//! without a slot yet are looked at again, less and less often, and files
//! known to define none are not read again.
use std::{
    collections::{HashMap as StdHashMap, HashSet},
    path::Path,
    time::{Duration, Instant},
};

use agent_ebpf::FileKey;
use aya::maps::{Array, HashMap, MapData};

use crate::{
    host::procfs,
    kernel::thread_ctx::{self, LibraryCtx, TlsSlot},
};

/// How soon processes without a thread-context slot are looked at again;
/// the interval doubles up to [`CTX_RETRY_MAX`].
const CTX_RETRY: Duration = Duration::from_secs(2);
const CTX_RETRY_MAX: Duration = Duration::from_secs(60);
/// Files remembered as defining no thread-context variable.
const MAX_FILES_WITHOUT_CTX: usize = 16_384;

/// The kernel's slot maps and what user space remembers about the search.
pub struct CtxSlots {
    /// tgid -> OTEP 4947 thread-context slot offset from fsbase.
    by_pid: HashMap<MapData, u32, i64>,
    /// Executable (inode, device) -> slot offset, applied at exec.
    by_file: HashMap<MapData, FileKey, i64>,
    /// Set to 1 with the first slot (see the ABI).
    any: Array<MapData, u32>,
    /// Traced processes without a slot yet: when they were last looked at,
    /// and how long until the next look (doubling, see [`CTX_RETRY`]).
    missing: StdHashMap<u32, (Instant, Duration)>,
    /// Executables and libraries already read that do not define the
    /// variable: the periodic look does not read them again.
    files_without: HashSet<FileKey>,
}

impl CtxSlots {
    pub fn new(
        by_pid: HashMap<MapData, u32, i64>,
        by_file: HashMap<MapData, FileKey, i64>,
        any: Array<MapData, u32>,
    ) -> Self {
        Self {
            by_pid,
            by_file,
            any,
            missing: StdHashMap::new(),
            files_without: HashSet::new(),
        }
    }

    /// Finds where `pid` publishes OTEP 4947 thread context (its executable's
    /// `otel_thread_ctx_v1`) and tells the kernel side, which then reads
    /// each waiter's and waker's context as the wait happens. Called for
    /// every traced process at start and again after it calls exec. A
    /// process that publishes none, or is gone, simply has no context.
    pub fn track(&mut self, pid: u32) -> Option<TlsSlot> {
        let exe = self.know_program(Path::new(&format!("/proc/{pid}/exe")));
        let Some(slot) = exe.or_else(|| self.library_slot(pid)) else {
            // Perhaps a library that publishes it is not loaded yet, or not
            // used yet: look again from time to time while it runs, less
            // and less often (a node agent may trace every process).
            let next = self
                .missing
                .get(&pid)
                .map_or(CTX_RETRY, |&(_, after)| (after * 2).min(CTX_RETRY_MAX));
            self.missing.insert(pid, (Instant::now(), next));
            return None;
        };
        self.missing.remove(&pid);
        let inserted = self
            .by_pid
            .insert(pid, slot.tp_offset, 0)
            .and_then(|()| self.any.set(0, 1, 0));
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
    pub fn retry(&mut self) {
        let due: Vec<u32> = self
            .missing
            .iter()
            .filter(|(_, (at, after))| at.elapsed() >= *after)
            .map(|(&pid, _)| pid)
            .collect();
        for pid in due {
            if procfs::is_running(pid) {
                self.track(pid);
            } else {
                self.missing.remove(&pid);
            }
        }
    }

    /// Remembers a file that defines no thread-context variable. The set
    /// is bounded: a node agent sees new files for months (every new image
    /// brings some); when full it starts over, costing one more read each.
    fn note_without_ctx(&mut self, key: Option<FileKey>) {
        if self.files_without.len() >= MAX_FILES_WITHOUT_CTX {
            self.files_without.clear();
        }
        self.files_without.extend(key);
    }

    /// The slot in one of the shared libraries `pid` has mapped, if any.
    /// Libraries already seen not to define the variable are not read again.
    fn library_slot(&mut self, pid: u32) -> Option<TlsSlot> {
        for m in procfs::file_mappings(pid) {
            // map_files opens the very file mapped, whatever mount namespace
            // or later rename, but needs CAP_CHECKPOINT_RESTORE (or
            // CAP_SYS_ADMIN), which a node agent drops or never has; the
            // path through the process's root needs only what it keeps.
            let map_file = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
            let path = match thread_ctx::key_of(Path::new(&map_file)) {
                Ok(_) => map_file,
                Err(_) => format!("/proc/{pid}/root{}", m.path),
            };
            let key = thread_ctx::key_of(Path::new(&path)).ok();
            if key.is_some_and(|k| self.files_without.contains(&k)) {
                continue;
            }
            match thread_ctx::find_in_library(pid, Path::new(&path), m.start) {
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
        let key = thread_ctx::key_of(path);
        if key.as_ref().is_ok_and(|k| self.files_without.contains(k)) {
            return None;
        }
        let slot = match thread_ctx::find_in_file(path) {
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
                thread_ctx::SYMBOL
            );
        }
        let known = match key {
            Ok(key) => self.by_file.insert(key, slot.tp_offset, 0),
            Err(err) => {
                tracing::debug!(path = %path.display(), %err, "stat");
                Ok(())
            }
        };
        match known.and_then(|()| self.any.set(0, 1, 0)) {
            Ok(()) => Some(slot),
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "cannot record a thread-context slot");
                None
            }
        }
    }

    /// Forgets a process that left the PID set.
    pub fn forget(&mut self, pid: u32) {
        let _ = self.by_pid.remove(&pid);
        self.missing.remove(&pid);
    }
}
