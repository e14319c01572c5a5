//! Which processes are traced: a bounded set of tgids, or all.
use agent_ebpf::{PID_HINT_SLOTS, PID_REASON_FORK, PID_REASON_SPAWNER, PidEntry};

use super::{
    config,
    maps::{PID_HINTS, PIDS},
};

/// False means the tgid is certainly not in the set (an inlined array load
/// instead of a hash lookup, for the common untraced case).
#[inline(always)]
fn may_be_in_set(tgid: u32) -> bool {
    match PID_HINTS.get_ptr(tgid & (PID_HINT_SLOTS - 1)) {
        // SAFETY: an array slot lives as long as the map.
        Some(slot) => (unsafe { core::ptr::read_volatile(slot) }) != 0,
        None => true,
    }
}

/// Whether the process's waits are traced.
#[inline(always)]
pub fn traced(tgid: u32) -> bool {
    if config::get().trace_all == 0 && !may_be_in_set(tgid) {
        return false;
    }
    match PIDS.get_ptr(tgid) {
        // SAFETY: a pointer into a map value, valid for this program run.
        Some(entry) => (unsafe { (*entry).reason }) != PID_REASON_SPAWNER,
        None => config::get().trace_all != 0,
    }
}

/// Whether processes it forks join the set (traced ones and the spawner).
#[inline(always)]
pub fn followed(tgid: u32) -> bool {
    may_be_in_set(tgid) && PIDS.get_ptr(tgid).is_some()
}

/// Adds a forked process; false when the map is full.
#[inline(always)]
pub fn add_forked(tgid: u32) -> bool {
    let entry = PidEntry {
        reason: PID_REASON_FORK,
        _pad: 0,
    };
    if PIDS.insert(tgid, entry, 0).is_err() {
        return false;
    }
    if let Some(slot) = PID_HINTS.get_ptr_mut(tgid & (PID_HINT_SLOTS - 1)) {
        // A plain store: any non-zero value marks the slot, and hints are
        // never cleared (a stale one only costs a hash lookup).
        // SAFETY: an array slot lives as long as the map.
        unsafe { core::ptr::write_volatile(slot, 1) };
    }
    true
}

/// Drops a finished process from the set (its hint stays; harmless). The
/// agent itself, as a spawner, stays.
#[inline(always)]
pub fn remove(tgid: u32) {
    // SAFETY: a pointer into a map value, valid for this program run.
    let spawner = PIDS
        .get_ptr(tgid)
        .is_some_and(|e| unsafe { (*e).reason } == PID_REASON_SPAWNER);
    if !spawner {
        let _ = PIDS.remove(tgid);
    }
}
