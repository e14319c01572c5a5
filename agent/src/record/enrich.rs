//! Turns kernel events into spanlets: epoch time, thread names, and the
//! decision of what kind of wait it was and who held the resource.
use std::hash::{BuildHasher as _, RandomState};

use agent_ebpf::{
    FutexWaitEvent, KernelLockWaitEvent, MutexHoldEvent, Outcome, ThreadCtx, WaitState, ctx_source,
    wait_flags,
};

use crate::{
    host::procfs,
    kernel::clock::EpochClock,
    kernel::decode::{RawEvent, comm_str},
    model::{Names, SocketInfo, SpanContext, Spanlet, SpanletKind, ThreadInfo, WaitOutcome},
};

/// Where enrichment asks about live threads; /proc in production.
pub trait ThreadSource {
    fn is_thread_of(&self, pid: u32, tid: u32) -> bool;
    fn thread_name(&self, pid: u32, tid: u32) -> Option<String>;
    /// The thread's id in its process's PID namespace, when that is not
    /// the agent's.
    fn ns_tid(&self, _pid: u32, _tid: u32) -> Option<u32> {
        None
    }
}

/// The running system.
pub struct Procfs;

impl ThreadSource for Procfs {
    fn is_thread_of(&self, pid: u32, tid: u32) -> bool {
        procfs::is_thread_of(pid, tid)
    }
    fn thread_name(&self, pid: u32, tid: u32) -> Option<String> {
        procfs::thread_name(pid, tid)
    }
    fn ns_tid(&self, pid: u32, tid: u32) -> Option<u32> {
        procfs::thread_ns_tid(pid, tid)
    }
}

/// Enrichment state: the clock offset and the threads named so far.
pub struct Enricher<S> {
    clock: EpochClock,
    source: S,
    /// Thread names (and namespace tids) last written to the capture.
    names: Names,
    /// Threads to write to the capture before the next spanlet.
    new_threads: Vec<ThreadInfo>,
    /// Keys kernel lock addresses, randomly per run: a capture can tell
    /// locks apart without holding kernel addresses (which would undo
    /// KASLR for whoever reads it or receives its export).
    lock_keys: RandomState,
}

impl<S: ThreadSource> Enricher<S> {
    pub fn new(clock: EpochClock, source: S) -> Self {
        Self {
            clock,
            source,
            names: Names::default(),
            new_threads: Vec::new(),
            lock_keys: RandomState::new(),
        }
    }

    /// Threads already known (the snapshot written at capture start).
    pub fn know(&mut self, thread: &ThreadInfo) {
        self.names.insert_thread(thread.clone());
    }

    /// Forgets threads that no longer exist, so a long capture of a
    /// thread-churning process does not grow without bound. A forgotten
    /// thread seen again is simply written again.
    /// Returns the threads forgotten.
    pub fn prune(&mut self) -> Vec<(u32, u32)> {
        let source = &self.source;
        let gone: Vec<(u32, u32)> = self
            .names
            .threads()
            .filter(|&(pid, tid)| !source.is_thread_of(pid, tid))
            .collect();
        for &(pid, tid) in &gone {
            self.names.remove_thread(pid, tid);
        }
        gone
    }

    /// Threads first seen (or renamed) since the last call.
    pub fn take_new_threads(&mut self) -> Vec<ThreadInfo> {
        std::mem::take(&mut self.new_threads)
    }

    fn note_thread(&mut self, pid: u32, tid: u32, seen_name: Option<&str>) {
        if pid == 0 || tid == 0 {
            return;
        }
        let known = self.names.thread_name(pid, tid);
        let seen_name = seen_name.filter(|n| !n.is_empty());
        let name = match (seen_name, known) {
            (Some(n), Some(k)) if n == k => return,
            (Some(n), _) => n.to_owned(),
            (None, Some(_)) => return,
            (None, None) => self
                .source
                .thread_name(pid, tid)
                .unwrap_or_else(|| "?".to_owned()),
        };
        let ns_tid = match known {
            Some(_) => self.names.ns_tid(pid, tid),
            None => self.source.ns_tid(pid, tid),
        };
        let thread = ThreadInfo {
            pid,
            tid,
            name,
            ns_tid,
        };
        self.names.insert_thread(thread.clone());
        self.new_threads.push(thread);
    }

