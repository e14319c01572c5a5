//! The kernel<->user ABI of spanlet.
//!
//! Everything here is shared by the eBPF programs (`src/main.rs`, built for the
//! BPF target) and the user-space agent (built with the `user` feature). Event
//! structs are `#[repr(C)]`, fixed-width and padded by hand; each size is
//! asserted at compile time so both sides agree byte for byte.
#![no_std]

use core::mem::size_of;

/// Map names, shared by `#[map(name = ...)]` and `Ebpf::take_map`.
pub mod maps {
    /// RingBuf carrying every event to user space.
    pub const EVENTS: &str = "SPANLET_EVENTS";
    /// tgid -> [`crate::PidEntry`]: the processes being traced.
    pub const PIDS: &str = "SPANLET_PIDS";
    /// Task-local storage of [`crate::WaitState`]: a blocked thread's open
    /// wait (`block_ns != 0`). User space reads it by thread pidfd.
    pub const WAIT_STATE: &str = "SPANLET_WAIT_STATE";
    /// Array of [`crate::PID_HINT_SLOTS`] slots, non-zero where a tgid in
    /// `SPANLET_PIDS` falls (`tgid % PID_HINT_SLOTS`): lets the blocking
    /// path of untraced processes skip the hash lookup.
    pub const PID_HINTS: &str = "SPANLET_PID_HINTS";
    /// Array of [`crate::OPEN_WAIT_SLOTS`] counters: how many open waits
    /// belong to threads with `tid % OPEN_WAIT_SLOTS` here. Zero lets a
    /// context switch or wake-up skip the task-storage lookup.
    pub const OPEN_WAITS: &str = "SPANLET_OPEN_WAITS";
    /// Per-CPU flag: non-zero while an hrtimer callback runs, so a wake-up
    /// from it is not blamed on the task it interrupted.
    pub const IN_HRTIMER: &str = "SPANLET_IN_HRTIMER";
    /// tgid -> `i64`: where the process's OTEP 4947 thread-context slot
    /// (`otel_thread_ctx_v1`) is, relative to a thread's `fsbase`. Set by
    /// user space, copied to forked children, dropped at exec and exit.
    pub const THREAD_CTX: &str = "SPANLET_THREAD_CTX";
    /// [`crate::FileKey`] -> `i64`: thread-context slot offsets of programs
    /// the agent has looked at, so a traced process that execs one gets its
    /// slot in the kernel at once, before its first instruction.
    pub const THREAD_CTX_BY_FILE: &str = "SPANLET_THREAD_CTX_BY_FILE";
    /// pid_tgid -> [`crate::ObiCtxValue`]: OBI's pinned `traces_ctx_v1`
    /// when the agent found one (an empty placeholder otherwise).
    pub const OBI_CTX: &str = "SPANLET_OBI_CTX";
    /// One `u32`: non-zero once any process has a `SPANLET_THREAD_CTX` slot,
    /// so that tracing programs that publish no context costs no lookups.
    pub const THREAD_CTX_ANY: &str = "SPANLET_THREAD_CTX_ANY";
    /// Per-CPU array of [`crate::Counter`] values.
    pub const COUNTERS: &str = "SPANLET_COUNTERS";
    /// tid -> [`crate::LockCall`]: pthread_mutex_lock calls in flight (uprobes).
    pub const LOCK_CALLS: &str = "SPANLET_LOCK_CALLS";
    /// (tgid, mutex address) -> [`crate::HeldLock`]: mutexes held now (uprobes).
    pub const HELD: &str = "SPANLET_HELD";
    /// [`crate::LockContentionKey`] -> [`crate::LockContention`]: kernel
    /// lock waits in progress (`--kernel-locks`).
    pub const LOCK_CONTENTION: &str = "SPANLET_LOCK_CONTENTION";
    /// Socket inode (or epoll instance) -> [`crate::SockWaiters`]: traced
    /// threads blocked on each socket now, in the order they blocked (an
    /// LRU: lines of sockets no longer waited on make way).
    pub const SOCK_WAITERS: &str = "SPANLET_SOCK_WAITERS";
    /// Socket inode -> [`crate::SockAddrs`] of connected sockets (an LRU),
    /// so a socket's addresses are read from the kernel once.
    pub const SOCK_ADDRS: &str = "SPANLET_SOCK_ADDRS";
}

