//! eBPF run-time statistics (`run_time_ns`, `run_cnt` per program), on only
//! while a guard lives.

use std::os::fd::{FromRawFd as _, OwnedFd};

use anyhow::{Result, bail};

/// `BPF_ENABLE_STATS` turns on the same switch as `sysctl
/// kernel.bpf_stats_enabled=1` for as long as the returned fd stays open.
/// Unlike the sysctl, nothing needs restoring: the kernel drops it when the
/// fd closes, even if the harness is killed.
pub struct BpfStats(#[allow(dead_code)] OwnedFd);

const BPF_ENABLE_STATS: libc::c_long = 32;
const BPF_STATS_RUN_TIME: u32 = 0;

impl BpfStats {
    pub fn enable() -> Result<Self> {
        // union bpf_attr's enable_stats member: { __u32 type; }.
        let attr: [u32; 1] = [BPF_STATS_RUN_TIME];
        // SAFETY: attr outlives the call and its size is passed with it.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_ENABLE_STATS,
                attr.as_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        if fd < 0 {
            bail!("BPF_ENABLE_STATS: {}", std::io::Error::last_os_error());
        }
        let fd = i32::try_from(fd)?;
        // SAFETY: the kernel just returned this fd; nothing else owns it.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;

/// An fd of the harness's own for loaded program `id` (`BPF_PROG_GET_FD_BY_ID`).
pub fn prog_fd_by_id(id: u32) -> std::io::Result<OwnedFd> {
    // union bpf_attr's get-by-id member: { __u32 prog_id; __u32 next_id; __u32 open_flags; }.
    let attr: [u32; 3] = [id, 0, 0];
    // SAFETY: attr outlives the call and its size is passed with it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_FD_BY_ID,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(std::io::Error::other)?;
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
