//! The user-space model of a spanlet: what the agent records, the capture file
//! stores, and reports and exports read.

use std::fmt;

use compact_str::CompactString;

/// What a spanlet describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpanletKind {
    /// A blocking wait on a futex word that is not known to be a lock
    /// (condition variables, semaphores, joins, idle waits).
    FutexWait,
    /// A blocking wait on a lock: a glibc pthread mutex (owner read from the
    /// mutex), a PI futex, or a futex used with the "2 = locked, contended"
    /// convention whose waker released it.
    MutexWait,
    /// A pthread mutex hold, from lock to unlock (opt-in uprobes).
    MutexHold,
    /// A contended kernel lock (mutex, rwsem, spinlock) the thread waited
    /// for inside a syscall or fault (opt-in, `--kernel-locks`). `addr` is a
    /// per-capture key for the lock, not its kernel address; see
    /// [`Spanlet::kernel_lock_flags`] and [`Spanlet::kernel_lock_result`].
    KernelLockWait,
    /// A blocking wait on a socket: recv waiting for data, send on a full
    /// buffer, accept, connect, or poll on that one socket. `addr` is the
    /// socket's inode number, [`Spanlet::socket_fd`] the fd, `socket` its
    /// addresses; the holder is a thread of the process already waiting on it.
    SocketWait,
}

impl SpanletKind {
    pub const ALL: [SpanletKind; 5] = [
        Self::FutexWait,
        Self::MutexWait,
        Self::MutexHold,
        Self::KernelLockWait,
        Self::SocketWait,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FutexWait => "futex_wait",
            Self::MutexWait => "mutex_wait",
            Self::MutexHold => "mutex_hold",
            Self::KernelLockWait => "kernel_lock_wait",
            Self::SocketWait => "socket_wait",
        }
    }

    pub const fn code(self) -> u8 {
        match self {
            Self::FutexWait => 1,
            Self::MutexWait => 2,
            Self::MutexHold => 3,
            Self::KernelLockWait => 4,
            Self::SocketWait => 5,
        }
    }

    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::FutexWait),
            2 => Some(Self::MutexWait),
            3 => Some(Self::MutexHold),
            4 => Some(Self::KernelLockWait),
            5 => Some(Self::SocketWait),
            _ => None,
        }
    }

    /// Whether this kind is a wait (as opposed to a hold).
    pub const fn is_wait(self) -> bool {
        matches!(
            self,
            Self::FutexWait | Self::MutexWait | Self::KernelLockWait | Self::SocketWait
        )
    }
}

/// The kind of kernel lock a `kernel_lock_wait` waited for, from its
/// `LCB_F_*` flags ([`Spanlet::kernel_lock_flags`]).
pub fn kernel_lock_type(flags: u32) -> &'static str {
    use agent_ebpf::lock_flags::{MUTEX, PERCPU, READ, RT, SPIN, WRITE};
    let rw = |read: &'static str, write: &'static str, neither: &'static str| {
        if flags & WRITE != 0 {
            write
        } else if flags & READ != 0 {
            read
        } else {
            neither
        }
    };
    if flags & MUTEX != 0 {
        "mutex"
    } else if flags & RT != 0 {
        "rt_mutex"
    } else if flags & PERCPU != 0 {
        rw("percpu_rwsem_read", "percpu_rwsem_write", "percpu_rwsem")
    } else if flags & SPIN != 0 {
        rw("rwlock_read", "rwlock_write", "spinlock")
    } else {
        rw("rwsem_read", "rwsem_write", "unknown")
    }
}

#[cfg(test)]
mod tests {
    use agent_ebpf::lock_flags::{MUTEX, PERCPU, READ, RT, SPIN, WRITE};

    use super::kernel_lock_type;

    #[test]
    fn kernel_lock_types_from_flags() {
        assert_eq!(kernel_lock_type(MUTEX | SPIN), "mutex");
        assert_eq!(kernel_lock_type(WRITE), "rwsem_write");
        assert_eq!(kernel_lock_type(READ), "rwsem_read");
        assert_eq!(kernel_lock_type(SPIN), "spinlock");
        assert_eq!(kernel_lock_type(SPIN | READ), "rwlock_read");
        assert_eq!(kernel_lock_type(PERCPU | WRITE), "percpu_rwsem_write");
        assert_eq!(kernel_lock_type(RT), "rt_mutex");
        assert_eq!(kernel_lock_type(0), "unknown");
    }

