//! Checks the privileges eBPF tracing needs, so a missing one is named
//! instead of surfacing as a bare EPERM from the kernel.

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What a node agent still needs once its programs are loaded and
/// attached: reading other users' processes' /proc files and memory
/// (thread-context lookup, cgroups, names) as new processes appear. Map
/// updates and ring reads go through the fds it already holds and need
/// no capability.
const KEPT_AFTER_LOAD: [u32; 2] = [CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH];

#[derive(Debug, thiserror::Error)]
#[error(
    "missing capability {missing}: spanlet needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); run it as root or grant them (e.g. setcap cap_bpf,cap_perfmon+ep)"
)]
pub struct CapsError {
    pub missing: &'static str,
}

/// Effective capabilities of this process, from /proc/self/status.
fn effective() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

pub fn check() -> Result<(), CapsError> {
    check_mask(effective())
}

#[derive(Debug, thiserror::Error)]
#[error(
    "missing capability {missing}: `spanlet run` needs CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (see the README's \"Privileges\"); grant them (securityContext.capabilities.add) or run as root"
)]
pub struct NodeCapsError {
    pub missing: String,
}

/// The node agent's needs: [`check`]'s, and reading the /proc files and
/// memory of processes of any user.
pub fn check_node_agent() -> Result<(), NodeCapsError> {
    check_node_mask(effective())
}

fn check_node_mask(eff: u64) -> Result<(), NodeCapsError> {
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    let mut missing: Vec<&str> = Vec::new();
    if !has(CAP_SYS_ADMIN) {
        if !has(CAP_BPF) {
            missing.push("CAP_BPF");
        }
        if !has(CAP_PERFMON) {
            missing.push("CAP_PERFMON");
        }
    }
    for (cap, name) in [
        (CAP_SYS_PTRACE, "CAP_SYS_PTRACE"),
        (CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"),
    ] {
        if !has(cap) {
            missing.push(name);
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(NodeCapsError {
            missing: missing.join(", "),
        })
    }
}

/// The securebits [`harden`] sets and locks: root is no longer special on
/// exec (an exec gets only what the file grants, and there are no file
/// capabilities in the image), a uid change neither clears nor restores
/// capabilities, ambient capabilities cannot be raised, and KEEP_CAPS stays
/// off.
const SECUREBITS: libc::c_int = libc::SECBIT_NOROOT
    | libc::SECBIT_NOROOT_LOCKED
    | libc::SECBIT_NO_SETUID_FIXUP
    | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
    | libc::SECBIT_KEEP_CAPS_LOCKED
    | libc::SECBIT_NO_CAP_AMBIENT_RAISE
    | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;

const CAP_SETPCAP: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(std::io::Error),
    #[error("cannot lock the securebits (with CAP_SETPCAP): {0}")]
    Securebits(std::io::Error),
}

/// What [`harden`] set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hardened {
    /// [`SECUREBITS`] too (only with `CAP_SETPCAP`), not only no_new_privs.
    pub securebits: bool,
}

/// For the node agent, before it starts any thread (each thread has its
/// own credentials and inherits them when it is created, so every thread
/// gets these): sets no_new_privs, so no exec gains what the caller's
/// permitted set lacks (setuid bits and file capabilities are ignored, and
/// root's exec gets no more than it already holds: after
/// [`drop_after_load`], never `CAP_BPF` or `CAP_PERFMON`). With
/// `CAP_SETPCAP` (root with every capability) it also locks
/// [`SECUREBITS`], so an exec gets no capability at all. Without it (the
/// DaemonSet grants four, not `CAP_SETPCAP`) the securebits cannot be set
/// and no_new_privs alone bounds an exec.
pub fn harden() -> Result<Hardened, HardenError> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) only sets a flag of
    // this thread's credentials.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(HardenError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    if effective() & (1u64 << CAP_SETPCAP) == 0 {
        return Ok(Hardened { securebits: false });
    }
    // SAFETY: prctl(PR_SET_SECUREBITS, bits) only changes this thread's
    // securebits.
    if unsafe {
        libc::prctl(
            libc::PR_SET_SECUREBITS,
            SECUREBITS as libc::c_ulong,
            0,
            0,
            0,
        )
    } != 0
    {
        return Err(HardenError::Securebits(std::io::Error::last_os_error()));
    }
    Ok(Hardened { securebits: true })
}

