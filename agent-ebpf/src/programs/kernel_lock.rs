//! Opt-in (`--kernel-locks`) waits for kernel locks (mutexes, rwsems,
//! spinlocks, rt-mutexes) by the traced threads, from the `lock:` tracepoints.
//! They fire only when a lock is contended, so an uncontended lock costs
//! nothing; both run on the waiting thread, which is what makes its span
//! context readable.
use agent_ebpf::{
    Counter, EventHeader, EventKind, KernelLockWaitEvent, LockContention, LockContentionKey,
    kernel::{LOCK_OWNER_FLAGS, RWSEM_READER_OWNED},
    lock_flags,
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_get_smp_processor_id,
        bpf_ktime_get_ns,
    },
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use super::{
    config, counters, filter, maps::EVENTS, maps::LOCK_CONTENTION, rare::counted, regs, thread_ctx,
};

/// tp_btf/contention_begin(void *lock, unsigned int flags): the current
/// thread is about to spin or sleep for `lock`. A mutex reports twice (spin,
/// then sleep): the wait starts at the first.
#[btf_tracepoint(function = "contention_begin")]
pub fn contention_begin(ctx: BtfTracePointContext) -> u32 {
    try_contention_begin(&ctx);
    0
}

#[inline(always)]
fn try_contention_begin(ctx: &BtfTracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !filter::traced(tgid) {
        return;
    }
    let lock: u64 = ctx.arg(0);
    let flags: u32 = ctx.arg(1);
    let key = LockContentionKey {
        lock,
        tid: pid_tgid as u32,
        _pad: 0,
    };
    if let Some(open) = LOCK_CONTENTION.get_ptr_mut(key) {
        // SAFETY: a pointer into a map value, valid for this program run.
        unsafe { (*open).flags |= flags };
        return;
    }
    // SAFETY: plain helper calls.
    let (begin_ns, task) = unsafe { (bpf_ktime_get_ns(), bpf_get_current_task_btf()) };
    let mut wait = LockContention {
        begin_ns,
        flags,
        ctx: thread_ctx::of_current(task.cast_const().cast(), tgid),
        ..LockContention::default()
    };
    if let Some(owner) = owner_of(lock, flags) {
        let cfg = config::get();
        wait.owner_tid = regs::read_kernel_u32(owner + u64::from(cfg.task_pid_off)).unwrap_or(0);
        wait.owner_pid = regs::read_kernel_u32(owner + u64::from(cfg.task_tgid_off)).unwrap_or(0);
        wait.owner_comm =
            regs::read_kernel(owner + u64::from(cfg.task_comm_off)).unwrap_or([0; 16]);
    }
    if LOCK_CONTENTION.insert(key, wait, 0).is_err() {
        counted!(
            Counter::KernelLocksFull,
            "kernel lock wait map full: a wait lost ({} so far on CPU {})"
        );
    }
}

/// The task holding `lock`, for the lock types that record one: a mutex,
/// or an rwsem held for writing.
#[inline(always)]
fn owner_of(lock: u64, flags: u32) -> Option<u64> {
    let cfg = config::get();
    let word = if flags & lock_flags::MUTEX != 0 {
        regs::read_kernel_u64(lock + u64::from(cfg.mutex_owner_off))?
    } else if flags & (lock_flags::SPIN | lock_flags::RT | lock_flags::PERCPU) == 0
        && flags & (lock_flags::READ | lock_flags::WRITE) != 0
    {
        let word = regs::read_kernel_u64(lock + u64::from(cfg.rwsem_owner_off))?;
        if word & RWSEM_READER_OWNED != 0 {
            return None;
        }
        word
    } else {
        return None;
    };
    let owner = word & !LOCK_OWNER_FLAGS;
    (owner != 0).then_some(owner)
}

/// tp_btf/contention_end(void *lock, int ret): the current thread has the
/// lock (ret 0) or gave up (an error).
#[btf_tracepoint(function = "contention_end")]
pub fn contention_end(ctx: BtfTracePointContext) -> u32 {
    try_contention_end(&ctx);
    0
}

#[inline(always)]
fn try_contention_end(ctx: &BtfTracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let lock: u64 = ctx.arg(0);
    let key = LockContentionKey {
        lock,
        tid: pid_tgid as u32,
        _pad: 0,
    };
    let Some(open) = LOCK_CONTENTION.get_ptr(key) else {
        return;
    };
    // SAFETY: a pointer into a map value, valid for this program run.
    let wait = unsafe { *open };
    let _ = LOCK_CONTENTION.remove(key);
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    if now.saturating_sub(wait.begin_ns) < config::get().min_wait_ns {
        counters::bump(Counter::KernelLocksBelowMin);
        return;
    }
    let ret: i64 = ctx.arg(1);
    let Some(mut entry) = EVENTS.reserve::<KernelLockWaitEvent>(0) else {
        counted!(
            Counter::RingbufFull,
            "event ring full: an event lost ({} so far on CPU {})"
        );
        return;
    };
    // SAFETY: plain helper call.
    let task = unsafe { bpf_get_current_task_btf() };
    entry.write(KernelLockWaitEvent {
        header: EventHeader {
            kind: EventKind::KernelLockWait as u32,
            // SAFETY: plain helper call.
            cpu: unsafe { bpf_get_smp_processor_id() },
            ts_ns: now,
            pid: (pid_tgid >> 32) as u32,
            tid: pid_tgid as u32,
        },
        lock,
        ret: ret as i32,
        _pad: 0,
        comm: regs::trusted_task_comm(task.cast_const().cast()),
        wait,
    });
    entry.submit(super::maps::submit_flags());
}
