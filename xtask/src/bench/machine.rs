//! The machine the numbers came from, and the tools that made them.

use std::{fs, path::Path, process::Command, time::SystemTime};

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub memory_gib: Option<f64>,
    pub kernel: String,
    pub os: String,
    /// `systemd-detect-virt --vm` and `--container`, or the CPU's
    /// hypervisor flag.
    pub virtualization: String,
    pub virtual_machine: bool,
    pub spanlet: String,
    pub bpftrace: String,
    pub sysbench: String,
    pub python: String,
    pub gcc: String,
    pub git: String,
    /// UTC, e.g. 2025-11-21T06:42:24Z.
    pub date: String,
}

pub fn describe(spanlet: &Path, python: &Path) -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let detect = |kind: &str| {
        first_line(Command::new("systemd-detect-virt").arg(kind))
            .filter(|v| !v.is_empty() && v != "none")
    };
    let vm = detect("--vm").or_else(|| {
        cpuinfo
            .contains(" hypervisor")
            .then(|| "hypervisor CPU flag".into())
    });
    let container = detect("--container");
    let virtualization = match (&vm, &container) {
        (Some(vm), Some(c)) => format!("virtual machine ({vm}), container ({c})"),
        (Some(vm), None) => format!("virtual machine ({vm})"),
        (None, Some(c)) => format!("container ({c})"),
        (None, None) => "none detected".into(),
    };
    Machine {
        cpu: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map_or("unknown".into(), |(_, v)| v.trim().to_owned()),
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        memory_gib: super::procfs::status_kib(&meminfo, "MemTotal")
            .map(|k| k as f64 / (1024.0 * 1024.0)),
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("unknown".into(), |s| s.trim().to_owned()),
        os: os_release
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map_or("unknown".into(), |v| v.trim_matches('"').to_owned()),
        virtualization,
        virtual_machine: vm.is_some(),
        spanlet: version(Command::new(spanlet).arg("--version")),
        bpftrace: version(Command::new("bpftrace").arg("--version")),
        sysbench: version(Command::new("sysbench").arg("--version")),
        python: version(Command::new(python).arg("--version")),
        gcc: version(Command::new("gcc").arg("--version")),
        git: git_commit(),
        date: utc_now(),
    }
}

fn first_line(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next().unwrap_or_default().trim().to_owned())
}

fn version(cmd: &mut Command) -> String {
    first_line(cmd)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// `abc1234` or `abc1234 (with uncommitted changes)`.
fn git_commit() -> String {
    let root = crate::util::workspace_root();
    let head =
        first_line(
            Command::new("git")
                .arg("-C")
                .arg(&root)
                .args(["rev-parse", "--short", "HEAD"]),
        )
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    if dirty {
        format!("{head} (with uncommitted changes)")
    } else {
        head
    }
}

pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian).
pub fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_763_707_344), "2025-11-21T06:42:24Z");
    }
}
