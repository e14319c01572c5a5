//! Socket waits, seen like futex waits only when they block: a traced thread
//! going to sleep inside a socket call (recv, send on a full buffer, accept,
//! connect, read/write on a socket fd, poll on one socket) is found from its
//! saved syscall registers; its fd leads to the socket, whose inode number
//! and addresses identify it. A sleep in epoll_wait is one too when a
//! socket ends it: the first ready socket of the epoll instance, read as
//! the thread runs again. No payload is read.
use agent_ebpf::{
    Counter, SOCK_WAITER_SLOTS, SockAddrs, SockWaiters,
    kernel::{AF_INET, AF_INET6, S_IFMT, S_IFSOCK},
    syscalls_x86_64, wait_flags,
};

use super::{
    config, counters,
    maps::{SOCK_ADDRS, SOCK_WAITERS},
    rare::counted,
    regs,
    regs::Syscall,
};

/// The socket a blocking call waits on; for epoll_wait, the epoll instance
/// (`inode` 0, `fd` the epoll fd) until a socket ends the wait.
pub struct SocketTarget {
    pub inode: u64,
    /// The `struct eventpoll` of an epoll wait, else 0.
    pub ep: u64,
    /// The socket's file, for [`fill_addrs`] (0 for epoll).
    pub file: u64,
    pub fd: u32,
    pub flags: u32,
}

/// The socket `task` (current, going to sleep) waits on in syscall `sc`, if
/// the call is one that can wait on a socket and its fd is one.
#[inline(always)]
pub fn target(task: *const u8, sc: &Syscall) -> Option<SocketTarget> {
    if sc.nr >> 32 != 0 {
        return None;
    }
    let [a0, a1, a2, ..] = sc.args;
    let (fd, flags) = match sc.nr as u32 {
        syscalls_x86_64::READ
        | syscalls_x86_64::WRITE
        | syscalls_x86_64::READV
        | syscalls_x86_64::WRITEV
        | syscalls_x86_64::CONNECT
        | syscalls_x86_64::ACCEPT
        | syscalls_x86_64::ACCEPT4
        | syscalls_x86_64::SENDTO
        | syscalls_x86_64::RECVFROM
        | syscalls_x86_64::SENDMSG
        | syscalls_x86_64::RECVMSG
        | syscalls_x86_64::SENDMMSG
        | syscalls_x86_64::RECVMMSG => (a0 as i32, 0),
        // poll(fds, 1, timeout_ms) / ppoll(fds, 1, tsp, ...) on one socket,
        // as a socket with a timeout does before each call.
        syscalls_x86_64::POLL if a1 == 1 => {
            let timeout = if (a2 as i32) >= 0 {
                wait_flags::HAS_TIMEOUT
            } else {
                0
            };
            (regs::read_user::<i32>(a0)?, wait_flags::POLLED | timeout)
        }
        syscalls_x86_64::PPOLL if a1 == 1 => {
            let timeout = if a2 != 0 { wait_flags::HAS_TIMEOUT } else { 0 };
            (regs::read_user::<i32>(a0)?, wait_flags::POLLED | timeout)
        }
        // select(nfds, readfds, writefds, exceptfds, timeout) and pselect6
        // (timeout a timespec): a wait on one socket when exactly one fd is
        // set in the read and write sets.
        syscalls_x86_64::SELECT | syscalls_x86_64::PSELECT6 => {
            let [.., a4, _] = sc.args;
            let timeout = if a4 != 0 { wait_flags::HAS_TIMEOUT } else { 0 };
            (only_fd_selected(a0, a1, a2)?, wait_flags::POLLED | timeout)
        }
        // epoll_wait(epfd, events, max, timeout_ms), epoll_pwait(.., sigmask),
        // epoll_pwait2(.., struct timespec *timeout, ..).
        syscalls_x86_64::EPOLL_WAIT
        | syscalls_x86_64::EPOLL_PWAIT
        | syscalls_x86_64::EPOLL_PWAIT2 => {
            let [.., a3, _, _] = sc.args;
            let timeout = match sc.nr as u32 {
                syscalls_x86_64::EPOLL_PWAIT2 => a3 != 0,
                _ => (a3 as i32) >= 0,
            };
            let epfd = u32::try_from(a0 as i32).ok()?;
            let file = file_of(task, epfd)?;
            let ep = regs::read_kernel_u64(file + u64::from(config::get().file_private_data_off))?;
            return Some(SocketTarget {
                inode: 0,
                ep,
                file: 0,
                fd: epfd,
                flags: wait_flags::EPOLL | if timeout { wait_flags::HAS_TIMEOUT } else { 0 },
            });
        }
        _ => return None,
    };
    let fd = u32::try_from(fd).ok()?;
    let file = file_of(task, fd)?;
    let inode = socket_inode(file)?;
    Some(SocketTarget {
        inode,
        ep: 0,
        file,
        fd,
        flags: flags | wait_flags::SOCKET,
    })
}

