//! What the harness reads about a tracer process from /proc: CPU time, peak
//! memory, and the run-time statistics of the eBPF programs it holds open.

use std::{
    collections::BTreeMap,
    fs,
    os::fd::{AsRawFd as _, OwnedFd},
    path::Path,
    process::Command,
};

use serde::Serialize;

/// One eBPF program's counters, from `/proc/PID/fdinfo/FD` of a `bpf-prog` fd.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProgStats {
    pub id: u32,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// A tracer process at one instant.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: Option<u64>,
    pub vm_hwm_kib: Option<u64>,
    /// By program id.
    pub progs: BTreeMap<u32, ProgStats>,
}

/// Reads `pid`'s CPU time, peak RSS, and (when `progs`) its eBPF programs.
pub fn sample(pid: u32, progs: bool) -> Sample {
    let proc_dir = Path::new("/proc").join(pid.to_string());
    Sample {
        cpu_ticks: fs::read_to_string(proc_dir.join("stat"))
            .ok()
            .and_then(|s| cpu_ticks(&s)),
        vm_hwm_kib: fs::read_to_string(proc_dir.join("status"))
            .ok()
            .and_then(|s| status_kib(&s, "VmHWM")),
        progs: if progs {
            bpf_progs(&proc_dir)
        } else {
            BTreeMap::new()
        },
    }
}

/// A tracer's programs, held open by the harness from the start of the timed
/// phase. A tracer that stops with its workload unloads its programs, and the
/// workload's last line can come after it exited (sysbench prints its report
/// then): held here, the programs stay loaded (detached: they no longer run)
/// and their counters stay readable.
pub struct HeldProgs(Vec<OwnedFd>);

impl HeldProgs {
    /// Opens every program of `sample`; one already gone is left out.
    pub fn open(sample: &Sample) -> Self {
        Self(
            sample
                .progs
                .keys()
                .filter_map(|&id| super::bpfstats::prog_fd_by_id(id).ok())
                .collect(),
        )
    }

    /// The held programs' counters, then any program of `tracer` not held
    /// (loaded after the start).
    pub fn stats(&self, tracer: &Sample) -> BTreeMap<u32, ProgStats> {
        let own = Path::new("/proc/self/fdinfo");
        let mut progs: BTreeMap<u32, ProgStats> = self
            .0
            .iter()
            .filter_map(|fd| fs::read_to_string(own.join(fd.as_raw_fd().to_string())).ok())
            .filter_map(|text| parse_prog_fdinfo(&text))
            .map(|stats| (stats.id, stats))
            .collect();
        for (id, stats) in &tracer.progs {
            progs.entry(*id).or_insert_with(|| stats.clone());
        }
        progs
    }
}

/// Clock ticks per second for `/proc/PID/stat` times.
pub fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command
/// name may hold spaces and parentheses, so fields are counted after the last `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is the first; utime is field 14.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `Name:   123 kB` line of `/proc/PID/status`, in KiB.
pub fn status_kib(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The `prog_id`, `run_time_ns` and `run_cnt` lines of a bpf-prog fdinfo.
pub fn parse_prog_fdinfo(text: &str) -> Option<ProgStats> {
    let mut id = None;
    let mut stats = ProgStats::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "prog_id" => id = value.parse().ok(),
            "run_time_ns" => stats.run_time_ns = value.parse().ok()?,
            "run_cnt" => stats.run_cnt = value.parse().ok()?,
            _ => {}
        }
    }
    stats.id = id?;
    Some(stats)
}

/// Every eBPF program `proc_dir`'s process holds an fd to, by id.
fn bpf_progs(proc_dir: &Path) -> BTreeMap<u32, ProgStats> {
    let mut progs = BTreeMap::new();
    let Ok(fds) = fs::read_dir(proc_dir.join("fd")) else {
        return progs;
    };
    for fd in fds.flatten() {
        let is_prog = fs::read_link(fd.path())
            .is_ok_and(|target| target.to_string_lossy() == "anon_inode:bpf-prog");
        if !is_prog {
            continue;
        }
        let info = proc_dir.join("fdinfo").join(fd.file_name());
        if let Some(stats) = fs::read_to_string(info)
            .ok()
            .and_then(|t| parse_prog_fdinfo(&t))
        {
            progs.insert(stats.id, stats);
        }
    }
    progs
}

/// Loaded programs' names by id, from one `bpftool prog show --json`
/// (empty when bpftool is missing).
pub fn prog_names() -> BTreeMap<u32, String> {
    Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| parse_prog_names(&out.stdout))
        .unwrap_or_default()
}

fn parse_prog_names(json: &[u8]) -> BTreeMap<u32, String> {
    let Ok(serde_json::Value::Array(progs)) = serde_json::from_slice(json) else {
        return BTreeMap::new();
    };
    progs
        .iter()
        .filter_map(|p| {
            let id = u32::try_from(p["id"].as_u64()?).ok()?;
            Some((id, p["name"].as_str()?.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_count_fields_after_the_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 1139 0 0 0 \
                    25 7 0 0 20 0 3 0 12345 1000 200 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(32));
        assert_eq!(cpu_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn status_lines_in_kib() {
        let status = "Name:\tspanlet\nVmPeak:\t  500 kB\nVmHWM:\t   20480 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(20480));
        assert_eq!(status_kib(status, "VmRSS"), Some(1000));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn prog_fdinfo() {
        let text = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2081\n\
                    prog_type:\t26\nprog_jited:\t1\nprog_tag:\t7a7c1a4b8d8e1e7a\n\
                    memlock:\t4096\nprog_id:\t315\nrun_time_ns:\t123456\nrun_cnt:\t789\n\
                    recursion_misses:\t0\nverified_insns:\t321\n";
        assert_eq!(
            parse_prog_fdinfo(text),
            Some(ProgStats {
                id: 315,
                run_time_ns: 123456,
                run_cnt: 789
            })
        );
        // A map's fdinfo has no prog_id.
        assert_eq!(parse_prog_fdinfo("map_type:\t27\nmax_entries:\t1\n"), None);
    }

    #[test]
    fn bpftool_names() {
        let json = br#"[{"id":12,"type":"tracing","name":"sched_switch","tag":"ab"},
                        {"id":13,"type":"kprobe"}]"#;
        let names = parse_prog_names(json);
        assert_eq!(names.len(), 1);
        assert_eq!(names[&12], "sched_switch");
        assert!(parse_prog_names(b"not json").is_empty());
    }
}
