//! A cheap "might this thread have an open wait?" test, so the two hooks
//! that run for every context switch and wake-up on the machine (and for
//! every `sched_yield` of a traced process) skip the task-storage lookup
//! for the threads that are not in a wait: an inlined array load instead of
//! a helper call.
//!
//! Slot `tid % OPEN_WAIT_SLOTS` counts the open waits of the threads that
//! share it. It is raised when a wait opens and lowered exactly when that
//! wait's state goes back to closed, so a zero slot proves there is none. A
//! non-zero one only sends the caller to the storage, which is always right.
//! Ordering: a wait opens in the sleeper's sched_switch, before the
//! scheduler releases the task (`on_cpu`), and every wake-up or switch-in
//! of the task comes after that release, so it sees the raise.
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use agent_ebpf::OPEN_WAIT_SLOTS;

use super::maps::OPEN_WAITS;

#[inline(always)]
fn add(tid: u32, delta: u32) {
    if let Some(slot) = OPEN_WAITS.get_ptr_mut(tid & (OPEN_WAIT_SLOTS - 1)) {
        // SAFETY: an array slot lives as long as the map; threads on other
        // CPUs share slots, hence the atomic add.
        let _ = unsafe { atomic_xadd::<u32, u32, { AtomicOrdering::Relaxed }>(slot, delta) };
    }
}

/// A wait of thread `tid` has opened.
#[inline(always)]
pub fn opened(tid: u32) {
    add(tid, 1);
}

/// A wait of thread `tid` has closed (or was dropped).
#[inline(always)]
pub fn closed(tid: u32) {
    add(tid, u32::MAX);
}

/// False only when thread `tid` certainly has no open wait.
#[inline(always)]
pub fn maybe(tid: u32) -> bool {
    OPEN_WAITS
        .get_ptr(tid & (OPEN_WAIT_SLOTS - 1))
        // SAFETY: an array slot lives as long as the map.
        .is_some_and(|slot| unsafe { core::ptr::read_volatile(slot) } != 0)
}
