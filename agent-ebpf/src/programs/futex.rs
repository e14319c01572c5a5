//! Futex waits, seen only when they block: the scheduler tells us when a
//! thread goes off CPU inside a futex wait syscall, who wakes it, and when
//! it runs again. Calls that do not block cost nothing.
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use agent_ebpf::{
    Counter, EventHeader, EventKind, FutexWaitEvent, Outcome, WAIT_HINT_SLOTS, WaitState, futex_op,
    syscalls, wait_flags,
};
use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
};

use super::{
    config, counters, filter,
    maps::{EVENTS, WAIT_HINTS, WAITS},
    regs::{self, Syscall},
};

/// What a blocking futex syscall waits on.
struct WaitTarget {
    uaddr: u64,
    op: u32,
    val: u32,
    flags: u32,
}

/// Decodes the saved syscall of a task going to sleep; None when it is not
/// a futex wait.
#[inline(always)]
fn wait_target(sc: &Syscall) -> Option<WaitTarget> {
    let [a0, a1, a2, a3, a4, _] = sc.args;
    let timeout_flag = |t: u64| if t != 0 { wait_flags::HAS_TIMEOUT } else { 0 };
    match sc.nr as u32 {
        syscalls::FUTEX if sc.nr >> 32 == 0 => {
            let op = a1 as u32;
            match op & futex_op::CMD_MASK {
                futex_op::WAIT | futex_op::WAIT_BITSET | futex_op::WAIT_REQUEUE_PI => {
                    let val = a2 as u32;
                    let shape = if val == 2 { wait_flags::LOCK_SHAPED } else { 0 };
                    Some(WaitTarget {
                        uaddr: a0,
                        op,
                        val,
                        flags: timeout_flag(a3) | shape,
                    })
                }
                futex_op::LOCK_PI | futex_op::LOCK_PI2 => Some(WaitTarget {
                    uaddr: a0,
                    op,
                    val: 0,
                    flags: timeout_flag(a3) | wait_flags::PI,
                }),
                _ => None,
            }
        }
        // futex_wait(uaddr, val, mask, flags, timeout, clockid)
        syscalls::FUTEX_WAIT if sc.nr >> 32 == 0 => {
            let val = a1 as u32;
            let shape = if val == 2 { wait_flags::LOCK_SHAPED } else { 0 };
            Some(WaitTarget {
                uaddr: a0,
                op: a3 as u32,
                val,
                flags: timeout_flag(a4) | shape,
            })
        }
        // futex_waitv(waiters, nr_futexes, flags, timeout, clockid): the
        // first `struct futex_waitv { u64 val; u64 uaddr; u32 flags; u32 _; }`
        // names the wait.
        syscalls::FUTEX_WAITV if sc.nr >> 32 == 0 => {
            let val = regs::read_user_u64(a0).unwrap_or(0) as u32;
            let uaddr = regs::read_user_u64(a0 + 8).unwrap_or(0);
            Some(WaitTarget {
                uaddr,
                op: a2 as u32,
                val,
                flags: timeout_flag(a3) | wait_flags::WAITV,
            })
        }
        _ => None,
    }
}

/// Adds `delta` (wrapping) to the hint slot of `tid`.
#[inline(always)]
fn hint_add(tid: u32, delta: u64) {
    if let Some(slot) = WAIT_HINTS.get_ptr_mut(tid & (WAIT_HINT_SLOTS - 1)) {
        // SAFETY: an array slot lives as long as the map; concurrent updates
        // from other CPUs are atomic adds too.
        let _ = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(slot, delta) };
    }
}

/// Cheap pre-check: false means `tid` is certainly not in a tracked wait.
#[inline(always)]
fn may_be_waiting(tid: u32) -> bool {
    match WAIT_HINTS.get_ptr(tid & (WAIT_HINT_SLOTS - 1)) {
        // SAFETY: an array slot lives as long as the map.
        Some(slot) => (unsafe { core::ptr::read_volatile(slot) }) != 0,
        None => true,
    }
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_ktime_get_ns() }
}

