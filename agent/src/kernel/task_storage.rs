//! Reads the programs' task-local storage from user space. aya 0.14 has no
//! API for BPF_MAP_TYPE_TASK_STORAGE, whose user-space key is a pidfd of
//! the task; this is the one raw `bpf(2)` call spanlet makes.
use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

/// `pidfd_open` flag for a thread (not only a thread-group leader), 6.9+.
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;

/// `union bpf_attr` as used by BPF_MAP_LOOKUP_ELEM.
#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// The value a task-storage map holds for thread `tid`, if the thread
/// still exists and has one.
pub fn lookup<V: aya::Pod + Default>(map: BorrowedFd<'_>, tid: u32) -> io::Result<Option<V>> {
    // SAFETY: plain syscall; the returned fd is owned below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid as libc::pid_t, PIDFD_THREAD) };
    if pidfd < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ESRCH) => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    let key: i32 = pidfd.as_raw_fd();
    let mut value = V::default();
    let attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: std::ptr::from_ref(&key) as u64,
        value: std::ptr::from_mut(&mut value) as u64,
        flags: 0,
    };
    // SAFETY: `attr` points at a live key and a value buffer of the map's
    // value size (V is the map's value type).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_ELEM,
            std::ptr::from_ref(&attr),
            size_of::<MapElemAttr>(),
        )
    };
    if ret < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOENT) => Ok(None),
            _ => Err(err),
        };
    }
    Ok(Some(value))
}