    #[test]
    fn each_kind_reads_op_and_arg_as_its_own() {
        use super::{Spanlet, SpanletKind};
        let mut s = Spanlet::new(SpanletKind::SocketWait, 1, 2);
        s.arg = 7;
        assert_eq!(s.socket_fd(), Some(7));
        assert_eq!((s.futex_val(), s.kernel_lock_result()), (None, None));
        s.kind = SpanletKind::KernelLockWait;
        (s.op, s.arg) = (MUTEX, -4i32 as u32);
        assert_eq!(s.kernel_lock_type(), Some("mutex"));
        assert_eq!((s.kernel_lock_result(), s.socket_fd()), (Some(-4), None));
        s.kind = SpanletKind::MutexWait;
        assert_eq!(
            (s.futex_op(), s.futex_val()),
            (Some(MUTEX), Some(-4i32 as u32))
        );
        assert_eq!((s.kernel_lock_flags(), s.socket_op()), (None, None));
    }
}

impl fmt::Display for SpanletKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitOutcome {
    /// Not known (holds, or a wake-up we could not attribute).
    Unknown,
    Woken,
    TimedOut,
    Interrupted,
    /// Still blocked when tracing stopped; `wait_ns` runs to the stop.
    InProgress,
}

impl WaitOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Woken => "woken",
            Self::TimedOut => "timed_out",
            Self::Interrupted => "interrupted",
            Self::InProgress => "in_progress",
        }
    }

    pub const fn code(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Woken => 1,
            Self::TimedOut => 2,
            Self::Interrupted => 3,
            Self::InProgress => 4,
        }
    }

    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Unknown),
            1 => Some(Self::Woken),
            2 => Some(Self::TimedOut),
            3 => Some(Self::Interrupted),
            4 => Some(Self::InProgress),
            _ => None,
        }
    }
}

impl fmt::Display for WaitOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// W3C / OpenTelemetry span context of a thread at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

/// One resource spanlet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanlet {
    pub kind: SpanletKind,
    /// Process (tgid) and thread of the waiter (or holder, for holds).
    pub pid: u32,
    pub tid: u32,
    /// Thread name at the time of the wait (inline: names are at most 15
    /// bytes, and a capture decodes millions of them).
    pub comm: CompactString,
    /// The resource: futex word or mutex address in the process.
    pub addr: u64,
    /// Start of the wait (or hold), Unix epoch nanoseconds.
    pub start_unix_nano: u64,
    /// Off CPU until running again (waits); lock to unlock (holds).
    pub wait_ns: u64,
    /// From the start until the waker woke it, when a wake-up was seen.
    pub woken_after_ns: Option<u64>,
    pub outcome: WaitOutcome,
    /// Thread holding the resource during the wait, when known.
    pub holder_tid: Option<u32>,
    /// Thread that woke the waiter, when known, with its process and name.
    pub waker_pid: Option<u32>,
    pub waker_tid: Option<u32>,
    pub waker_comm: Option<CompactString>,
    /// Raw kernel detail: the syscall number (x86_64's numbering,
    /// `agent_ebpf::syscalls_x86_64`) and the `agent_ebpf::wait_flags` bits.
    pub syscall: u32,
    /// Two raw words whose meaning depends on `kind`; read them through the
    /// accessors of the kind ([`Spanlet::futex_op`], [`Spanlet::socket_fd`],
    /// [`Spanlet::kernel_lock_flags`]...). Futex and mutex waits: `op` is
    /// the futex op (with its flags), `arg` the expected value. Kernel lock
    /// waits: `op` the `LCB_F_*` flags, `arg` `contention_end`'s result (an
    /// `i32`). Socket waits: `op` 0, `arg` the fd. Holds: both 0. (The
    /// capture format and JSONL call them `futex_op` and `futex_val`.)
    pub op: u32,
    pub arg: u32,
    pub flags: u32,
    /// Span context active on the waiter and on the holder (filled later).
    pub context: Option<SpanContext>,
    pub holder_context: Option<SpanContext>,
    /// The waker's span context as it woke the waiter (a lock's releasing
    /// holder, a condition's signaller, a socket peer sending on this
    /// machine).
    pub waker_context: Option<SpanContext>,
    /// The socket of a `socket_wait`.
    pub socket: Option<SocketInfo>,
}

impl Spanlet {
    /// A spanlet of `kind` by thread `tid` of process `pid`, every other
    /// field empty: zero, `None`, an empty name, outcome `Unknown`.
    pub fn new(kind: SpanletKind, pid: u32, tid: u32) -> Self {
        Self {
            kind,
            pid,
            tid,
            comm: CompactString::default(),
            addr: 0,
            start_unix_nano: 0,
            wait_ns: 0,
            woken_after_ns: None,
            outcome: WaitOutcome::Unknown,
            holder_tid: None,
            waker_pid: None,
            waker_tid: None,
            waker_comm: None,
            syscall: 0,
            op: 0,
            arg: 0,
            flags: 0,
            context: None,
            holder_context: None,
            waker_context: None,
            socket: None,
        }
    }

