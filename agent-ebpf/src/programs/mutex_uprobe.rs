//! Opt-in (`--mutex-uprobes`) hold times of pthread mutexes, including the
//! uncontended locks the futex path never sees. Attached per traced process,
//! so other processes pay nothing; the default path adds no per-lock cost.
use agent_ebpf::{Counter, EventHeader, EventKind, HeldKey, HeldLock, LockCall, MutexHoldEvent};
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
    },
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};

use super::{
    config, counters, filter,
    maps::{EVENTS, HELD, LOCK_CALLS},
    rare::counted,
};

/// uprobe on libc `pthread_mutex_lock(pthread_mutex_t *)`: remember the call.
#[uprobe]
pub fn mutex_lock_enter(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !filter::traced((pid_tgid >> 32) as u32) {
        return 0;
    }
    let Some(mutex) = ctx.arg::<u64>(0) else {
        return 0;
    };
    // SAFETY: plain helper call.
    let call_ns = unsafe { bpf_ktime_get_ns() };
    if LOCK_CALLS
        .insert(pid_tgid as u32, LockCall { mutex, call_ns }, 0)
        .is_err()
    {
        counted!(
            Counter::HeldFull,
            "mutex hold maps full: a hold lost ({} so far on CPU {})"
        );
    }
    0
}

/// uretprobe on `pthread_mutex_lock`: on success the calling thread holds it.
#[uretprobe]
pub fn mutex_lock_exit(ctx: RetProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let Some(call) = LOCK_CALLS.get_ptr(tid) else {
        return 0;
    };
    // SAFETY: a pointer into a map value, valid for this program run.
    let call = unsafe { *call };
    let _ = LOCK_CALLS.remove(tid);
    if ctx.ret::<i32>() != 0 {
        return 0;
    }
    let key = HeldKey {
        mutex: call.mutex,
        pid: (pid_tgid >> 32) as u32,
        _pad: 0,
    };
    // SAFETY: plain helper call.
    let acquired_ns = unsafe { bpf_ktime_get_ns() };
    let held = HeldLock {
        call_ns: call.call_ns,
        acquired_ns,
        tid,
        _pad: 0,
    };
    if HELD.insert(key, held, 0).is_err() {
        counted!(
            Counter::HeldFull,
            "mutex hold maps full: a hold lost ({} so far on CPU {})"
        );
    }
    0
}

/// uprobe on `pthread_mutex_unlock(pthread_mutex_t *)`: the hold ends.
#[uprobe]
pub fn mutex_unlock_enter(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(mutex) = ctx.arg::<u64>(0) else {
        return 0;
    };
    let key = HeldKey {
        mutex,
        pid: (pid_tgid >> 32) as u32,
        _pad: 0,
    };
    let Some(held) = HELD.get_ptr(key) else {
        return 0;
    };
    // SAFETY: a pointer into a map value, valid for this program run.
    let held = unsafe { *held };
    let _ = HELD.remove(key);
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    if now.saturating_sub(held.acquired_ns) < config::get().min_wait_ns {
        counters::bump(Counter::HoldsBelowMin);
        return 0;
    }
    let Some(mut entry) = EVENTS.reserve::<MutexHoldEvent>(0) else {
        counted!(
            Counter::RingbufFull,
            "event ring full: an event lost ({} so far on CPU {})"
        );
        return 0;
    };
    entry.write(MutexHoldEvent {
        header: EventHeader {
            kind: EventKind::MutexHold as u32,
            // SAFETY: plain helper call.
            cpu: unsafe { bpf_get_smp_processor_id() },
            ts_ns: now,
            pid: key.pid,
            tid: held.tid,
        },
        mutex,
        call_ns: held.call_ns,
        acquired_ns: held.acquired_ns,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    });
    entry.submit(super::maps::submit_flags());

    0
}