/// `prev` (the current task) is going off CPU in a sleeping state.
#[inline(always)]
pub fn on_block(prev: *mut core::ffi::c_void) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !filter::traced(tgid) {
        return;
    }
    let Some(sc) = regs::syscall_of(prev) else {
        return;
    };
    let Some(target) = wait_target(&sc) else {
        return;
    };
    let mut flags = target.flags;
    // The holder, read while the waiter's memory is current: a glibc
    // pthread_mutex_t keeps its owner's tid in `__owner` (int at offset 8);
    // a PI futex word holds the owner's tid itself. User space decides
    // whether the value names a thread of this process.
    let owner = if flags & wait_flags::PI != 0 {
        regs::read_user_u32(target.uaddr).map(|w| w & futex_op::FUTEX_TID_MASK)
    } else if flags & wait_flags::LOCK_SHAPED != 0 {
        regs::read_user_u32(target.uaddr + 8)
    } else {
        None
    };
    let word_owner = match owner {
        Some(o) => {
            flags |= wait_flags::OWNER_READ;
            o
        }
        None => 0,
    };
    let state = WaitState {
        block_ns: now(),
        wake_ns: 0,
        uaddr: target.uaddr,
        syscall: sc.nr as u32,
        op: target.op,
        val: target.val,
        word_owner,
        waker_pid: 0,
        waker_tid: 0,
        outcome: Outcome::Unknown as u32,
        flags,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        waker_comm: [0; 16],
    };
    counters::bump(Counter::WaitsSeen);
    let tid = pid_tgid as u32;
    let fresh = WAITS.get_ptr(tid).is_none();
    if WAITS.insert(tid, state, 0).is_err() {
        counters::bump(Counter::WaitsFull);
    } else if fresh {
        hint_add(tid, 1);
    }
}

/// `task` is being woken by the current context (sched_waking runs in the
/// waker's context).
#[inline(always)]
pub fn on_waking(task: *mut core::ffi::c_void) {
    let tid = regs::trusted_task_tid(task.cast());
    if !may_be_waiting(tid) {
        return;
    }
    let Some(state) = WAITS.get_ptr_mut(tid) else {
        return;
    };
    // SAFETY: a pointer into a map value, valid for this program run.
    let state = unsafe { &mut *state };
    if state.wake_ns != 0 {
        return;
    }
    state.wake_ns = now();
    let pid_tgid = bpf_get_current_pid_tgid();
    let waker = || ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if regs::task_signal_pending(task as u64) {
        state.outcome = Outcome::Interrupted as u32;
        (state.waker_pid, state.waker_tid) = waker();
        state.waker_comm = bpf_get_current_comm().unwrap_or([0; 16]);
        return;
    }
    // SAFETY: the current task is always a valid, trusted task pointer.
    let current = unsafe { aya_ebpf::helpers::bpf_get_current_task_btf() };
    let nr = match regs::syscall_of(current.cast()) {
        Some(sc) => {
            let nr = sc.nr as u32;
            let futex_call = sc.nr >> 32 == 0
                && matches!(
                    nr,
                    syscalls::FUTEX | syscalls::FUTEX_WAKE | syscalls::FUTEX_REQUEUE
                );
            // futex(2) names a second word (requeue, wake_op) in its 5th arg.
            let names_word = sc.args[0] == state.uaddr
                || (nr == syscalls::FUTEX && sc.args[4] == state.uaddr)
                || state.flags & wait_flags::WAITV != 0;
            if futex_call && names_word {
                state.outcome = Outcome::Woken as u32;
                state.flags |= wait_flags::WAKER_ADDR_MATCH;
                (state.waker_pid, state.waker_tid) = waker();
                state.waker_comm = bpf_get_current_comm().unwrap_or([0; 16]);
                return;
            }
            nr
        }
        None => u32::MAX,
    };
    if matches!(nr, syscalls::EXIT | syscalls::EXIT_GROUP) {
        // An exiting thread wakes its clear_child_tid word (pthread_join)
        // and its robust futexes.
        state.outcome = Outcome::Woken as u32;
        state.flags |= wait_flags::WAKER_EXITING;
        (state.waker_pid, state.waker_tid) = waker();
        state.waker_comm = bpf_get_current_comm().unwrap_or([0; 16]);
    } else if state.flags & wait_flags::HAS_TIMEOUT != 0 {
        state.outcome = Outcome::TimedOut as u32;
    }
}

/// `task` is about to run: if it was in a tracked wait, the wait is over.
#[inline(always)]
pub fn on_run(task: *mut core::ffi::c_void) {
    let tid = regs::trusted_task_tid(task.cast());
    if !may_be_waiting(tid) {
        return;
    }
    let Some(state) = WAITS.get_ptr(tid) else {
        return;
    };
    // SAFETY: a pointer into a map value, valid for this program run.
    let state = unsafe { *state };
    if WAITS.remove(tid).is_ok() {
        hint_add(tid, u64::MAX);
    }
    let now = now();
    if now.saturating_sub(state.block_ns) < config::get().min_wait_ns {
        counters::bump(Counter::BelowMinWait);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<FutexWaitEvent>(0) else {
        counters::bump(Counter::RingbufFull);
        return;
    };
    let event = FutexWaitEvent {
        header: EventHeader {
            kind: EventKind::FutexWait as u32,
            // SAFETY: plain helper call.
            cpu: unsafe { bpf_get_smp_processor_id() },
            ts_ns: now,
            pid: regs::task_tgid(task as u64).unwrap_or(0),
            tid,
        },
        wait: state,
    };
    entry.write(event);
    entry.submit(super::maps::submit_flags());
    counters::bump(Counter::Emitted);
}