/// Program names, shared by the programs and `Ebpf::program_mut`. The
/// attribute macros name a program after its function and take no name of
/// their own, so each constant is the name of a function in `programs/`;
/// a test of the agent checks that the built object has exactly these.
pub mod programs {
    pub const SCHED_SWITCH: &str = "sched_switch";
    pub const SCHED_WAKING: &str = "sched_waking";
    pub const SCHED_PROCESS_EXIT: &str = "sched_process_exit";
    pub const SCHED_PROCESS_EXEC: &str = "sched_process_exec";
    pub const SCHED_PROCESS_FORK: &str = "sched_process_fork";
    pub const HRTIMER_EXPIRE_ENTRY: &str = "hrtimer_expire_entry";
    pub const HRTIMER_EXPIRE_EXIT: &str = "hrtimer_expire_exit";
    pub const CONTENTION_BEGIN: &str = "contention_begin";
    pub const CONTENTION_END: &str = "contention_end";
    pub const MUTEX_LOCK_ENTER: &str = "mutex_lock_enter";
    pub const MUTEX_LOCK_EXIT: &str = "mutex_lock_exit";
    pub const MUTEX_UNLOCK_ENTER: &str = "mutex_unlock_enter";

    /// Every program of the object.
    pub const ALL: [&str; 12] = [
        SCHED_SWITCH,
        SCHED_WAKING,
        SCHED_PROCESS_EXIT,
        SCHED_PROCESS_EXEC,
        SCHED_PROCESS_FORK,
        HRTIMER_EXPIRE_ENTRY,
        HRTIMER_EXPIRE_EXIT,
        CONTENTION_BEGIN,
        CONTENTION_END,
        MUTEX_LOCK_ENTER,
        MUTEX_LOCK_EXIT,
        MUTEX_UNLOCK_ENTER,
    ];
}

/// Names of load-time globals the agent sets with `EbpfLoader::override_global`.
pub mod globals {
    /// [`crate::Config`] for this run.
    pub const CONFIG: &str = "SPANLET_CONFIG";
}

/// The `log`/`tracing` target of the programs' own diagnostics (aya-log
/// records, at debug level): `RUST_LOG=spanlet::ebpf=debug` turns them on.
pub const LOG_TARGET: &str = "spanlet::ebpf";

/// Bounds of the kernel maps (entries).
pub const MAX_PIDS: u32 = 4096;
pub const MAX_LOCK_CALLS: u32 = 16_384;
pub const MAX_HELD: u32 = 65_536;
/// Kernel lock waits in progress at once: one per waiting thread and lock.
pub const MAX_LOCK_CONTENTIONS: u32 = 16_384;
/// Sockets with traced threads blocked on them at once.
pub const MAX_SOCKETS: u32 = 16_384;
/// Slots of the PID-hint array (a power of two). Every blocking context
/// switch in the system asks "is this process traced?"; an array slot
/// (inlined by the JIT) answers "no" for almost all of them without the
/// hash lookup.
pub const PID_HINT_SLOTS: u32 = 1 << 16;
/// Slots of `SPANLET_OPEN_WAITS` (a power of two): few enough to stay in
/// cache, enough that threads sharing a slot are rare.
pub const OPEN_WAIT_SLOTS: u32 = 1 << 12;

/// A `SPANLET_PID_HINTS` slot: 0 means no process in the set falls there;
/// [`pid_hint`] names the one process that does, with its reason, so the
/// hot path needs no hash lookup; [`PID_HINT_SHARED`] means "look in
/// `SPANLET_PIDS`" (several processes, or one that left the set).
pub const PID_HINT_SHARED: u64 = u64::MAX;

/// The slot value for exactly one process in the set.
pub const fn pid_hint(tgid: u32, reason: u32) -> u64 {
    ((reason as u64) << 32) | tgid as u64
}

