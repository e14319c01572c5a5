//! Timer callbacks: a futex timeout (hrtimer_sleeper) or a timer signal
//! (itimer, POSIX timer) wakes its task from an hrtimer callback, in
//! interrupt context, where `current` is whatever task was interrupted. A
//! per-CPU flag marks those callbacks so the wake is not blamed on it.
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use super::maps::IN_HRTIMER;

#[inline(always)]
fn set(value: u32) {
    if let Some(flag) = IN_HRTIMER.get_ptr_mut(0) {
        // SAFETY: per-CPU slot; hrtimer callbacks on one CPU do not nest.
        unsafe { *flag = value };
    }
}

/// Whether this CPU is running an hrtimer callback.
#[inline(always)]
pub fn in_hrtimer() -> bool {
    // SAFETY: per-CPU slot, written only by this CPU.
    IN_HRTIMER
        .get_ptr(0)
        .is_some_and(|flag| unsafe { *flag } != 0)
}

/// tp_btf/hrtimer_expire_entry(struct hrtimer *, ktime_t *now): runs right
/// before a callback, with interrupts off on this CPU.
#[btf_tracepoint(function = "hrtimer_expire_entry")]
pub fn hrtimer_expire_entry(_ctx: BtfTracePointContext) -> u32 {
    set(1);
    0
}

/// tp_btf/hrtimer_expire_exit(struct hrtimer *): right after it.
#[btf_tracepoint(function = "hrtimer_expire_exit")]
pub fn hrtimer_expire_exit(_ctx: BtfTracePointContext) -> u32 {
    set(0);
    0
}
