//! Futex waits, seen only when they block: the scheduler tells us when a
//! thread goes off CPU inside a futex wait syscall, who wakes it, and when
//! it runs again. Calls that do not block cost nothing. Socket waits
//! (`socket`) take the same path.
use agent_ebpf::{
    Counter, EventHeader, EventKind, FutexWaitEvent, Outcome, SockAddrs, ThreadCtx, WaitState,
    futex_op, syscalls_x86_64, wait_flags,
};
use aya_ebpf::helpers::{bpf_get_current_task_btf, bpf_get_smp_processor_id, bpf_ktime_get_ns};

use super::{
    config, counters, filter,
    maps::{EVENTS, WAIT_STATE},
    open_waits,
    rare::counted,
    regs::{self, Syscall},
    socket, thread_ctx, timer,
};

/// The time, read at most once per program run: a clock read costs tens of
/// ns in a VM, and one context switch can both open and close a wait.
pub struct Now(u64);

impl Now {
    pub const UNREAD: Self = Self(0);

    #[inline(always)]
    fn get(&mut self) -> u64 {
        if self.0 == 0 {
            self.0 = now();
        }
        self.0
    }
}

/// What a blocking futex (or socket) syscall waits on, named as in
/// [`WaitState`].
struct WaitTarget {
    resource: u64,
    resource2: u64,
    op: u32,
    arg: u32,
    flags: u32,
}

/// Decodes the saved syscall of a task going to sleep; None when it is not
/// a futex wait.
#[inline(always)]
fn wait_target(sc: &Syscall) -> Option<WaitTarget> {
    let [a0, a1, a2, a3, a4, _] = sc.args;
    let timeout_flag = |t: u64| if t != 0 { wait_flags::HAS_TIMEOUT } else { 0 };
    match sc.nr as u32 {
        syscalls_x86_64::FUTEX if sc.nr >> 32 == 0 => {
            let op = a1 as u32;
            match op & futex_op::CMD_MASK {
                cmd @ (futex_op::WAIT | futex_op::WAIT_BITSET | futex_op::WAIT_REQUEUE_PI) => {
                    let val = a2 as u32;
                    let shape = if val == 2 { wait_flags::LOCK_SHAPED } else { 0 };
                    Some(WaitTarget {
                        resource: a0,
                        resource2: if cmd == futex_op::WAIT_REQUEUE_PI {
                            a4
                        } else {
                            0
                        },
                        op,
                        arg: val,
                        flags: timeout_flag(a3) | shape,
                    })
                }
                futex_op::LOCK_PI | futex_op::LOCK_PI2 => Some(WaitTarget {
                    resource: a0,
                    resource2: 0,
                    op,
                    arg: 0,
                    flags: timeout_flag(a3) | wait_flags::PI,
                }),
                _ => None,
            }
        }
        // futex_wait(uaddr, val, mask, flags, timeout, clockid)
        syscalls_x86_64::FUTEX_WAIT if sc.nr >> 32 == 0 => {
            let val = a1 as u32;
            let shape = if val == 2 { wait_flags::LOCK_SHAPED } else { 0 };
            Some(WaitTarget {
                resource: a0,
                resource2: 0,
                op: a3 as u32,
                arg: val,
                flags: timeout_flag(a4) | shape,
            })
        }
        // futex_waitv(waiters, nr_futexes, flags, timeout, clockid): the
        // first `struct futex_waitv { u64 val; u64 uaddr; u32 flags; u32 _; }`
        // names the wait.
        syscalls_x86_64::FUTEX_WAITV if sc.nr >> 32 == 0 => {
            let [val, uaddr] = regs::read_user::<[u64; 2]>(a0).unwrap_or([0, 0]);
            let val = val as u32;
            Some(WaitTarget {
                resource: uaddr,
                resource2: 0,
                op: a2 as u32,
                arg: val,
                flags: timeout_flag(a3) | wait_flags::WAITV,
            })
        }
        _ => None,
    }
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_ktime_get_ns() }
}

