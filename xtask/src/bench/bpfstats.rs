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