/// After loading: keeps only [`KEPT_AFTER_LOAD`] in this thread's
/// effective and permitted sets (threads it starts later inherit that), and
/// clears the inheritable and ambient sets, so a compromised agent cannot
/// load programs or read kernel memory. With `CAP_SETPCAP` it first drops
/// the rest from the bounding set too. Returns the effective mask now.
pub fn drop_after_load() -> std::io::Result<u64> {
    let eff = effective();
    let keep = KEPT_AFTER_LOAD
        .iter()
        .fold(0u64, |m, &cap| m | (1u64 << cap))
        & eff;
    if eff & (1u64 << CAP_SETPCAP) != 0 {
        drop_bounding_set(keep)?;
    }
    // SAFETY: prctl with these arguments only changes this thread's
    // ambient set.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
    capset(keep)?;
    let now = effective();
    let others = threads_holding_more(keep);
    if !others.is_empty() {
        // Capabilities are per thread: one started before the drop keeps
        // what it had. The agent starts none before, so this is a bug.
        tracing::warn!(
            ?others,
            "threads started before the capability drop keep more than {keep:#x}"
        );
    }
    Ok(now)
}

/// Drops every capability but `keep` from this thread's bounding set
/// (needs `CAP_SETPCAP`).
fn drop_bounding_set(keep: u64) -> std::io::Result<()> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40)
        .min(63);
    for cap in (0..=last).filter(|&c| keep & (1u64 << c) == 0) {
        // SAFETY: prctl(PR_CAPBSET_DROP, cap) only changes this thread's
        // bounding set.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            let err = std::io::Error::last_os_error();
            // A capability this kernel does not know is not there to drop.
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err);
            }
        }
    }
    Ok(())
}

/// capset(2): `keep` as this thread's effective and permitted sets, an
/// empty inheritable set.
fn capset(keep: u64) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |m: u64, hi: bool| if hi { (m >> 32) as u32 } else { m as u32 };
    let data = [false, true].map(|hi| Data {
        effective: half(keep, hi),
        permitted: half(keep, hi),
        inheritable: 0,
    });
    // SAFETY: capset(2) with a version 3 header and its two data structs.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Threads of this process whose permitted set holds more than `keep`.
fn threads_holding_more(keep: u64) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse::<u32>().ok()?;
            let status = std::fs::read_to_string(task.path().join("status")).ok()?;
            let prm = status
                .lines()
                .find_map(|l| l.strip_prefix("CapPrm:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())?;
            (prm & !keep != 0).then_some(tid)
        })
        .collect()
}

fn check_mask(eff: u64) -> Result<(), CapsError> {
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return Ok(());
    }
    if !has(CAP_BPF) {
        return Err(CapsError { missing: "CAP_BPF" });
    }
    if !has(CAP_PERFMON) {
        return Err(CapsError {
            missing: "CAP_PERFMON",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_missing_capability() {
        assert!(check_mask(1 << CAP_SYS_ADMIN).is_ok());
        assert!(check_mask((1 << CAP_BPF) | (1 << CAP_PERFMON)).is_ok());
        assert_eq!(check_mask(1 << CAP_PERFMON).unwrap_err().missing, "CAP_BPF");
        assert_eq!(check_mask(1 << CAP_BPF).unwrap_err().missing, "CAP_PERFMON");
        assert_eq!(check_mask(0).unwrap_err().missing, "CAP_BPF");
    }

    #[test]
    fn names_every_capability_the_node_agent_misses() {
        let all = [CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH]
            .iter()
            .fold(0u64, |m, &c| m | (1 << c));
        assert!(check_node_mask(all).is_ok());
        let no_ptrace = all & !(1 << CAP_SYS_PTRACE);
        assert_eq!(
            check_node_mask(no_ptrace).unwrap_err().missing,
            "CAP_SYS_PTRACE"
        );
        let only_admin = 1 << CAP_SYS_ADMIN;
        assert_eq!(
            check_node_mask(only_admin).unwrap_err().missing,
            "CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH"
        );
    }
}