/// The slot value after `tgid` joins the set with `reason`.
pub const fn pid_hint_after_insert(slot: u64, tgid: u32, reason: u32) -> u64 {
    if slot == 0 || (slot != PID_HINT_SHARED && slot as u32 == tgid) {
        pid_hint(tgid, reason)
    } else {
        PID_HINT_SHARED
    }
}
/// The programs wake the RingBuf reader only once this much is pending (at
/// most a quarter of the ring); the reader also drains on a timer, so an
/// idle ring still empties. Waking it per event would cost an irq_work per
/// wait.
pub const RINGBUF_WAKEUP_BYTES: u32 = 64 << 10;
/// Default RingBuf size in bytes (power of two, multiple of the page size).
pub const DEFAULT_RINGBUF_BYTES: u32 = 8 << 20;

/// Kernel struct offsets and run settings, read from the running kernel's BTF
/// in user space (Rust eBPF has no CO-RE field relocations) and passed in as
/// one global before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Waits shorter than this are not emitted.
    pub min_wait_ns: u64,
    /// `task_struct` members: `pid`, `tgid`, `flags` (PF_EXITING),
    /// `pending.signal`, `blocked` and `signal` (a pointer).
    pub task_pid_off: u32,
    pub task_tgid_off: u32,
    pub task_flags_off: u32,
    pub task_pending_off: u32,
    pub task_blocked_off: u32,
    pub task_signal_off: u32,
    /// `signal_struct` members: `shared_pending.signal` and `live` (threads
    /// not yet exited). Pending signals are read by offset, as
    /// `signal_pending()` does, rather than by TIF bit number, which differs
    /// between kernels and is not in BTF.
    pub signal_shared_pending_off: u32,
    pub signal_live_off: u32,
    /// `pt_regs` members: `orig_ax`, `cs`, and the syscall argument
    /// registers in order: di, si, dx, r10, r8, r9.
    pub regs_orig_ax_off: u32,
    pub regs_cs_off: u32,
    pub regs_arg_off: [u32; 6],
    /// Non-zero: trace every process; zero: only tgids in `SPANLET_PIDS`.
    pub trace_all: u32,
    /// Non-zero: a process forked by a traced process is traced too.
    pub follow_forks: u32,
    /// Wake the RingBuf reader once this many bytes are pending
    /// (see [`RINGBUF_WAKEUP_BYTES`]; less for small rings).
    pub ringbuf_wakeup_bytes: u32,
    /// `task_struct.comm`, read by direct loads instead of a helper call.
    pub task_comm_off: u32,
    /// `task_struct.thread.fsbase`: the thread pointer, saved while the
    /// thread is in the kernel, from which its TLS is found.
    pub task_fsbase_off: u32,
    /// The executed file's identity at exec: `linux_binprm.file`,
    /// `file.f_inode`, `inode.i_ino`, `inode.i_sb`, `super_block.s_dev`.
    pub binprm_file_off: u32,
    pub file_inode_off: u32,
    pub inode_ino_off: u32,
    pub inode_sb_off: u32,
    pub sb_dev_off: u32,
    /// Non-zero: `SPANLET_OBI_CTX` is OpenTelemetry eBPF Instrumentation's
    /// pinned `traces_ctx_v1` map, the context source for threads without
    /// an OTEP 4947 record.
    pub obi_ctx: u32,
    /// Where a kernel lock's owner is (`--kernel-locks`): `mutex.owner`
    /// and `rw_semaphore.owner`, task pointers with flags in the low bits.
    pub mutex_owner_off: u32,
    pub rwsem_owner_off: u32,
    /// From a task's fd to its socket: `task_struct.files`,
    /// `files_struct.fdt`, `fdtable.max_fds` and `.fd`,
    /// `file.private_data` (the `struct socket`), `inode.i_mode`,
    /// `socket.sk`.
    pub task_files_off: u32,
    pub files_fdt_off: u32,
    pub fdtable_max_fds_off: u32,
    pub fdtable_fd_off: u32,
    pub file_private_data_off: u32,
    pub inode_mode_off: u32,
    pub socket_sk_off: u32,
    /// `struct sock` members (most in `__sk_common`): family, local port
    /// (host order), peer port (network order), IPv4 and IPv6 addresses,
    /// type and protocol.
    pub sk_family_off: u32,
    pub sk_num_off: u32,
    pub sk_dport_off: u32,
    pub sk_rcv_saddr_off: u32,
    pub sk_daddr_off: u32,
    pub sk_v6_rcv_saddr_off: u32,
    pub sk_v6_daddr_off: u32,
    pub sk_type_off: u32,
    pub sk_protocol_off: u32,
    /// From an epoll instance to its first ready files: `eventpoll.rdllist`,
    /// `epitem.rdllink`, `epitem.ffd.file` and `epitem.ffd.fd`.
    pub eventpoll_rdllist_off: u32,
    pub epitem_rdllink_off: u32,
    pub epitem_file_off: u32,
    pub epitem_fd_off: u32,
    /// Non-zero: every process's exec is reported, not only traced ones',
    /// so the agent can add processes that newly match its selection (a
    /// container's first program, a cgroup's newcomers).
    pub report_all_execs: u32,
    /// `task_struct.start_boottime`: when the process started (boot-time
    /// clock, ns), sent with each exec so the agent knows which process a
    /// PID named then (PIDs are reused).
    pub task_start_boottime_off: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<Config>() == 216);