/// Words of an `fd_set` looked at: select waits on fds below 256 only
/// (one read per set, and few paths for the verifier to walk).
const FD_SET_WORDS: usize = 4;

/// The one fd set in `select`'s read and write sets (user memory of the
/// current task), or None when there are none or several.
#[inline(always)]
fn only_fd_selected(nfds: u64, readfds: u64, writefds: u64) -> Option<i32> {
    if nfds > (FD_SET_WORDS * 64) as u64 {
        return None;
    }
    let set = |addr: u64| {
        if addr == 0 {
            [0u64; FD_SET_WORDS]
        } else {
            regs::read_user::<[u64; FD_SET_WORDS]>(addr).unwrap_or_default()
        }
    };
    let (read, write) = (set(readfds), set(writefds));
    let mut count = 0;
    let mut fd = 0;
    for w in 0..FD_SET_WORDS {
        let bits = read[w] | write[w];
        count += bits.count_ones();
        if bits != 0 {
            fd = w as u32 * 64 + bits.trailing_zeros();
        }
    }
    (count == 1).then_some(fd as i32)
}

/// `task`'s open file `fd` (a `struct file *`).
#[inline(always)]
fn file_of(task: *const u8, fd: u32) -> Option<u64> {
    let cfg = config::get();
    // task->files->fdt by direct loads (the blocking path of every socket
    // wait); only the fd array, indexed by a variable, needs a probe read.
    let files: *const u8 = regs::btf_member(task, cfg.task_files_off);
    if files.is_null() {
        return None;
    }
    let fdt: *const u8 = regs::btf_member(files, cfg.files_fdt_off);
    if fdt.is_null() {
        return None;
    }
    let max_fds: u32 = regs::btf_member(fdt, cfg.fdtable_max_fds_off);
    if fd >= max_fds {
        return None;
    }
    let fds: u64 = regs::btf_member(fdt, cfg.fdtable_fd_off);
    regs::read_kernel_u64(fds + u64::from(fd) * 8).filter(|&f| f != 0)
}

/// A file's inode number, or None when it is not a socket.
#[inline(always)]
fn socket_inode(file: u64) -> Option<u64> {
    let cfg = config::get();
    let at = |base: u64, off: u32| base + u64::from(off);
    let inode = regs::read_kernel_u64(at(file, cfg.file_inode_off))?;
    let mode: u16 = regs::read_kernel(at(inode, cfg.inode_mode_off))?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    regs::read_kernel_u64(at(inode, cfg.inode_ino_off))
}

/// A field of a socket, zero when it cannot be read.
#[inline(always)]
fn read<T: Default>(addr: u64) -> T {
    regs::read_kernel(addr).unwrap_or_default()
}

/// Family, type, protocol, ports and addresses of socket `inode` (whose
/// file is `file`), written in place (the eBPF stack has no room for
/// another copy on the scheduler path). A socket's addresses do not change
/// once it is connected: they are read from the kernel once and kept by
/// inode (`SPANLET_SOCK_ADDRS`); one without a peer yet is read each time.
#[inline(always)]
pub fn fill_addrs(inode: u64, file: u64, addrs: &mut SockAddrs) {
    if let Some(cached) = SOCK_ADDRS.get_ptr(inode) {
        // SAFETY: a map value, valid for this program run, of the same
        // plain-data type.
        unsafe { core::ptr::copy_nonoverlapping(cached, core::ptr::from_mut(addrs), 1) };
        if addrs.peer_port != 0 {
            return;
        }
    }
    let cfg = config::get();
    let Some(socket) = regs::read_kernel_u64(file + u64::from(cfg.file_private_data_off)) else {
        return;
    };
    let Some(sk) = regs::read_kernel_u64(socket + u64::from(cfg.socket_sk_off)) else {
        return;
    };
    read_addrs(sk, addrs);
    if addrs.peer_port != 0 {
        // By reference: a copy would not fit on the eBPF stack here.
        let shared: &SockAddrs = addrs;
        let _ = SOCK_ADDRS.insert(inode, shared, 0);
    }
}

