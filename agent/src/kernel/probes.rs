//! Every probe spanlet attaches, in one table, attached in one loop that
//! names each failure.
use std::num::NonZeroU32;

use agent_ebpf::programs;
use aya::{
    Btf, Ebpf,
    programs::{BtfTracePoint, UProbe, uprobe::UProbeScope},
};

use crate::kernel::features::Features;

/// Where a program attaches.
#[derive(Clone, Copy, Debug)]
pub enum Hook {
    /// A BTF-typed tracepoint (tp_btf): fires only on scheduler and lock
    /// contention events, never on every syscall.
    TpBtf(&'static str),
    /// A uprobe (or uretprobe) on a libc symbol, in each traced process.
    Libc { symbol: &'static str },
}

/// When a probe is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Always,
    /// With `--mutex-uprobes`.
    MutexUprobes,
    /// When following forks, or tracing every process (whose children
    /// inherit their thread-context slot at fork).
    Forks,
    /// With `--kernel-locks`.
    KernelLocks,
}

/// One row of the attach table.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    /// Program name in the object.
    pub program: &'static str,
    pub hook: Hook,
    pub when: When,
}

pub const PROBES: &[Probe] = &[
    Probe {
        program: programs::SCHED_SWITCH,
        hook: Hook::TpBtf("sched_switch"),
        when: When::Always,
    },
    Probe {
        program: programs::SCHED_WAKING,
        hook: Hook::TpBtf("sched_waking"),
        when: When::Always,
    },
    Probe {
        program: programs::SCHED_PROCESS_EXIT,
        hook: Hook::TpBtf("sched_process_exit"),
        when: When::Always,
    },
    Probe {
        program: programs::HRTIMER_EXPIRE_ENTRY,
        hook: Hook::TpBtf("hrtimer_expire_entry"),
        when: When::Always,
    },
    Probe {
        program: programs::HRTIMER_EXPIRE_EXIT,
        hook: Hook::TpBtf("hrtimer_expire_exit"),
        when: When::Always,
    },
    Probe {
        program: programs::SCHED_PROCESS_EXEC,
        hook: Hook::TpBtf("sched_process_exec"),
        when: When::Always,
    },
    Probe {
        program: programs::SCHED_PROCESS_FORK,
        hook: Hook::TpBtf("sched_process_fork"),
        when: When::Forks,
    },
    Probe {
        program: programs::CONTENTION_BEGIN,
        hook: Hook::TpBtf("contention_begin"),
        when: When::KernelLocks,
    },
    Probe {
        program: programs::CONTENTION_END,
        hook: Hook::TpBtf("contention_end"),
        when: When::KernelLocks,
    },
    Probe {
        program: programs::MUTEX_LOCK_ENTER,
        hook: Hook::Libc {
            symbol: "pthread_mutex_lock",
        },
        when: When::MutexUprobes,
    },
    Probe {
        program: programs::MUTEX_LOCK_EXIT,
        hook: Hook::Libc {
            symbol: "pthread_mutex_lock",
        },
        when: When::MutexUprobes,
    },
    Probe {
        program: programs::MUTEX_UNLOCK_ENTER,
        hook: Hook::Libc {
            symbol: "pthread_mutex_unlock",
        },
        when: When::MutexUprobes,
    },
];

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("program {0} is missing from the eBPF object")]
    Missing(&'static str),
    #[error("program {program} has the wrong type")]
    WrongType {
        program: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("loading program {program} into the kernel failed")]
    Load {
        program: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("attaching program {program} to {hook} failed")]
    Attach {
        program: &'static str,
        hook: String,
        source: aya::programs::ProgramError,
    },
    #[error("reading kernel BTF for tp_btf programs failed: {0}")]
    Btf(#[from] aya::BtfError),
    #[error("finding libc for --mutex-uprobes failed: {0}")]
    NoLibc(String),
}

/// What to attach.
pub struct AttachPlan<'a> {
    pub features: &'a Features,
    /// Processes the libc uprobes are scoped to.
    pub uprobe_pids: &'a [u32],
    /// A node agent keeps running without the opt-in kernel-lock probes
    /// when a node's kernel refuses them (counted, and logged), rather than
    /// failing on that node alone.
    pub tolerate_optional: bool,
}