    /// The spanlet an event describes; `None` for events that are not
    /// spanlets (a process exec).
    pub fn enrich(&mut self, event: &RawEvent) -> Option<Spanlet> {
        match event {
            RawEvent::FutexWait(ev) => Some(self.futex_wait(ev)),
            RawEvent::MutexHold(ev) => Some(self.mutex_hold(ev)),
            RawEvent::KernelLockWait(ev) => Some(self.kernel_lock_wait(ev)),
            RawEvent::ProcessExec(_) => None,
        }
    }

    /// The holder of the resource the wait was on, when it can be told:
    /// - a glibc pthread mutex or PI futex: the owner tid read at wait time,
    ///   if it names another live thread of the same process;
    /// - a lock-shaped futex without an owner field (Rust std Mutex): the
    ///   thread whose futex wake on this word ended the wait, i.e. released it;
    /// - a socket: the thread of the process that was already waiting on it
    ///   (ahead in its queue) when this one blocked.
    ///
    /// Condition variables, semaphores and other waits get no holder.
    fn holder(&self, pid: u32, tid: u32, w: &WaitState) -> Option<u32> {
        let lockish =
            w.flags & (wait_flags::LOCK_SHAPED | wait_flags::PI | wait_flags::SOCKET) != 0;
        if !lockish {
            return None;
        }
        let owner = w.owner_tid;
        // Known from the capture's thread table or alive now: the owner may
        // have exited by the time its waiter's event is processed.
        let thread_of_pid =
            |t: u32| self.names.has_thread(pid, t) || self.source.is_thread_of(pid, t);
        if w.flags & wait_flags::OWNER_READ != 0
            && owner != 0
            && owner != tid
            && thread_of_pid(owner)
        {
            return Some(owner);
        }
        if w.flags & wait_flags::SOCKET != 0 {
            // A socket has no releasing waker: its waker is the peer.
            return None;
        }
        let woken_by_release = Outcome::from_u32(w.outcome) == Outcome::Woken
            && w.flags & wait_flags::WAKER_ADDR_MATCH != 0
            && w.waker_pid == pid
            && w.waker_tid != tid;
        woken_by_release.then_some(w.waker_tid)
    }

    fn futex_wait(&mut self, ev: &FutexWaitEvent) -> Spanlet {
        self.wait(ev.header.pid, ev.header.tid, &ev.wait, ev.header.ts_ns)
    }

    /// A wait of thread `tid` still open when tracing stopped, as a
    /// spanlet in progress until `now_ns`.
    pub fn open_wait(&mut self, tid: u32, wait: &WaitState, now_ns: u64) -> Spanlet {
        let wait = WaitState {
            outcome: Outcome::InProgress as u32,
            ..*wait
        };
        self.wait(wait.pid, tid, &wait, now_ns)
    }