/// Kernel constants that are `#define`s (so not in BTF) but fixed ABI on
/// x86_64.
pub mod kernel {
    /// `TASK_INTERRUPTIBLE`: futex, futex_waitv and PI-lock waits all sleep
    /// in it; other sleeps inside a futex call (page faults, exit) do not.
    pub const TASK_INTERRUPTIBLE: u32 = 0x1;
    /// `PF_EXITING` in `task_struct.flags`.
    pub const PF_EXITING: u32 = 0x4;
    /// `__USER_CS`: a 64-bit user task (ia32 tasks use other registers).
    pub const USER_CS: u64 = 0x33;
    /// Flag bits in the low bits of `mutex.owner` and `rw_semaphore.owner`
    /// (`MUTEX_FLAGS`, `RWSEM_OWNER_FLAGS_MASK`); task structs are aligned
    /// well beyond them.
    pub const LOCK_OWNER_FLAGS: u64 = 0x7;
    /// `RWSEM_READER_OWNED`: readers hold the rwsem, and `owner` names only
    /// the last one to take it, which may be gone.
    pub const RWSEM_READER_OWNED: u64 = 0x1;
    /// `S_IFMT` and `S_IFSOCK` of `inode.i_mode`.
    pub const S_IFMT: u16 = 0o170000;
    pub const S_IFSOCK: u16 = 0o140000;
    /// Address families the socket key decodes.
    pub const AF_UNIX: u16 = 1;
    pub const AF_INET: u16 = 2;
    pub const AF_INET6: u16 = 10;
}

/// Bits of `lock:contention_begin`'s `flags` (`LCB_F_*`,
/// include/trace/events/lock.h).
pub mod lock_flags {
    pub const SPIN: u32 = 1 << 0;
    pub const READ: u32 = 1 << 1;
    pub const WRITE: u32 = 1 << 2;
    pub const RT: u32 = 1 << 3;
    pub const PERCPU: u32 = 1 << 4;
    pub const MUTEX: u32 = 1 << 5;
}

/// Value of the `SPANLET_PIDS` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidEntry {
    /// Why the process is in the set: [`PID_REASON_USER`], [`PID_REASON_FORK`]
    /// or [`PID_REASON_SPAWNER`].
    pub reason: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<PidEntry>() == 8);
pub const PID_REASON_USER: u32 = 1;
pub const PID_REASON_FORK: u32 = 2;
/// Not traced itself, but the processes it forks are: how `spanlet record
/// -- CMD` traces its child from the first instruction.
pub const PID_REASON_SPAWNER: u32 = 3;