#[inline(always)]
fn read_addrs(sk: u64, addrs: &mut SockAddrs) {
    let cfg = config::get();
    let at = |off: u32| sk + u64::from(off);
    let family: u16 = read(at(cfg.sk_family_off));
    addrs.family = family;
    addrs.sock_type = read(at(cfg.sk_type_off));
    addrs.protocol = read(at(cfg.sk_protocol_off));
    if family == AF_INET || family == AF_INET6 {
        addrs.local_port = read(at(cfg.sk_num_off));
        addrs.peer_port = u16::from_be(read(at(cfg.sk_dport_off)));
    }
    if family == AF_INET {
        let local: [u8; 4] = read(at(cfg.sk_rcv_saddr_off));
        let peer: [u8; 4] = read(at(cfg.sk_daddr_off));
        addrs.local_addr[..4].copy_from_slice(&local);
        addrs.peer_addr[..4].copy_from_slice(&peer);
    } else if family == AF_INET6 {
        addrs.local_addr = read(at(cfg.sk_v6_rcv_saddr_off));
        addrs.peer_addr = read(at(cfg.sk_v6_daddr_off));
    }
}

/// How many ready files of an epoll instance are looked at for a socket.
const READY_LOOKED_AT: usize = 4;

/// The first ready socket of epoll instance `ep` (its inode, fd in the
/// watching process, and file), among the first few ready files: what
/// ended an epoll wait, read before the woken thread consumes the list.
#[inline(always)]
pub fn ready_socket(ep: u64) -> Option<(u64, u32, u64)> {
    let cfg = config::get();
    let head = ep + u64::from(cfg.eventpoll_rdllist_off);
    let mut link = regs::read_kernel_u64(head)?;
    for _ in 0..READY_LOOKED_AT {
        if link == head || link == 0 {
            return None;
        }
        let epi = link - u64::from(cfg.epitem_rdllink_off);
        if let Some(file) = regs::read_kernel_u64(epi + u64::from(cfg.epitem_file_off))
            && let Some(inode) = socket_inode(file)
        {
            let fd = regs::read_kernel_u32(epi + u64::from(cfg.epitem_fd_off)).unwrap_or(0);
            return Some((inode, fd, file));
        }
        link = regs::read_kernel_u64(link)?;
    }
    None
}

/// Puts `tid` in line on socket `inode`; returns the thread ahead of it (the
/// oldest other waiter), or 0 when it is first.
#[inline(always)]
pub fn join(inode: u64, tid: u32) -> u32 {
    if let Some(waiters) = SOCK_WAITERS.get_ptr_mut(inode) {
        // SAFETY: a pointer into a map value, valid for this program run.
        let waiters = unsafe { &mut *waiters };
        let mut ahead = 0;
        for i in 0..SOCK_WAITER_SLOTS {
            let t = waiters.tids[i];
            if t == tid {
                return ahead;
            }
            if t == 0 {
                waiters.tids[i] = tid;
                return ahead;
            }
            if ahead == 0 {
                ahead = t;
            }
        }
        counters::bump(Counter::SocketQueueFull);
        return ahead;
    }
    let mut waiters = SockWaiters::default();
    waiters.tids[0] = tid;
    if SOCK_WAITERS.insert(inode, waiters, 0).is_err() {
        counted!(
            Counter::SocketQueueFull,
            "socket waiter map full: a socket wait without its holder ({} so far on CPU {})"
        );
    }
    0
}

/// Takes `tid` out of line on socket `inode` (its wait is over), keeping the
/// others in order.
#[inline(always)]
pub fn leave(inode: u64, tid: u32) {
    let Some(waiters) = SOCK_WAITERS.get_ptr_mut(inode) else {
        return;
    };
    // SAFETY: a pointer into a map value, valid for this program run.
    let waiters = unsafe { &mut *waiters };
    let mut found = false;
    for i in 0..SOCK_WAITER_SLOTS {
        if waiters.tids[i] == tid {
            found = true;
        }
        if found {
            waiters.tids[i] = if i + 1 < SOCK_WAITER_SLOTS {
                waiters.tids[i + 1]
            } else {
                0
            };
        }
    }
    // An empty line stays: the next wait on the socket updates it in
    // place, where removing and inserting would cost two more hash-table
    // writes per wait. The map is an LRU: lines of sockets no longer used
    // make way for new ones.
}

/// Whether the current task's syscall `sc` sends on or closes a socket:
/// the waker of a socket wait, when it delivers the data itself (a peer
/// on this machine).
#[inline(always)]
pub fn is_sending(sc: &Syscall) -> bool {
    sc.nr >> 32 == 0
        && matches!(
            sc.nr as u32,
            syscalls_x86_64::WRITE
                | syscalls_x86_64::WRITEV
                | syscalls_x86_64::SENDTO
                | syscalls_x86_64::SENDMSG
                | syscalls_x86_64::SENDMMSG
                | syscalls_x86_64::CONNECT
                | syscalls_x86_64::SHUTDOWN
                | syscalls_x86_64::CLOSE
        )
}