    /// The spanlet of thread `tid`'s wait `w`, ended at `end_ns`.
    fn wait(&mut self, pid: u32, tid: u32, w: &WaitState, end_ns: u64) -> Spanlet {
        let holder_tid = self.holder(pid, tid, w);
        let socket = w.flags & wait_flags::SOCKET != 0;
        let kind = if socket {
            SpanletKind::SocketWait
        } else if holder_tid.is_some() || w.flags & wait_flags::PI != 0 {
            SpanletKind::MutexWait
        } else {
            SpanletKind::FutexWait
        };
        let outcome = match Outcome::from_u32(w.outcome) {
            Outcome::Unknown => WaitOutcome::Unknown,
            Outcome::Woken => WaitOutcome::Woken,
            Outcome::TimedOut => WaitOutcome::TimedOut,
            Outcome::Interrupted => WaitOutcome::Interrupted,
            Outcome::InProgress => WaitOutcome::InProgress,
        };
        let waker = (w.waker_tid != 0).then_some((w.waker_pid, w.waker_tid));
        let comm = comm_str(&w.comm);
        self.note_thread(pid, tid, Some(&comm));
        let waker_comm = waker.map(|(wpid, wtid)| {
            let name = comm_str(&w.waker_comm);
            self.note_thread(wpid, wtid, Some(&name));
            name
        });
        if let Some(h) = holder_tid {
            self.note_thread(pid, h, None);
        }
        Spanlet {
            kind,
            pid,
            tid,
            comm,
            addr: w.resource,
            start_unix_nano: self.clock.to_unix_nanos(w.block_ns),
            wait_ns: end_ns.saturating_sub(w.block_ns),
            woken_after_ns: (w.wake_ns != 0).then(|| w.wake_ns.saturating_sub(w.block_ns)),
            outcome,
            holder_tid,
            waker_pid: waker.map(|(p, _)| p),
            waker_tid: waker.map(|(_, t)| t),
            waker_comm,
            syscall: w.syscall,
            op: w.op,
            arg: w.arg,
            flags: w.flags,
            context: span_context(&w.ctx),
            // The waker's context, read as it woke the waiter, is the
            // holder's when the waker is the holder (it released the lock).
            holder_context: if holder_tid.is_some() && holder_tid == waker.map(|(_, t)| t) {
                span_context(&w.waker_ctx)
            } else {
                None
            },
            waker_context: waker.and_then(|_| span_context(&w.waker_ctx)),
            socket: socket.then(|| socket_info(&w.sock)),
        }
    }

    fn mutex_hold(&mut self, ev: &MutexHoldEvent) -> Spanlet {
        let (pid, tid) = (ev.header.pid, ev.header.tid);
        let comm = comm_str(&ev.comm);
        self.note_thread(pid, tid, Some(&comm));
        Spanlet {
            comm,
            addr: ev.mutex,
            start_unix_nano: self.clock.to_unix_nanos(ev.acquired_ns),
            wait_ns: ev.header.ts_ns.saturating_sub(ev.acquired_ns),
            holder_tid: Some(tid),
            ..Spanlet::new(SpanletKind::MutexHold, pid, tid)
        }
    }
}

impl<S: ThreadSource> Enricher<S> {
    fn kernel_lock_wait(&mut self, ev: &KernelLockWaitEvent) -> Spanlet {
        let w = &ev.wait;
        let (pid, tid) = (ev.header.pid, ev.header.tid);
        let comm = comm_str(&ev.comm);
        self.note_thread(pid, tid, Some(&comm));
        let holder_tid = (w.owner_tid != 0 && w.owner_tid != tid).then_some(w.owner_tid);
        if let Some(h) = holder_tid.filter(|_| w.owner_pid == pid) {
            self.note_thread(pid, h, Some(&comm_str(&w.owner_comm)));
        }
        Spanlet {
            comm,
            addr: self.lock_keys.hash_one(ev.lock),
            start_unix_nano: self.clock.to_unix_nanos(w.begin_ns),
            wait_ns: ev.header.ts_ns.saturating_sub(w.begin_ns),
            outcome: if ev.ret == 0 {
                WaitOutcome::Woken
            } else {
                WaitOutcome::Interrupted
            },
            holder_tid,
            // The `LCB_F_*` flags and the result, bit for bit.
            op: w.flags,
            arg: ev.ret as u32,
            context: span_context(&w.ctx),
            ..Spanlet::new(SpanletKind::KernelLockWait, pid, tid)
        }
    }
}