/// Indices into the `SPANLET_COUNTERS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Unused (kept so the slot numbers stay stable).
    Emitted = 0,
    /// Events lost because the RingBuf was full.
    RingbufFull = 1,
    /// Waits not tracked because no wait state could be made for the thread.
    WaitsFull = 2,
    /// Forked processes not followed because `SPANLET_PIDS` was full.
    PidsFull = 3,
    /// Waits that ended below `min_wait_ns` (filtered, not lost).
    BelowMinWait = 4,
    /// Blocking waits seen (before the min-wait filter).
    WaitsSeen = 5,
    /// Mutex holds lost because `SPANLET_HELD` or `SPANLET_LOCK_CALLS` was full.
    HeldFull = 6,
    /// Mutex holds shorter than `min_wait_ns` (filtered, not lost).
    HoldsBelowMin = 7,
    /// Waits still open when their thread exited (it never ran again).
    ExitedInWait = 8,
    /// Waits closed at their wake-up because their thread's switch-in was
    /// not seen (it blocked again with the wait still open).
    WaitClosedLate = 9,
    /// Kernel lock waits not tracked because `SPANLET_LOCK_CONTENTION` was full.
    KernelLocksFull = 10,
    /// Kernel lock waits shorter than `min_wait_ns` (filtered, not lost).
    KernelLocksBelowMin = 11,
    /// Socket waits whose queue position was not tracked (`SPANLET_SOCK_WAITERS`
    /// full, or more waiters on one socket than it keeps): recorded without
    /// a holder.
    SocketQueueFull = 12,
    /// epoll_wait sleeps that ended with no socket ready (a timeout, a
    /// signal, an eventfd or pipe): not socket waits, not recorded. Not in
    /// `WaitsSeen` either: an epoll sleep counts as a wait once a socket
    /// ended it.
    EpollNotSocket = 13,
}
pub const COUNTER_SLOTS: u32 = 16;

/// Kind of an event: the first field of every event.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// [`FutexWaitEvent`]: one blocking futex wait.
    FutexWait = 1,
    /// [`MutexHoldEvent`]: one pthread mutex hold (uprobes, opt-in).
    MutexHold = 2,
    /// [`ProcessExecEvent`]: a process ran a new program: a traced one's
    /// thread-context slot must be found again, and an untraced one may now
    /// be selected.
    ProcessExec = 3,
    /// [`KernelLockWaitEvent`]: one contended kernel lock wait (opt-in).
    KernelLockWait = 4,
}

impl EventKind {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::FutexWait),
            2 => Some(Self::MutexHold),
            3 => Some(Self::ProcessExec),
            4 => Some(Self::KernelLockWait),
            _ => None,
        }
    }
}

/// Header of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`] value.
    pub kind: u32,
    pub cpu: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the event was emitted.
    pub ts_ns: u64,
    /// tgid and tid of the thread the event is about.
    pub pid: u32,
    pub tid: u32,
}
const _: () = assert!(size_of::<EventHeader>() == 24);

/// How a futex wait ended.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No wake-up was attributed (e.g. woken through a requeue).
    Unknown = 0,
    /// A thread woke it through a futex wake on the same word, or by exiting.
    Woken = 1,
    /// The wait's timeout fired.
    TimedOut = 2,
    /// A signal interrupted it.
    Interrupted = 3,
    /// Still blocked when tracing stopped (set by user space).
    InProgress = 4,
}

impl Outcome {
    pub const fn from_u32(v: u32) -> Self {
        match v {
            1 => Self::Woken,
            2 => Self::TimedOut,
            3 => Self::Interrupted,
            4 => Self::InProgress,
            _ => Self::Unknown,
        }
    }
}

/// Bits of [`FutexWaitEvent::flags`] and [`WaitState::flags`].
pub mod wait_flags {
    /// The wait had a timeout.
    pub const HAS_TIMEOUT: u32 = 1 << 0;
    /// Expected value 2: "locked, with waiters", the lock convention of glibc
    /// (`lll_lock`) and Rust std's futex mutex.
    pub const LOCK_SHAPED: u32 = 1 << 1;
    /// A priority-inheritance lock (FUTEX_LOCK_PI*): the word holds the owner.
    pub const PI: u32 = 1 << 2;
    /// futex_waitv: `uaddr` is the first of several words.
    pub const WAITV: u32 = 1 << 3;
    /// The waker was in a futex syscall naming this waiter's word.
    pub const WAKER_ADDR_MATCH: u32 = 1 << 4;
    /// `owner_tid` was read at wait time.
    pub const OWNER_READ: u32 = 1 << 5;
    /// The waker was exiting (pthread_join's clear_child_tid wake, robust list).
    pub const WAKER_EXITING: u32 = 1 << 6;
    /// Woken from a timer interrupt (hrtimer): no thread woke it.
    pub const TIMER_WAKE: u32 = 1 << 7;
    /// Ended at its wake-up time, not when it ran again: the switch-in was
    /// not seen (see `Counter::WaitClosedLate`).
    pub const ENDED_AT_WAKE: u32 = 1 << 8;
    /// A wait on a socket, not a futex: `resource` is the socket's inode
    /// number, `arg` the fd, `sock` its addresses, `owner_tid` (with
    /// `OWNER_READ`) a thread of the process blocked on it before this one.
    pub const SOCKET: u32 = 1 << 9;
    /// The socket wait was in poll/ppoll/select/pselect6 on that one socket.
    pub const POLLED: u32 = 1 << 10;
    /// The waker was sending on or closing a socket: a peer on this
    /// machine delivering data (loopback, unix sockets).
    pub const WAKER_SENDING: u32 = 1 << 11;
    /// A sleep in epoll_wait: which socket it waits on is known only when it
    /// ends (the first ready socket of the epoll instance). Until then
    /// `resource2` is the instance, a kernel pointer that never leaves the
    /// kernel; with [`SOCKET`] set, `arg` is the ready socket's fd.
    pub const EPOLL: u32 = 1 << 12;
}

