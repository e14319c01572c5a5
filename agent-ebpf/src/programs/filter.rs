//! Which processes are traced: a bounded set of tgids, or all.
use agent_ebpf::{PID_REASON_FORK, PID_REASON_SPAWNER, PidEntry};

use super::{config, maps::PIDS};

/// Whether the process's waits are traced.
#[inline(always)]
pub fn traced(tgid: u32) -> bool {
    match PIDS.get_ptr(tgid) {
        // SAFETY: a pointer into a map value, valid for this program run.
        Some(entry) => (unsafe { (*entry).reason }) != PID_REASON_SPAWNER,
        None => config::get().trace_all != 0,
    }
}

/// Whether processes it forks join the set (traced ones and the spawner).
#[inline(always)]
pub fn followed(tgid: u32) -> bool {
    PIDS.get_ptr(tgid).is_some()
}

/// Adds a forked process; false when the map is full.
#[inline(always)]
pub fn add_forked(tgid: u32) -> bool {
    let entry = PidEntry {
        reason: PID_REASON_FORK,
        _pad: 0,
    };
    PIDS.insert(tgid, entry, 0).is_ok()
}