fn socket_info(s: &agent_ebpf::SockAddrs) -> SocketInfo {
    SocketInfo {
        family: s.family,
        sock_type: s.sock_type,
        protocol: s.protocol,
        local_port: s.local_port,
        peer_port: s.peer_port,
        local_addr: s.local_addr,
        peer_addr: s.peer_addr,
    }
}

/// A context the kernel read, if it read one.
fn span_context(ctx: &ThreadCtx) -> Option<SpanContext> {
    (ctx.source != ctx_source::NONE && ctx.trace_id != [0; 16]).then_some(SpanContext {
        trace_id: ctx.trace_id,
        span_id: ctx.span_id,
    })
}

#[cfg(test)]
mod tests {
    use agent_ebpf::{EventKind, futex_op, syscalls_x86_64};

    use super::*;

    /// Threads 10, 11, 12 of process 1 exist.
    struct Fake;
    impl ThreadSource for Fake {
        fn is_thread_of(&self, pid: u32, tid: u32) -> bool {
            pid == 1 && (10..=12).contains(&tid)
        }
        fn thread_name(&self, pid: u32, tid: u32) -> Option<String> {
            self.is_thread_of(pid, tid).then(|| format!("t{tid}"))
        }
    }

    fn wait(val: u32, flags: u32, owner: u32, outcome: Outcome, waker: u32) -> FutexWaitEvent {
        let mut ev = FutexWaitEvent::default();
        ev.header.kind = EventKind::FutexWait as u32;
        ev.header.pid = 1;
        ev.header.tid = 10;
        ev.header.ts_ns = 5_000;
        ev.wait.block_ns = 1_000;
        ev.wait.wake_ns = 4_000;
        ev.wait.resource = 0x1000;
        ev.wait.syscall = syscalls_x86_64::FUTEX;
        ev.wait.op = futex_op::WAIT | 128;
        ev.wait.arg = val;
        ev.wait.owner_tid = owner;
        ev.wait.flags = flags;
        ev.wait.outcome = outcome as u32;
        if waker != 0 {
            ev.wait.waker_pid = 1;
            ev.wait.waker_tid = waker;
        }
        ev
    }

    fn enrich(ev: FutexWaitEvent) -> Spanlet {
        Enricher::new(EpochClock::calibrate(), Fake)
            .enrich(&RawEvent::FutexWait(ev))
            .expect("a wait is a spanlet")
    }

    const LOCK: u32 = wait_flags::LOCK_SHAPED | wait_flags::OWNER_READ;
    const MATCH: u32 = wait_flags::WAKER_ADDR_MATCH;

    #[test]
    fn pthread_mutex_holder_is_the_owner_field() {
        let s = enrich(wait(2, LOCK | MATCH, 11, Outcome::Woken, 12));
        assert_eq!(
            (s.kind, s.holder_tid, s.waker_tid),
            (SpanletKind::MutexWait, Some(11), Some(12))
        );
        assert_eq!((s.wait_ns, s.woken_after_ns), (4_000, Some(3_000)));
    }

    #[test]
    fn owner_field_that_is_not_a_thread_falls_back_to_the_releasing_waker() {
        let s = enrich(wait(2, LOCK | MATCH, 7777, Outcome::Woken, 12));
        assert_eq!((s.kind, s.holder_tid), (SpanletKind::MutexWait, Some(12)));
    }

    #[test]
    fn owner_known_from_the_thread_table_counts_after_it_exited() {
        let mut e = Enricher::new(EpochClock::calibrate(), Fake);
        e.know(&ThreadInfo {
            pid: 1,
            tid: 40,
            name: "gone".into(),
            ns_tid: None,
        });
        let s = e
            .enrich(&RawEvent::FutexWait(wait(
                2,
                LOCK | MATCH,
                40,
                Outcome::Woken,
                12,
            )))
            .unwrap();
        assert_eq!(s.holder_tid, Some(40));
        e.prune();
        let s = e
            .enrich(&RawEvent::FutexWait(wait(
                2,
                LOCK | MATCH,
                40,
                Outcome::Woken,
                12,
            )))
            .unwrap();
        assert_eq!(
            s.holder_tid,
            Some(12),
            "pruned and not alive: falls back to the waker"
        );
    }

