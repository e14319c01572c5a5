//! The floor: an empty eBPF program (`r0 = 0; exit`) on every tracepoint
//! spanlet attaches by default, loaded and attached by the harness itself
//! through the bpf syscall. A run with the floor attached shows what having
//! any program on those hooks costs on this machine, before doing anything:
//! the part of spanlet's cost no change to its programs can remove.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, OwnedFd},
};

use anyhow::{Context, Result};

use super::{bpfstats::bpf, scenarios::Scenario};

/// The scenarios whose targets are about per-switch cost: the floor pass
/// runs them untraced with and without the empty programs.
pub const SCENARIOS: [Scenario; 2] = [Scenario::Pingpong, Scenario::SysbenchThreads];

/// spanlet's default tracepoints (agent/src/kernel/probes.rs); its uprobes are
/// off by default.
pub const HOOKS: [&str; 7] = [
    "sched_switch",
    "sched_waking",
    "sched_process_exit",
    "hrtimer_expire_entry",
    "hrtimer_expire_exit",
    "sched_process_exec",
    "sched_process_fork",
];

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;

/// `mov64 r0, 0` then `exit`, as (opcode | regs << 8 | off << 16 | imm << 32).
const EMPTY_PROGRAM: [u64; 2] = [0xb7, 0x95];

/// The program-load member of `union bpf_attr`, up to the fields used.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// The raw-tracepoint-open member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct RawTracepointAttr {
    name: u64,
    prog_fd: u32,
    _pad: u32,
    cookie: u64,
}

/// The empty programs, attached while this lives.
pub struct Floor {
    /// Raw tracepoint links: closing them detaches.
    _links: Vec<OwnedFd>,
}

impl Floor {
    pub fn attach() -> Result<Self> {
        let prog = load_empty().context("loading the floor's empty eBPF program")?;
        let links = HOOKS
            .iter()
            .map(|hook| {
                attach_raw(&prog, hook).with_context(|| format!("attaching the floor to {hook}"))
            })
            .collect::<Result<_>>()?;
        Ok(Self { _links: links })
    }
}

fn load_empty() -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_RAW_TRACEPOINT,
        insn_cnt: EMPTY_PROGRAM.len() as u32,
        insns: EMPTY_PROGRAM.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    let name = b"spanlet_floor";
    attr.prog_name[..name.len()].copy_from_slice(name);
    bpf(BPF_PROG_LOAD, &attr)
}

fn attach_raw(prog: &OwnedFd, hook: &str) -> io::Result<OwnedFd> {
    let name = CString::new(hook).map_err(io::Error::other)?;
    let attr = RawTracepointAttr {
        name: name.as_ptr() as u64,
        prog_fd: u32::try_from(prog.as_raw_fd()).map_err(io::Error::other)?,
        ..RawTracepointAttr::default()
    };
    bpf(BPF_RAW_TRACEPOINT_OPEN, &attr)
}
