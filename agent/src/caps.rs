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

/// After loading: keeps only [`KEPT_AFTER_LOAD`] in this thread's
/// effective and permitted sets (threads it starts later inherit that), and
/// clears the inheritable and ambient sets, so a compromised agent cannot
/// load programs or read kernel memory. Returns the effective mask now.
pub fn drop_after_load() -> std::io::Result<u64> {
    let keep = KEPT_AFTER_LOAD
        .iter()
        .fold(0u64, |m, &cap| m | (1u64 << cap))
        & effective();
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
    Ok(effective())
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