    #[test]
    fn an_open_wait_is_in_progress_until_now() {
        let mut w = wait(2, LOCK, 11, Outcome::Unknown, 0).wait;
        w.pid = 1;
        let s = Enricher::new(EpochClock::calibrate(), Fake).open_wait(10, &w, 9_000);
        assert_eq!(
            (s.pid, s.tid, s.outcome, s.wait_ns, s.holder_tid),
            (1, 10, WaitOutcome::InProgress, 8_000, Some(11))
        );
    }

    #[test]
    fn condvar_wait_has_no_holder() {
        let s = enrich(wait(0, MATCH, 0, Outcome::Woken, 11));
        assert_eq!(
            (s.kind, s.holder_tid, s.waker_tid),
            (SpanletKind::FutexWait, None, Some(11))
        );
    }

    #[test]
    fn timed_out_lock_wait_without_owner_has_no_holder() {
        let s = enrich(wait(
            2,
            wait_flags::LOCK_SHAPED | wait_flags::HAS_TIMEOUT,
            0,
            Outcome::TimedOut,
            0,
        ));
        assert_eq!(
            (s.kind, s.holder_tid, s.waker_tid),
            (SpanletKind::FutexWait, None, None)
        );
        assert_eq!(s.outcome, WaitOutcome::TimedOut);
    }

    fn ctx(byte: u8) -> ThreadCtx {
        ThreadCtx {
            trace_id: [byte; 16],
            span_id: [byte; 8],
            trace_flags: 1,
            source: ctx_source::OTEP_4947,
            _pad: [0; 6],
        }
    }

    #[test]
    fn contexts_of_the_waiter_and_of_a_releasing_holder() {
        let mut ev = wait(2, LOCK | MATCH, 11, Outcome::Woken, 11);
        ev.wait.ctx = ctx(0xa1);
        ev.wait.waker_ctx = ctx(0xb2);
        let s = enrich(ev);
        let want = |b| SpanContext {
            trace_id: [b; 16],
            span_id: [b; 8],
        };
        assert_eq!(s.context, Some(want(0xa1)));
        assert_eq!(s.holder_context, Some(want(0xb2)));

        // The waker is not the holder (owner field names another thread):
        // its context is not the holder's.
        ev.wait.waker_tid = 12;
        assert_eq!(enrich(ev).holder_context, None);
        // A context the kernel did not read is none, whatever the bytes.
        ev.wait.ctx.source = ctx_source::NONE;
        assert_eq!(enrich(ev).context, None);
    }

    fn kernel_lock_wait(lock: u64, owner_tid: u32, ret: i32) -> KernelLockWaitEvent {
        let mut ev = KernelLockWaitEvent::default();
        ev.header.kind = EventKind::KernelLockWait as u32;
        ev.header.pid = 1;
        ev.header.tid = 10;
        ev.header.ts_ns = 9_000;
        ev.lock = lock;
        ev.ret = ret;
        ev.comm[..4].copy_from_slice(b"work");
        ev.wait.begin_ns = 1_000;
        ev.wait.flags = agent_ebpf::lock_flags::WRITE;
        ev.wait.owner_pid = 1;
        ev.wait.owner_tid = owner_tid;
        ev.wait.owner_comm[..5].copy_from_slice(b"owner");
        ev.wait.ctx = ctx(0xc3);
        ev
    }

