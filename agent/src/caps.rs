//! Checks the privileges eBPF tracing needs, so a missing one is named
//! instead of surfacing as a bare EPERM from the kernel.

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

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
}
