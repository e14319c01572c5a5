//! What /proc says about traced processes and their threads.
use std::{fs, path::PathBuf};

use crate::model::{ProcessInfo, ThreadInfo};

/// `PF_EXITING` in a task's flags (`/proc/PID/stat` field 9): do_exit has
/// begun, before the kernel's exit hooks run.
const PF_EXITING: u64 = 0x4;

/// What `/proc/PID/stat` (or a thread's) says about a task.
struct TaskStat {
    state: char,
    flags: u64,
    /// Field 22: when the process started, in clock ticks since boot.
    start_ticks: u64,
}

impl TaskStat {
    fn read(path: &str) -> Option<Self> {
        parse_stat(&fs::read_to_string(path).ok()?)
    }

    /// Neither exiting nor exited (a zombie, or dead).
    fn live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x') && self.flags & PF_EXITING == 0
    }
}

fn parse_stat(stat: &str) -> Option<TaskStat> {
    // The fields follow the last ')' (the command name may contain one),
    // from field 3 (the state) on.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(TaskStat {
        state: fields.first()?.chars().next()?,
        flags: fields.get(6)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// When the process started (clock ticks since boot, as `/proc/PID/stat`
/// says), if it is alive: one of its threads is neither exiting nor
/// exited. With the PID, the start time names one process: a PID is
/// reused, the pair is not (but within one tick).
pub fn live_start(pid: u32) -> Option<u64> {
    let leader = TaskStat::read(&format!("/proc/{pid}/stat"))?;
    if leader.live() {
        return Some(leader.start_ticks);
    }
    // The main thread may have ended alone (it is a zombie until the last
    // thread ends) while others run.
    let others = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    others
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&tid| tid != pid)
        .any(|tid| {
            TaskStat::read(&format!("/proc/{pid}/task/{tid}/stat")).is_some_and(|t| t.live())
        })
        .then_some(leader.start_ticks)
}

/// A kernel start time (`task_struct.start_boottime`, ns) in the clock
/// ticks `/proc/PID/stat` shows it in, rounded the same way.
pub fn boottime_ns_to_ticks(ns: u64) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&hz| hz > 0)
        .unwrap_or(100);
    ns / (1_000_000_000 / hz)
}

/// Whether the process is still running: alive as [`live_start`] says.
pub fn is_running(pid: u32) -> bool {
    live_start(pid).is_some()
}

/// Every process now (thread group leaders: /proc lists only those).
pub fn all_pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Whether `tid` is a live thread of process `pid`.
pub fn is_thread_of(pid: u32, tid: u32) -> bool {
    PathBuf::from(format!("/proc/{pid}/task/{tid}")).exists()
}

fn trim(s: String) -> String {
    s.trim_end_matches('\n').to_owned()
}

pub fn process_info(pid: u32) -> Option<ProcessInfo> {
    let comm = trim(fs::read_to_string(format!("/proc/{pid}/comm")).ok()?);
    let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let lines = cgroups(pid);
    let (container_id, pod_uid) = container_and_pod(&lines);
    Some(ProcessInfo {
        pid,
        comm,
        cmdline,
        ns_pid: ns_id(&format!("/proc/{pid}/status")),
        cgroup: lines
            .into_iter()
            .find(|(id, ..)| id == "0")
            .map(|(.., path)| path),
        container_id,
        pod_uid,
    })
}

/// The innermost id of a task whose `NSpid` line lists more than one (it
/// lives in a PID namespace below the agent's); `None` otherwise.
fn ns_id(status_path: &str) -> Option<u32> {
    let status = fs::read_to_string(status_path).ok()?;
    let ids = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let mut ids = ids.split_whitespace();
    ids.next()?;
    ids.last()?.parse().ok()
}

/// A thread's id in its process's PID namespace, when that is nested.
pub fn thread_ns_tid(pid: u32, tid: u32) -> Option<u32> {
    ns_id(&format!("/proc/{pid}/task/{tid}/status"))
}

/// The lines of /proc/PID/cgroup as (hierarchy id, controllers, path):
/// one `0::path` line on cgroup v2, several on v1 or hybrid hosts.
pub fn cgroups(pid: u32) -> Vec<(String, String, String)> {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            Some((
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
            ))
        })
        .collect()
}

/// The container a process runs in and its pod's uid, from the ids in its
/// cgroup paths (/proc/PID/cgroup lines): the v2 line first, then any v1
/// hierarchy (hybrid hosts keep containers in v1 hierarchies only).
pub fn container_and_pod(lines: &[(String, String, String)]) -> (Option<String>, Option<String>) {
    let v2 = lines.iter().filter(|(id, ..)| id == "0");
    let v1 = lines.iter().filter(|(id, ..)| id != "0");
    let paths: Vec<&str> = v2.chain(v1).map(|(.., path)| path.as_str()).collect();
    (
        paths
            .iter()
            .find_map(|p| crate::host::cgroup_ids::container_id_from_cgroup(p)),
        paths
            .iter()
            .find_map(|p| crate::host::cgroup_ids::pod_uid_from_cgroup(p)),
    )
}

pub fn thread_name(pid: u32, tid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .ok()
        .map(trim)
}