    #[test]
    fn socket_waits_name_the_thread_ahead_not_the_peer() {
        let mut ev = wait(
            0,
            wait_flags::SOCKET | wait_flags::OWNER_READ,
            11,
            Outcome::Woken,
            0,
        );
        ev.wait.syscall = syscalls_x86_64::RECVFROM;
        ev.wait.resource = 4242;
        ev.wait.sock.family = 2;
        ev.wait.sock.protocol = 6;
        ev.wait.sock.local_port = 5000;
        ev.wait.sock.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        // Woken by a peer in another process, sending.
        ev.wait.waker_pid = 2;
        ev.wait.waker_tid = 20;
        ev.wait.waker_ctx = ctx(0xd4);
        let s = enrich(ev);
        assert_eq!(s.kind, SpanletKind::SocketWait);
        assert_eq!((s.addr, s.holder_tid), (4242, Some(11)));
        assert_eq!(s.holder_context, None, "the peer is not the holder");
        assert_eq!(s.waker_context.map(|c| c.span_id), Some([0xd4; 8]));
        let k = s.socket.expect("a socket");
        assert_eq!(k.describe(), "tcp 127.0.0.1:5000");
        // First in line: no holder, and the waker is not taken for one.
        ev.wait.flags = wait_flags::SOCKET;
        ev.wait.waker_pid = 1;
        ev.wait.waker_tid = 12;
        ev.wait.flags |= wait_flags::WAKER_ADDR_MATCH;
        assert_eq!(enrich(ev).holder_tid, None);
    }

    #[test]
    fn kernel_lock_waits_keep_no_kernel_address() {
        let mut e = Enricher::new(EpochClock::calibrate(), Fake);
        let lock = 0xffff_8880_1234_5678;
        let mut spanlet = |ev| e.enrich(&RawEvent::KernelLockWait(ev)).expect("a spanlet");
        let s = spanlet(kernel_lock_wait(lock, 11, 0));
        assert_eq!(s.kind, SpanletKind::KernelLockWait);
        assert_eq!((s.pid, s.tid, s.comm.as_str()), (1, 10, "work"));
        assert_eq!(s.wait_ns, 8_000);
        assert_eq!(s.holder_tid, Some(11));
        assert_eq!(s.outcome, WaitOutcome::Woken);
        assert_eq!(s.kernel_lock_flags(), Some(agent_ebpf::lock_flags::WRITE));
        assert_eq!(s.context.map(|c| c.trace_id), Some([0xc3; 16]));
        assert_ne!(s.addr, lock, "the kernel address must not be exported");
        // The same lock, the same key, within one run; another lock, another.
        assert_eq!(spanlet(kernel_lock_wait(lock, 11, 0)).addr, s.addr);
        assert_ne!(spanlet(kernel_lock_wait(lock + 64, 11, 0)).addr, s.addr);
        // A waiter is not its own holder; a failed wait was interrupted.
        assert_eq!(spanlet(kernel_lock_wait(lock, 10, 0)).holder_tid, None);
        let failed = spanlet(kernel_lock_wait(lock, 0, -4));
        assert_eq!(
            (failed.outcome, failed.kernel_lock_result()),
            (WaitOutcome::Interrupted, Some(-4))
        );
        // The holder's name comes from the kernel.
        assert!(
            e.take_new_threads()
                .iter()
                .any(|t| (t.tid, t.name.as_str()) == (11, "owner"))
        );
    }

    #[test]
    fn no_spanlet_for_a_process_exec() {
        let mut e = Enricher::new(EpochClock::calibrate(), Fake);
        let exec = RawEvent::ProcessExec(agent_ebpf::ProcessExecEvent::default());
        assert_eq!(e.enrich(&exec), None);
    }

    #[test]
    fn names_new_threads_once() {
        let mut e = Enricher::new(EpochClock::calibrate(), Fake);
        let ev = RawEvent::FutexWait(wait(2, LOCK | MATCH, 11, Outcome::Woken, 12));
        e.enrich(&ev);
        let tids: Vec<u32> = e.take_new_threads().iter().map(|t| t.tid).collect();
        assert_eq!(tids.len(), 3, "{tids:?}");
        e.enrich(&ev);
        assert!(e.take_new_threads().is_empty());
    }
}