/// Reads a glibc `pthread_mutex_t` at a futex word and returns `__owner`
/// if the memory looks like one: `{ int __lock; unsigned __count; int
/// __owner; unsigned __nusers; int __kind; }` with a held mutex's
/// `__nusers >= 1` and a valid `__kind`. Other lock-shaped futexes (a Rust
/// `Mutex<u64>` keeps its payload at +8) fail the check, so a payload that
/// happens to equal a TID is not taken for an owner.
#[inline(always)]
fn glibc_mutex_owner(uaddr: u64) -> Option<u32> {
    /// Kind bits glibc defines: type (0..=3), robust, PI, PP, pshared,
    /// elision, no-elision.
    const KNOWN_KIND_BITS: u32 = 0x3 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x200;
    // One read of `__owner`, `__nusers` and `__kind`.
    let [owner, nusers, kind] = regs::read_user::<[u32; 3]>(uaddr + 8)?;
    (nusers != 0 && kind & !KNOWN_KIND_BITS == 0).then_some(owner)
}

/// `prev` (the current task) is going off CPU in TASK_INTERRUPTIBLE.
#[inline(always)]
pub fn on_block(prev: *mut core::ffi::c_void, clock: &mut Now) {
    let task = prev.cast::<u8>();
    let tgid = regs::trusted_task_tgid(task);
    if !filter::traced(tgid) {
        return;
    }
    // An exiting thread's last sleeps (killed out of a wait, mmap_lock in
    // do_exit) still show the futex syscall in its registers, but it will
    // never run again to close the wait.
    if regs::trusted_task_exiting(task) {
        return;
    }
    let Some(sc) = regs::syscall_of(prev) else {
        return;
    };
    let (target, sock_file) = match wait_target(&sc) {
        Some(target) => (target, 0),
        None => match socket::target(task, &sc) {
            Some(s) => (
                WaitTarget {
                    resource: s.inode,
                    resource2: s.ep,
                    op: 0,
                    arg: s.fd,
                    flags: s.flags,
                },
                s.file,
            ),
            None => return,
        },
    };
    // The line a socket waiter joins: its socket's, or its epoll instance's.
    let line = if target.flags & wait_flags::EPOLL != 0 {
        target.resource2
    } else {
        target.resource
    };
    let tid = regs::trusted_task_tid(task);
    let mut flags = target.flags;
    // The holder, read while the waiter's memory is current: a glibc
    // pthread_mutex_t keeps its owner's tid in `__owner`; a PI futex word
    // holds the owner's tid itself; a socket has its traced waiters in
    // line. User space decides whether the value names a thread of this
    // process.
    let owner = if flags & (wait_flags::SOCKET | wait_flags::EPOLL) != 0 {
        Some(socket::join(line, tid)).filter(|&t| t != 0)
    } else if flags & wait_flags::PI != 0 {
        regs::read_user::<u32>(target.resource).map(|w| w & futex_op::FUTEX_TID_MASK)
    } else if flags & wait_flags::LOCK_SHAPED != 0 {
        glibc_mutex_owner(target.resource)
    } else {
        None
    };
    let owner_tid = match owner {
        Some(o) => {
            flags |= wait_flags::OWNER_READ;
            o
        }
        None => 0,
    };
    let block_ns = clock.get();
    // An epoll sleep is counted once a socket ends it (see `close`).
    if flags & wait_flags::EPOLL == 0 {
        counters::bump(Counter::WaitsSeen);
    }
    let Some(slot) = WAIT_STATE.get_or_create(prev) else {
        if flags & (wait_flags::SOCKET | wait_flags::EPOLL) != 0 {
            socket::leave(line, tid);
        }
        if flags & wait_flags::EPOLL == 0 {
            counted!(
                Counter::WaitsFull,
                "no wait state for a blocking thread (task storage): a wait lost ({} so far on CPU {})"
            );
        }
        return;
    };
    if slot.block_ns != 0 {
        // The thread ran since this wait began, but its switch-in was not
        // seen by sched_switch (rare; see README). Close it at its wake-up
        // rather than lose it; the new wait takes its place in the count.
        let end = if slot.wake_ns != 0 {
            slot.wake_ns
        } else {
            block_ns
        };
        counted!(
            Counter::WaitClosedLate,
            "a thread blocked again with its wait still open, its switch-in unseen ({} so far on CPU {})"
        );
        close(tid, slot, end, wait_flags::ENDED_AT_WAKE);
    } else {
        open_waits::opened(tid);
    }
    // Written in place: the record is too big to build on the 512-byte
    // eBPF stack next to everything else.
    *slot = WaitState {
        block_ns,
        wake_ns: 0,
        resource: target.resource,
        resource2: target.resource2,
        pid: tgid,
        _pad: 0,
        syscall: sc.nr as u32,
        op: target.op,
        arg: target.arg,
        owner_tid,
        waker_pid: 0,
        waker_tid: 0,
        outcome: Outcome::Unknown as u32,
        flags,
        comm: regs::trusted_task_comm(task),
        waker_comm: [0; 16],
        ctx: thread_ctx::of_current(task, tgid),
        waker_ctx: ThreadCtx::default(),
        sock: SockAddrs::default(),
    };
    if sock_file != 0 {
        socket::fill_addrs(target.resource, sock_file, &mut slot.sock);
    }
}

