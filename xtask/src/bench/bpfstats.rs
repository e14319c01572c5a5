//! eBPF run-time statistics (`run_time_ns`, `run_cnt` per program), on only
//! while a guard lives; and the bpf(2) calls the harness makes itself.

use std::{
    io,
    os::fd::{FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result};

/// `BPF_ENABLE_STATS` turns on the same switch as `sysctl
/// kernel.bpf_stats_enabled=1` for as long as the returned fd stays open.
/// Unlike the sysctl, nothing needs restoring: the kernel drops it when the
/// fd closes, even if the harness is killed.
pub struct BpfStats {
    _switch: OwnedFd,
}

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_ENABLE_STATS: libc::c_long = 32;
const BPF_STATS_RUN_TIME: u32 = 0;

impl BpfStats {
    pub fn enable() -> Result<Self> {
        // union bpf_attr's enable_stats member: { __u32 type; }.
        let attr: [u32; 1] = [BPF_STATS_RUN_TIME];
        let fd = bpf(BPF_ENABLE_STATS, &attr).context("BPF_ENABLE_STATS")?;
        Ok(Self { _switch: fd })
    }
}

/// An fd of the harness's own for loaded program `id` (`BPF_PROG_GET_FD_BY_ID`).
pub fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    // union bpf_attr's get-by-id member: { __u32 prog_id; __u32 next_id; __u32 open_flags; }.
    let attr: [u32; 3] = [id, 0, 0];
    bpf(BPF_PROG_GET_FD_BY_ID, &attr)
}

/// A bpf(2) command that returns a new fd; `attr` is the command's member of
/// `union bpf_attr` (a prefix of it: the kernel zero-fills the rest).
pub fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<OwnedFd> {
    // SAFETY: attr is live and fully initialised for the size passed, and
    // any pointers in it outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_ref(attr),
            std::mem::size_of::<T>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
