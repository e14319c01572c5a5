//! Per-CPU counters: nothing is dropped without being counted.
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use agent_ebpf::Counter;

use super::maps::COUNTERS;

#[inline(always)]
pub fn bump(counter: Counter) {
    let _ = bump_slot(counter);
}

/// Counts one and returns the slot, for [`super::rare::counted`] to read.
#[inline(always)]
pub fn bump_slot(counter: Counter) -> Option<*mut u64> {
    let slot = COUNTERS.get_ptr_mut(counter as u32)?;
    // Atomic even though per-CPU: uprobe programs can be preempted on
    // the same CPU (PREEMPT kernels) mid-update.
    // SAFETY: a per-CPU array slot lives as long as the map.
    let _ = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(slot, 1) };
    Some(slot)
}