/// Whether the current task's syscall is a futex wake of the waiter's word.
#[inline(always)]
fn woken_by_futex_call(state: &WaitState, sc: &Syscall) -> bool {
    if sc.nr >> 32 != 0 {
        return false;
    }
    let named = |addr: u64| addr != 0 && (addr == state.resource || addr == state.resource2);
    match sc.nr as u32 {
        // futex(2) names a second word (requeue, wake_op) in its 5th arg.
        syscalls_x86_64::FUTEX => {
            named(sc.args[0]) || named(sc.args[4]) || state.flags & wait_flags::WAITV != 0
        }
        syscalls_x86_64::FUTEX_WAKE => named(sc.args[0]) || state.flags & wait_flags::WAITV != 0,
        // futex_requeue(waiters[2], flags, nr_wake, nr_requeue): the words
        // are in the first `struct futex_waitv` (uaddr at +8), in the
        // waker's memory, which is current here.
        syscalls_x86_64::FUTEX_REQUEUE => regs::read_user::<u64>(sc.args[0] + 8).is_some_and(named),
        _ => false,
    }
}

/// Names the current task (`current`) as the waker.
#[inline(always)]
fn set_waker(state: &mut WaitState, current: *const u8) {
    state.waker_pid = regs::trusted_task_tgid(current);
    state.waker_tid = regs::trusted_task_tid(current);
    state.waker_comm = regs::trusted_task_comm(current);
    state.waker_ctx = thread_ctx::of_current(current, state.waker_pid);
}

/// `task` is being woken. sched_waking runs in the waker's context: a
/// thread's futex wake or exit, a signal sender, or a timer interrupt.
#[inline(always)]
pub fn on_waking(task: *mut core::ffi::c_void) {
    // Most wake-ups on the machine are of threads with no open wait.
    if !open_waits::maybe(regs::trusted_task_tid(task.cast())) {
        return;
    }
    let Some(state) = WAIT_STATE.get(task) else {
        return;
    };
    if state.block_ns == 0 || state.wake_ns != 0 {
        return;
    }
    state.wake_ns = now();
    // In a timer interrupt, `current` is whatever task it interrupted.
    if timer::in_hrtimer() {
        state.flags |= wait_flags::TIMER_WAKE;
        state.outcome = if regs::task_signal_pending(task as u64) {
            Outcome::Interrupted
        } else {
            Outcome::TimedOut
        } as u32;
        return;
    }
    // SAFETY: the current task is always a valid, trusted task pointer.
    let current = unsafe { bpf_get_current_task_btf() };
    let current_u8 = current.cast::<u8>().cast_const();
    if state.flags & (wait_flags::SOCKET | wait_flags::EPOLL) != 0 {
        socket_waker(state, task, current.cast());
        return;
    }
    // A futex wake naming the word comes first: a process-wide pending
    // signal must not turn a real wake into an interruption.
    if regs::syscall_of(current.cast()).is_some_and(|sc| woken_by_futex_call(state, &sc)) {
        state.outcome = Outcome::Woken as u32;
        state.flags |= wait_flags::WAKER_ADDR_MATCH;
        set_waker(state, current_u8);
    } else if regs::trusted_task_exiting(current_u8) {
        // An exiting thread wakes its clear_child_tid word (pthread_join)
        // and its robust futexes, whether it called exit or was killed.
        state.outcome = Outcome::Woken as u32;
        state.flags |= wait_flags::WAKER_EXITING;
        set_waker(state, current_u8);
    } else if regs::task_signal_pending(task as u64) {
        state.outcome = Outcome::Interrupted as u32;
        set_waker(state, current_u8);
    } else if state.flags & wait_flags::HAS_TIMEOUT != 0 {
        state.outcome = Outcome::TimedOut as u32;
    }
}