/// A socket's identity and addresses, as the kernel has them when a thread
/// blocks on it. Addresses are in network order (IPv4 in the first 4
/// bytes); ports in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockAddrs {
    pub family: u16,
    /// `SOCK_STREAM`, `SOCK_DGRAM`...
    pub sock_type: u16,
    /// `IPPROTO_TCP`, `IPPROTO_UDP`... (0 for unix sockets).
    pub protocol: u16,
    pub local_port: u16,
    pub peer_port: u16,
    pub _pad: [u16; 3],
    pub local_addr: [u8; 16],
    pub peer_addr: [u8; 16],
}
const _: () = assert!(size_of::<SockAddrs>() == 48);

/// Value of `SPANLET_SOCK_WAITERS`: tids of the traced threads blocked on a
/// socket, oldest first, zero-padded.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockWaiters {
    pub tids: [u32; SOCK_WAITER_SLOTS],
}
pub const SOCK_WAITER_SLOTS: usize = 8;
const _: () = assert!(size_of::<SockWaiters>() == 32);

/// Per-thread state of a blocked futex or socket wait, kept in task-local
/// storage (`SPANLET_WAIT_STATE`) from the moment the thread goes off CPU
/// until it runs again; `block_ns == 0` means no wait is open.
///
/// `resource`, `resource2`, `op`, `arg` and `owner_tid` mean what the kind
/// of wait says: a futex wait ([`wait_flags::SOCKET`] and [`wait_flags::EPOLL`]
/// clear) or a socket wait (either set).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitState {
    pub block_ns: u64,
    pub wake_ns: u64,
    /// Futex: the word's user address. Socket: the socket's inode number.
    pub resource: u64,
    /// Futex: the PI futex a FUTEX_WAIT_REQUEUE_PI wait moves to, else 0.
    /// Socket: the epoll instance of an epoll sleep until it ends, else 0.
    pub resource2: u64,
    /// The waiting thread's process (for waits still open at the end).
    pub pid: u32,
    pub _pad: u32,
    pub syscall: u32,
    /// Futex: the futex op with its flags. Socket: 0.
    pub op: u32,
    /// Futex: the expected value (0 for PI locks). Socket: the fd.
    pub arg: u32,
    /// With [`wait_flags::OWNER_READ`]: a futex's owner tid (a glibc
    /// mutex's `__owner`, a PI word), or the thread of the process ahead
    /// in a socket's line.
    pub owner_tid: u32,
    pub waker_pid: u32,
    pub waker_tid: u32,
    pub outcome: u32,
    pub flags: u32,
    pub comm: [u8; 16],
    pub waker_comm: [u8; 16],
    /// The waiter's span context when it blocked.
    pub ctx: ThreadCtx,
    /// The waker's span context when it woke the waiter (the releasing
    /// thread: the holder, for a lock).
    pub waker_ctx: ThreadCtx,
    /// For a socket wait ([`wait_flags::SOCKET`]): the socket.
    pub sock: SockAddrs,
}
const _: () = assert!(size_of::<WaitState>() == 216);