    fn is_futex(&self) -> bool {
        matches!(self.kind, SpanletKind::FutexWait | SpanletKind::MutexWait)
    }

    /// The futex op, with its private and clock flags, of a futex or mutex
    /// wait.
    pub fn futex_op(&self) -> Option<u32> {
        self.is_futex().then_some(self.op)
    }

    /// The value a futex or mutex wait expected in the word (0 for PI locks).
    pub fn futex_val(&self) -> Option<u32> {
        self.is_futex().then_some(self.arg)
    }

    /// The `LCB_F_*` flags of a kernel lock wait.
    pub fn kernel_lock_flags(&self) -> Option<u32> {
        (self.kind == SpanletKind::KernelLockWait).then_some(self.op)
    }

    /// What kind of kernel lock a kernel lock wait waited for.
    pub fn kernel_lock_type(&self) -> Option<&'static str> {
        self.kernel_lock_flags().map(kernel_lock_type)
    }

    /// `contention_end`'s result of a kernel lock wait: 0, or an error such
    /// as -EINTR.
    pub fn kernel_lock_result(&self) -> Option<i32> {
        // The kernel's i32, kept bit for bit in the unsigned word.
        (self.kind == SpanletKind::KernelLockWait).then_some(self.arg as i32)
    }

    /// The fd a socket wait waited on.
    pub fn socket_fd(&self) -> Option<u32> {
        (self.kind == SpanletKind::SocketWait).then_some(self.arg)
    }

    /// What a socket wait was doing (see [`socket_op`]).
    pub fn socket_op(&self) -> Option<&'static str> {
        (self.kind == SpanletKind::SocketWait).then(|| socket_op(self.syscall, self.flags))
    }
}

/// A socket as a `socket_wait` saw it: family, type, protocol, and the
/// local and peer addresses where it has them (IP sockets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SocketInfo {
    pub family: u16,
    pub sock_type: u16,
    pub protocol: u16,
    pub local_port: u16,
    pub peer_port: u16,
    /// Network order; IPv4 in the first 4 bytes.
    pub local_addr: [u8; 16],
    pub peer_addr: [u8; 16],
}

impl SocketInfo {
    fn ip(&self, addr: &[u8; 16]) -> Option<std::net::IpAddr> {
        use agent_ebpf::kernel::{AF_INET, AF_INET6};
        match self.family {
            AF_INET => {
                let v4: [u8; 4] = addr[..4].try_into().ok()?;
                Some(std::net::Ipv4Addr::from(v4).into())
            }
            AF_INET6 => Some(std::net::Ipv6Addr::from(*addr).into()),
            _ => None,
        }
    }

    /// The local address and port (IP sockets).
    pub fn local(&self) -> Option<std::net::SocketAddr> {
        Some(std::net::SocketAddr::new(
            self.ip(&self.local_addr)?,
            self.local_port,
        ))
    }

    /// The peer's address and port, when connected (IP sockets).
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        let ip = self.ip(&self.peer_addr)?;
        (self.peer_port != 0 || !ip.is_unspecified())
            .then(|| std::net::SocketAddr::new(ip, self.peer_port))
    }

    /// OpenTelemetry's `network.transport`: tcp, udp, unix, or the raw
    /// protocol number.
    pub fn transport(&self) -> String {
        match (self.family, self.protocol) {
            (agent_ebpf::kernel::AF_UNIX, _) => "unix".into(),
            (_, 6) => "tcp".into(),
            (_, 17) => "udp".into(),
            (_, p) => format!("protocol {p}"),
        }
    }

    /// e.g. "tcp 127.0.0.1:8080 <- 127.0.0.1:43210", "unix".
    pub fn describe(&self) -> String {
        let mut s = self.transport();
        if let Some(local) = self.local() {
            s.push_str(&format!(" {local}"));
            if let Some(peer) = self.peer() {
                s.push_str(&format!(" <- {peer}"));
            }
        }
        s
    }
}

/// What a socket wait was doing, from its (x86_64) syscall number and
/// flags: `recv`, `send`, `accept`, `connect`, `poll` or `epoll`.
pub fn socket_op(syscall: u32, flags: u32) -> &'static str {
    use agent_ebpf::syscalls_x86_64 as sc;
    if flags & agent_ebpf::wait_flags::EPOLL != 0 {
        return "epoll";
    }
    if flags & agent_ebpf::wait_flags::POLLED != 0 {
        return "poll";
    }
    match syscall {
        sc::ACCEPT | sc::ACCEPT4 => "accept",
        sc::CONNECT => "connect",
        sc::WRITE | sc::WRITEV | sc::SENDTO | sc::SENDMSG | sc::SENDMMSG => "send",
        _ => "recv",
    }
}