fn wanted(probe: &Probe, plan: &AttachPlan<'_>) -> bool {
    match probe.when {
        When::Always => true,
        When::MutexUprobes => plan.features.mutex_uprobes,
        When::Forks => plan.features.follow_forks || plan.features.trace_all,
        When::KernelLocks => plan.features.kernel_locks,
    }
}

/// Loads and attaches every probe the plan asks for; returns how many
/// optional ones failed and were left out (see `tolerate_optional`).
pub fn attach_all(ebpf: &mut Ebpf, plan: &AttachPlan<'_>) -> Result<u32, AttachError> {
    let btf = Btf::parse_file(
        crate::kernel::btf::vmlinux_btf_path(),
        aya::Endianness::default(),
    )?;
    let mut left_out = 0;
    for probe in PROBES.iter().filter(|p| wanted(p, plan)) {
        match attach_one(ebpf, probe, &btf) {
            Ok(()) => {}
            Err(err) if plan.tolerate_optional && probe.when == When::KernelLocks => {
                tracing::warn!(program = probe.program, %err, "probe left out; kernel lock waits will not be recorded");
                left_out += 1;
            }
            Err(err) => return Err(err),
        }
    }
    if plan.features.mutex_uprobes {
        attach_uprobes(ebpf, plan.uprobe_pids)?;
    }
    Ok(left_out)
}

fn attach_one(ebpf: &mut Ebpf, probe: &Probe, btf: &Btf) -> Result<(), AttachError> {
    let program = ebpf
        .program_mut(probe.program)
        .ok_or(AttachError::Missing(probe.program))?;
    let wrong_type = |source| AttachError::WrongType {
        program: probe.program,
        source,
    };
    let load_err = |source| AttachError::Load {
        program: probe.program,
        source,
    };
    match probe.hook {
        Hook::TpBtf(tracepoint) => {
            let prog: &mut BtfTracePoint = program.try_into().map_err(wrong_type)?;
            prog.load(tracepoint, btf).map_err(load_err)?;
            prog.attach().map_err(|source| AttachError::Attach {
                program: probe.program,
                hook: format!("tp_btf/{tracepoint}"),
                source,
            })?;
        }
        Hook::Libc { .. } => {
            let prog: &mut UProbe = program.try_into().map_err(wrong_type)?;
            prog.load().map_err(load_err)?;
        }
    }
    Ok(())
}

/// Attaches the (loaded) libc uprobes to more processes.
pub fn attach_uprobes(ebpf: &mut Ebpf, pids: &[u32]) -> Result<(), AttachError> {
    for pid in pids.iter().filter_map(|&p| NonZeroU32::new(p)) {
        let lib = pthread_lib_of(pid.get())?;
        for probe in PROBES.iter().filter(|p| p.when == When::MutexUprobes) {
            let Hook::Libc { symbol } = probe.hook else {
                continue;
            };
            let program = ebpf
                .program_mut(probe.program)
                .ok_or(AttachError::Missing(probe.program))?;
            let prog: &mut UProbe =
                program
                    .try_into()
                    .map_err(|source| AttachError::WrongType {
                        program: probe.program,
                        source,
                    })?;
            prog.attach(symbol, &lib, UProbeScope::OneProcess(pid))
                .map_err(|source| AttachError::Attach {
                    program: probe.program,
                    hook: format!("uprobe {lib}:{symbol} (pid {pid})"),
                    source,
                })?;
        }
    }
    Ok(())
}

/// The library a process takes `pthread_mutex_lock` from, as a path this
/// agent can open: libpthread where mapped (glibc before 2.34), else libc,
/// seen through `/proc/PID/root` (the process may live in another mount
/// namespace). Falls back to the agent's own libc for a process that has
/// not mapped one yet (a command just launched).
fn pthread_lib_of(pid: u32) -> Result<String, AttachError> {
    let mapped = |maps: &str, prefix: &str| {
        maps.lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.rsplit('/').next().is_some_and(|f| f.starts_with(prefix)))
            .map(str::to_owned)
    };
    if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        && let Some(path) = mapped(&maps, "libpthread.so").or_else(|| mapped(&maps, "libc.so"))
    {
        return Ok(format!("/proc/{pid}/root{path}"));
    }
    let own = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| AttachError::NoLibc(e.to_string()))?;
    mapped(&own, "libc.so")
        .ok_or_else(|| AttachError::NoLibc("libc is not mapped in this process".into()))
}