/// A thread's OpenTelemetry span context, read in the kernel from its OTEP
/// 4947 thread-context record; all zero when it had none (or the record was
/// not `valid`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadCtx {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The record's W3C trace-flags byte.
    pub trace_flags: u8,
    /// Where it came from: [`ctx_source`].
    pub source: u8,
    pub _pad: [u8; 6],
}
const _: () = assert!(size_of::<ThreadCtx>() == 32);

/// Values of [`ThreadCtx::source`].
pub mod ctx_source {
    /// No context: the process publishes none, the thread had none attached,
    /// or it could not be read.
    pub const NONE: u8 = 0;
    /// The thread's OTEP 4947 `otel_thread_ctx_v1` record.
    pub const OTEP_4947: u8 = 1;
    /// OBI's `traces_ctx_v1` map entry of the thread.
    pub const OBI: u8 = 2;
}

/// The start of a value of OBI's `traces_ctx_v1` map (key: pid_tgid, as
/// `bpf_get_current_pid_tgid` gives it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObiCtxValue {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}
const _: () = assert!(size_of::<ObiCtxValue>() == 24);

/// The fixed head of an OTEP 4947 thread-context record (byte-packed; the
/// attributes that follow are not read).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadCtxRecordHead {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// 1 when the record is complete; anything else means "ignore it".
    pub valid: u8,
    pub trace_flags: u8,
    pub attrs_data_size: u16,
}
const _: () = assert!(size_of::<ThreadCtxRecordHead>() == 28);

/// A file as the kernel identifies it: inode number and device
/// (`super_block.s_dev`, the kernel's `MKDEV(major, minor)` encoding).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub ino: u64,
    pub dev: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<FileKey>() == 16);

/// A traced process called execve: its thread-context slot (if any) is gone
/// with the old program. `header.pid` names it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessExecEvent {
    pub header: EventHeader,
    /// The process's `start_boottime` (ns since boot, suspend included):
    /// with `header.pid`, which process this was, as
    /// `/proc/PID/stat`'s start time (in clock ticks) tells it.
    pub start_boottime_ns: u64,
}
const _: () = assert!(size_of::<ProcessExecEvent>() == 32);

/// One blocking futex wait: from the thread going off CPU inside a futex wait
/// syscall to it running again. `header.ts_ns` is the time it ran again.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FutexWaitEvent {
    pub header: EventHeader,
    pub wait: WaitState,
}
const _: () = assert!(size_of::<FutexWaitEvent>() == 240);

/// pthread_mutex_lock call in flight (uprobe entry to uretprobe).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockCall {
    pub mutex: u64,
    pub call_ns: u64,
}
const _: () = assert!(size_of::<LockCall>() == 16);

/// Key of `SPANLET_HELD`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeldKey {
    pub mutex: u64,
    pub pid: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<HeldKey>() == 16);

/// A mutex held now: who took it, when they asked, when they got it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeldLock {
    pub call_ns: u64,
    pub acquired_ns: u64,
    pub tid: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<HeldLock>() == 24);

/// One pthread mutex hold, from `pthread_mutex_lock` returning 0 to the
/// matching `pthread_mutex_unlock` (opt-in uprobes). `header.ts_ns` is the
/// unlock time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MutexHoldEvent {
    pub header: EventHeader,
    pub mutex: u64,
    pub call_ns: u64,
    pub acquired_ns: u64,
    pub comm: [u8; 16],
}
const _: () = assert!(size_of::<MutexHoldEvent>() == 64);

/// Key of `SPANLET_LOCK_CONTENTION`: a thread waiting for a kernel lock.
/// Both are in it because a thread can wait for one lock inside the slow
/// path of another (a mutex's wait_lock spinlock).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockContentionKey {
    pub lock: u64,
    pub tid: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<LockContentionKey>() == 16);

/// A kernel lock wait in progress, from its first `contention_begin`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockContention {
    pub begin_ns: u64,
    /// [`lock_flags`] of every `contention_begin` of this wait (a mutex
    /// first spins, then sleeps).
    pub flags: u32,
    /// The owner when the wait began, for mutexes and write-held rwsems; 0
    /// when the kernel does not say.
    pub owner_pid: u32,
    pub owner_tid: u32,
    pub _pad: u32,
    pub owner_comm: [u8; 16],
    /// The waiter's span context when the wait began.
    pub ctx: ThreadCtx,
}
const _: () = assert!(size_of::<LockContention>() == 72);