/// Every thread of a process now.
pub fn threads(pid: u32) -> Vec<ThreadInfo> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|tid| {
            Some(ThreadInfo {
                pid,
                tid,
                name: thread_name(pid, tid)?,
                ns_tid: thread_ns_tid(pid, tid),
            })
        })
        .collect()
}

/// (major, minor) of a kernel release string like "6.18.44-foo".
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Whether this process is in a PID namespace below the initial one: its
/// `NSpid` line then lists more than one id.
pub fn in_nested_pid_namespace() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .is_some_and(|ids| ids.split_whitespace().count() > 1)
    })
}

/// The process (thread group) a thread id belongs to.
pub fn tgid_of(tid: u32) -> Option<u32> {
    fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()
}

pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(trim)
        .unwrap_or_default()
}

pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(trim)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_is_not_running() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not reaped yet: /proc/PID exists, in state Z once it has exited.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while is_running(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            PathBuf::from(format!("/proc/{pid}")).exists(),
            "the zombie should still be in /proc"
        );
        assert!(!is_running(pid));
        child.wait().unwrap();
    }

    #[test]
    fn start_times_name_a_process_and_match_the_kernel_clock() {
        let me = std::process::id();
        let start = live_start(me).expect("this process is alive");
        assert_eq!(live_start(me), Some(start));
        // A child started after this process: a later (or, within one
        // tick, the same) start time.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let child_start = live_start(child.id()).expect("the child is alive");
        assert!(child_start >= start);
        // CLOCK_BOOTTIME now, in ticks, is no earlier than the start.
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid out pointer.
        assert_eq!(
            unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) },
            0
        );
        let now_ns = now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64;
        assert!(boottime_ns_to_ticks(now_ns) >= child_start);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(live_start(child.id()), None);
    }

    #[test]
    fn an_exiting_task_is_not_live() {
        let stat = |state: &str, flags: u64| {
            format!("42 (a (b) c) {state} 1 42 42 0 -1 {flags} 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0")
        };
        let running = parse_stat(&stat("R", 0x400000)).unwrap();
        assert!(running.live());
        assert_eq!(running.start_ticks, 12345);
        assert!(!parse_stat(&stat("R", 0x400004)).unwrap().live());
        assert!(!parse_stat(&stat("Z", 0x400000)).unwrap().live());
        assert!(parse_stat("42 (x) R 1").is_none());
    }

    #[test]
    fn versions_and_thread_groups() {
        assert_eq!(kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(kernel_version("5.4.0"), Some((5, 4)));
        assert_eq!(kernel_version("garbage"), None);
        assert!(
            !in_nested_pid_namespace(),
            "tests run in the initial PID namespace"
        );
        let pid = std::process::id();
        assert_eq!(tgid_of(pid), Some(pid));
        // A second, live thread maps to this process.
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() } as u32).unwrap();
            let _ = done_rx.recv();
        });
        let tid = tid_rx.recv().unwrap();
        assert_ne!(tid, pid);
        assert_eq!(tgid_of(tid), Some(pid));
        done_tx.send(()).unwrap();
        thread.join().unwrap();
    }

    #[test]
    fn sees_own_threads() {
        let pid = std::process::id();
        let me = threads(pid);
        assert!(me.iter().any(|t| t.tid == pid), "{me:?}");
        assert!(is_thread_of(pid, pid));
        assert!(is_running(pid));
        assert!(!is_running(u32::MAX - 1));
        assert!(process_info(pid).is_some_and(|p| !p.cmdline.is_empty()));
    }
}

/// A file mapped in a process: where its offset 0 starts and ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub path: String,
}

/// The files mapped at offset 0 in `pid` (one entry per file), from
/// `/proc/PID/maps`; empty when the process is gone.
pub fn file_mappings(pid: u32) -> Vec<Mapping> {
    let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    parse_file_mappings(&maps)
}

fn parse_file_mappings(maps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(_perms), Some(offset), Some(_dev), Some(_inode)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let path = fields.collect::<Vec<_>>().join(" ");
        if !path.starts_with('/') || u64::from_str_radix(offset, 16) != Ok(0) {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        if !out.iter().any(|m| m.path == path) {
            out.push(Mapping { start, end, path });
        }
    }
    out
}

#[cfg(test)]
mod mapping_tests {
    use super::*;

    #[test]
    fn first_mapping_of_each_file() {
        let maps = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 123 /usr/bin/app
55d0c0a01000-55d0c0a02000 r-xp 00001000 fd:01 123 /usr/bin/app
7f0000000000-7f0000001000 r--p 00000000 fd:01 456 /usr/lib/libctx.so
7f0000001000-7f0000002000 r-xp 00001000 fd:01 456 /usr/lib/libctx.so
7f0000100000-7f0000200000 rw-p 00000000 00:00 0 [heap]
7f0000300000-7f0000301000 r--p 00000000 fd:01 789 /tmp/with space.so
";
        let got = parse_file_mappings(maps);
        let paths: Vec<&str> = got.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/usr/bin/app", "/usr/lib/libctx.so", "/tmp/with space.so"]
        );
        assert_eq!(
            (got[1].start, got[1].end),
            (0x7f00_0000_0000, 0x7f00_0000_1000)
        );
    }
}