/// Who woke a socket wait: a peer on this machine sending (its own syscall
/// delivers the data, loopback or unix), or a signal. Data from the network
/// arrives in whatever task the interrupt found: no waker is named then.
#[inline(always)]
fn socket_waker(
    state: &mut WaitState,
    task: *mut core::ffi::c_void,
    current: *mut core::ffi::c_void,
) {
    let current_u8 = current.cast::<u8>().cast_const();
    if regs::syscall_of(current).is_some_and(|sc| socket::is_sending(&sc)) {
        state.outcome = Outcome::Woken as u32;
        state.flags |= wait_flags::WAKER_SENDING;
        set_waker(state, current_u8);
    } else if regs::task_signal_pending(task as u64) {
        state.outcome = Outcome::Interrupted as u32;
        set_waker(state, current_u8);
    }
}

/// `task` is exiting: an open wait will never close (the storage goes with
/// the task); count it so the figures add up.
#[inline(always)]
pub fn on_exit(task: *mut core::ffi::c_void) {
    if let Some(state) = WAIT_STATE.get(task)
        && state.block_ns != 0
    {
        let tid = regs::trusted_task_tid(task.cast());
        state.block_ns = 0;
        open_waits::closed(tid);
        if state.flags & wait_flags::EPOLL != 0 {
            // Never counted as a wait: no socket ended it.
            socket::leave(state.resource2, tid);
            return;
        }
        if state.flags & wait_flags::SOCKET != 0 {
            socket::leave(state.resource, tid);
        }
        counters::bump(Counter::ExitedInWait);
    }
}

/// `task` is about to run: if it was in a tracked wait, the wait is over.
#[inline(always)]
pub fn on_run(task: *mut core::ffi::c_void, clock: &mut Now) {
    // Every context switch on the machine comes here, a traced process's
    // sched_yield loop included: the threads not in a wait end at an
    // inlined array load.
    let tid = regs::trusted_task_tid(task.cast());
    if !open_waits::maybe(tid) {
        return;
    }
    let Some(slot) = WAIT_STATE.get(task) else {
        return;
    };
    if slot.block_ns == 0 {
        return;
    }
    close(tid, slot, clock.get(), 0);
    slot.block_ns = 0;
    open_waits::closed(tid);
}

/// Ends thread `tid`'s wait: out of its socket's line, then emitted. An
/// epoll sleep becomes a wait on the socket that ended it, or is dropped
/// (counted) when none did.
#[inline(always)]
fn close(tid: u32, wait: &mut WaitState, end_ns: u64, flags: u32) {
    if wait.flags & wait_flags::EPOLL != 0 {
        let ep = wait.resource2;
        socket::leave(ep, tid);
        // The instance is a kernel pointer: it stays here.
        wait.resource2 = 0;
        let Some((inode, fd, file)) = socket::ready_socket(ep) else {
            counters::bump(Counter::EpollNotSocket);
            return;
        };
        counters::bump(Counter::WaitsSeen);
        wait.resource = inode;
        wait.arg = fd;
        socket::fill_addrs(inode, file, &mut wait.sock);
        wait.flags |= wait_flags::SOCKET;
    } else if wait.flags & wait_flags::SOCKET != 0 {
        socket::leave(wait.resource, tid);
    }
    emit(tid, wait, end_ns, flags);
}

/// Sends thread `tid`'s finished wait (ended at `end_ns`, with `flags` added)
/// to user space, unless it is shorter than `--min-wait`; every outcome is
/// counted. Short waits, the common case, are decided before anything is
/// copied.
#[inline(always)]
fn emit(tid: u32, wait: &WaitState, end_ns: u64, flags: u32) {
    if end_ns.saturating_sub(wait.block_ns) < config::get().min_wait_ns {
        counters::bump(Counter::BelowMinWait);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<FutexWaitEvent>(0) else {
        counted!(
            Counter::RingbufFull,
            "event ring full: an event lost ({} so far on CPU {})"
        );
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at the reserved, exclusively owned record;
    // fields are stored one by one, straight from the wait state, so no
    // copy of the whole event is built on the stack.
    unsafe {
        (*event).header = EventHeader {
            kind: EventKind::FutexWait as u32,
            // SAFETY: plain helper call.
            cpu: bpf_get_smp_processor_id(),
            ts_ns: end_ns,
            pid: wait.pid,
            tid,
        };
        (*event).wait = *wait;
        (*event).wait.flags |= flags;
    }
    entry.submit(super::maps::submit_flags());
}
