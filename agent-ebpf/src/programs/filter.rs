//! Which processes are traced: a bounded set of tgids, or all.
use agent_ebpf::{
    PID_HINT_SHARED, PID_HINT_SLOTS, PID_REASON_FORK, PID_REASON_SPAWNER, PidEntry,
    pid_hint_after_insert,
};

use super::{
    config,
    maps::{PID_HINTS, PIDS},
};

/// What the hint array says about a process.
enum Hint {
    /// Certainly not in the set.
    Absent,
    /// In the set with this reason.
    Exact(u32),
    /// Ask the hash map.
    Lookup,
}

#[inline(always)]
fn hint(tgid: u32) -> Hint {
    let Some(slot) = PID_HINTS.get_ptr(tgid & (PID_HINT_SLOTS - 1)) else {
        return Hint::Lookup;
    };
    // SAFETY: an array slot lives as long as the map.
    match unsafe { core::ptr::read_volatile(slot) } {
        0 => Hint::Absent,
        PID_HINT_SHARED => Hint::Lookup,
        v if v as u32 == tgid => Hint::Exact((v >> 32) as u32),
        _ => Hint::Lookup,
    }
}

#[inline(always)]
fn set_hint(tgid: u32, value: impl FnOnce(u64) -> u64) {
    if let Some(slot) = PID_HINTS.get_ptr_mut(tgid & (PID_HINT_SLOTS - 1)) {
        // SAFETY: an array slot lives as long as the map. Two CPUs (or a
        // CPU and the agent) racing on one slot can at worst leave a value
        // that sends lookups to the hash map, which is always right, as
        // long as no one writes "absent" (0) over a slot that was read as 0:
        // an unchanged value is not written back.
        unsafe {
            let old = core::ptr::read_volatile(slot);
            let new = value(old);
            if new != old {
                core::ptr::write_volatile(slot, new);
            }
        }
    }
}

/// The reason a process is in the set, if it is (an inlined array load for
/// the common cases, a hash lookup otherwise).
#[inline(always)]
fn reason(tgid: u32) -> Option<u32> {
    match hint(tgid) {
        Hint::Absent => None,
        Hint::Exact(reason) => Some(reason),
        // SAFETY: a pointer into a map value, valid for this program run.
        Hint::Lookup => PIDS.get_ptr(tgid).map(|e| unsafe { (*e).reason }),
    }
}

/// Whether the process's waits are traced.
#[inline(always)]
pub fn traced(tgid: u32) -> bool {
    match reason(tgid) {
        Some(reason) => reason != PID_REASON_SPAWNER,
        None => config::get().trace_all != 0,
    }
}

/// Whether processes it forks join the set (traced ones and the spawner).
#[inline(always)]
pub fn followed(tgid: u32) -> bool {
    reason(tgid).is_some()
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
    set_hint(tgid, |slot| {
        pid_hint_after_insert(slot, tgid, PID_REASON_FORK)
    });
    true
}

/// Drops a finished process from the set. The agent itself, as a spawner,
/// stays. The map is asked, not the hint: the agent writes an entry before
/// its hint, and a process exiting in between must still leave. Its hint
/// turns to "look it up", so a later process reusing the tgid is not taken
/// for it; other processes' hints in the same slot are left alone.
#[inline(always)]
pub fn remove(tgid: u32) {
    // SAFETY: a pointer into a map value, valid for this program run.
    let removed = match PIDS.get_ptr(tgid).map(|e| unsafe { (*e).reason }) {
        Some(PID_REASON_SPAWNER) => return,
        Some(_) => PIDS.remove(tgid).is_ok(),
        None => false,
    };
    set_hint(tgid, |slot| {
        if slot == 0 || (!removed && slot as u32 != tgid) {
            slot
        } else {
            PID_HINT_SHARED
        }
    });
}