/// One contended kernel lock wait of a traced thread (`--kernel-locks`),
/// from `lock:contention_begin` to `lock:contention_end`. `header.ts_ns` is
/// the end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLockWaitEvent {
    pub header: EventHeader,
    /// The lock's kernel address (user space does not export it as is).
    pub lock: u64,
    /// `contention_end`'s result: 0, or an error such as -EINTR.
    pub ret: i32,
    pub _pad: u32,
    pub comm: [u8; 16],
    pub wait: LockContention,
}
const _: () = assert!(size_of::<KernelLockWaitEvent>() == 128);

// The syscall numbers below, the `pt_regs` offsets the programs read and
// `kernel::USER_CS` are x86_64's. The programs build for the `bpf` target,
// which says nothing of the host, so the host is checked where user space
// builds this crate.
#[cfg(not(any(target_arch = "x86_64", target_arch = "bpf")))]
compile_error!("spanlet runs on x86_64 only: agent_ebpf::syscalls_x86_64 holds x86_64 numbers");

/// x86_64 syscall numbers the programs recognise (other architectures
/// number them differently; see the `compile_error!` above). A spanlet's
/// `syscall` is one of these.
pub mod syscalls_x86_64 {
    pub const FUTEX: u32 = 202;
    pub const FUTEX_WAITV: u32 = 449;
    pub const FUTEX_WAKE: u32 = 454;
    pub const FUTEX_WAIT: u32 = 455;
    pub const FUTEX_REQUEUE: u32 = 456;
    pub const EXIT: u32 = 60;
    pub const EXIT_GROUP: u32 = 231;
    // Calls that can block on a socket (read/write and friends only when
    // the fd is one).
    pub const READ: u32 = 0;
    pub const WRITE: u32 = 1;
    pub const CLOSE: u32 = 3;
    pub const POLL: u32 = 7;
    pub const SELECT: u32 = 23;
    pub const PSELECT6: u32 = 270;
    pub const READV: u32 = 19;
    pub const WRITEV: u32 = 20;
    pub const CONNECT: u32 = 42;
    pub const ACCEPT: u32 = 43;
    pub const SENDTO: u32 = 44;
    pub const RECVFROM: u32 = 45;
    pub const SENDMSG: u32 = 46;
    pub const RECVMSG: u32 = 47;
    pub const SHUTDOWN: u32 = 48;
    pub const PPOLL: u32 = 271;
    pub const ACCEPT4: u32 = 288;
    pub const RECVMMSG: u32 = 299;
    pub const SENDMMSG: u32 = 307;
    pub const EPOLL_WAIT: u32 = 232;
    pub const EPOLL_PWAIT: u32 = 281;
    pub const EPOLL_PWAIT2: u32 = 441;
}

/// futex(2) operations (after masking off the private and clock flags).
pub mod futex_op {
    pub const WAIT: u32 = 0;
    pub const WAKE: u32 = 1;
    pub const REQUEUE: u32 = 3;
    pub const CMP_REQUEUE: u32 = 4;
    pub const WAKE_OP: u32 = 5;
    pub const LOCK_PI: u32 = 6;
    pub const UNLOCK_PI: u32 = 7;
    pub const WAIT_BITSET: u32 = 9;
    pub const WAKE_BITSET: u32 = 10;
    pub const WAIT_REQUEUE_PI: u32 = 11;
    pub const CMP_REQUEUE_PI: u32 = 12;
    pub const LOCK_PI2: u32 = 13;
    pub const CMD_MASK: u32 = 0x7f;
    pub const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: every type here is repr(C), Copy, made of integers and byte
    // arrays only, with explicit padding: any bit pattern is valid.
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::PidEntry {}
    unsafe impl aya::Pod for super::FileKey {}
    unsafe impl aya::Pod for super::WaitState {}
    unsafe impl aya::Pod for super::HeldKey {}
    unsafe impl aya::Pod for super::HeldLock {}
    unsafe impl aya::Pod for super::LockCall {}
    unsafe impl aya::Pod for super::LockContentionKey {}
    unsafe impl aya::Pod for super::LockContention {}
    unsafe impl aya::Pod for super::SockWaiters {}
}
