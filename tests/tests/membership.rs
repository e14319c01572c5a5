//! `spanlet run --cgroup`: the kernel's PID set holds exactly the live
//! selected processes, through a churn of short-lived contended processes
//! (some moved into the cgroup by a parent outside it, some forked inside
//! it, both reaped late, so zombies linger), and a process outside the
//! selection that lands on a PID the agent traced before is not traced.
//!
//! The kernel map is read with bpftool (`cargo xtask setup` installs it),
//! found through the agent's own map file descriptors (other agents may
//! run on the machine, with maps of the same name).
//!
//! Needs root and eBPF, rotel and bpftool.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use spanlet_tests::{
    Background, C_MUTEX,
    collector::{Received, Rotel},
    kernel_ready, kernel_test_lock,
    node::{TestCgroup, http_get, in_cgroup, metric, start_agent, wait_for_metric},
    python,
};

/// Short-lived processes: `C_MUTEX 1 1` (three threads wait about 1 ms for
/// a mutex, once), started in batches and reaped only after a while, so
/// exited ones linger as zombies. `inside`: this driver joins the cgroup
/// and forks there (the kernel follows the forks); `outside`: it stays out
/// and each child moves itself in before exec (the agent adds it at exec).
/// Prints the children's PIDs, one a line.
const CHURN: &str = r#"
import os, sys, time
cgroup, program, seconds, mode = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
def join(pid):
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
        f.write(str(pid))
if mode == "inside":
    join(os.getpid())
end = time.time() + seconds
while time.time() < end:
    kids = []
    for _ in range(24):
        pid = os.fork()
        if pid == 0:
            try:
                if mode == "outside":
                    join(os.getpid())
                null = os.open("/dev/null", os.O_WRONLY)
                os.dup2(null, 1)
                os.execv(program, [program, "1", "1"])
            finally:
                os._exit(127)
        kids.append(pid)
    time.sleep(0.3)
    for pid in kids:
        os.waitpid(pid, 0)
        print(pid)
"#;

/// Arguments of the process started outside the cgroup: rounds and hold
/// (ms) that no churn process uses.
const OUTSIDE_ARGS: [&str; 2] = ["7", "25"];

/// The id of the agent's `SPANLET_PIDS` map: among the maps it holds open
/// (their ids are in its fds' fdinfo), the one with that name.
fn pid_map_id(agent: u32) -> u32 {
    let fds = std::fs::read_dir(format!("/proc/{agent}/fdinfo")).expect("agent fdinfo");
    let ids: BTreeSet<u32> = fds
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("map_id:"))
                .and_then(|id| id.trim().parse().ok())
        })
        .collect();
    ids.into_iter()
        .find(|id| {
            let show = bpftool(&["map", "show", "id", &id.to_string()]);
            show["name"] == "SPANLET_PIDS"
        })
        .expect("the agent holds a SPANLET_PIDS map")
}

fn bpftool(args: &[&str]) -> serde_json::Value {
    let out = spanlet_tests::bpftool(&[&["--json"], args].concat());
    serde_json::from_slice(&out).expect("bpftool prints JSON")
}

/// The PIDs in the kernel's PID set now.
fn kernel_pids(map_id: u32) -> BTreeSet<u32> {
    let dump = bpftool(&["map", "dump", "id", &map_id.to_string()]);
    dump.as_array()
        .expect("a list of entries")
        .iter()
        .map(|entry| {
            let bytes: Vec<u8> = entry["key"]
                .as_array()
                .expect("key bytes")
                .iter()
                .map(|b| {
                    let hex = b.as_str().expect("a hex byte");
                    u8::from_str_radix(hex.trim_start_matches("0x"), 16).expect("hex")
                })
                .collect();
            u32::from_le_bytes(bytes.try_into().expect("a 4-byte key"))
        })
        .collect()
}

/// Alive and not a zombie, as /proc says.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.trim().chars().next());
        !matches!(state, None | Some('Z' | 'X'))
    })
}

/// What the kernel map holds, each PID with whether it is alive and its
/// cgroup, for failure messages.
fn describe(pids: &BTreeSet<u32>) -> String {
    pids.iter()
        .map(|pid| {
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            format!("{pid} alive={} {}", alive(*pid), cgroup.trim())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Log records per `process.pid`.
fn logs_by_pid(got: &Received) -> BTreeMap<u32, usize> {
    let mut by_pid = BTreeMap::new();
    for log in &got.logs {
        let pid = got.resources[log.resource]
            .get("process.pid")
            .and_then(|v| v.strip_prefix("Int(")?.strip_suffix(')')?.parse().ok());
        if let Some(pid) = pid {
            *by_pid.entry(pid).or_insert(0) += 1;
        }
    }
    by_pid
}

/// What rotel has once the agent exported every spanlet it recorded.
fn everything_exported(rotel: &Rotel, port: u16) -> Received {
    let text = http_get(port, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let recorded: f64 = text
        .lines()
        .filter(|l| l.starts_with("spanlet_spanlets_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    let exported = wait_for_metric(
        port,
        "spanlet_exported_spanlets_total",
        Duration::from_secs(20),
        |v| v >= recorded,
    );
    rotel.received(exported as usize, 0)
}

/// Starts `C_MUTEX OUTSIDE_ARGS` (outside any selected cgroup) on one of
/// `targets`, PIDs the agent traced before that are free now: the kernel
/// gives a new process the PID after `ns_last_pid`. Other processes start
/// meanwhile, so it takes some tries; a try that lands elsewhere is
/// killed. Returns the process and the PIDs of every try.
fn start_on_reused_pid(targets: &[u32]) -> (Child, Vec<u32>) {
    let mut tries = Vec::new();
    for _ in 0..50 {
        for &target in targets.iter().rev().filter(|&&p| p > 300 && !alive(p)) {
            std::fs::write("/proc/sys/kernel/ns_last_pid", (target - 1).to_string())
                .expect("write ns_last_pid");
            let mut child = Command::new(C_MUTEX)
                .args(OUTSIDE_ARGS)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("start the outside process");
            tries.push(child.id());
            if child.id() == target {
                return (child, tries);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    panic!("no process landed on a formerly traced PID in {tries:?}");
}

#[test]
fn run_keeps_only_live_selected_processes_through_a_churn_and_ignores_reused_pids() {
    let _serial = kernel_test_lock();
    if !kernel_ready() {
        return;
    }
    let Some(rotel) = Rotel::start() else {
        return;
    };
    let cgroup = TestCgroup::new("churn");
    let port = Rotel::free_ports().0;
    let parent = cgroup.parent.display().to_string();
    // The churn's 1 ms waits are counted, not exported; the 25 ms ones of
    // the processes below are.
    let agent = start_agent(&["--cgroup", &parent, "--min-wait", "5ms"], &rotel, port);
    let map = pid_map_id(agent.0.id());

    // One selected process lives through it all.
    let keeper = Background::from_command(in_cgroup(&cgroup.leaf, "sleep", &["300"]));
    let leaf = cgroup.leaf.display().to_string();
    let churn = |mode: &str| {
        let mut cmd = Command::new(python());
        cmd.args(["-c", CHURN, &leaf, C_MUTEX, "15", mode])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        Background::from_command(cmd)
    };
    let (inside, outside) = (churn("inside"), churn("outside"));
    let drivers = BTreeSet::from([inside.pid(), keeper.pid()]);
    // PIDs seen in the kernel set meanwhile: traced at some point.
    let mut traced_once = BTreeSet::new();
    let started = Instant::now();
    let mut children = Vec::new();
    for mut driver in [inside, outside] {
        while driver.running() {
            traced_once.extend(kernel_pids(map));
            sleep(Duration::from_millis(250));
        }
        let (status, out) = driver.wait(Duration::from_secs(5));
        assert!(status.success(), "churn driver failed ({status})");
        children.extend(out.lines().filter_map(|l| l.parse::<u32>().ok()));
    }
    println!(
        "churn: {} processes in {:?}; {} PIDs seen in the kernel set",
        children.len(),
        started.elapsed(),
        traced_once.len()
    );
    assert!(
        children.len() >= 1000,
        "churn too small: {}",
        children.len()
    );
    let mut failures = Vec::new();

    // Left: the keeper alone, in the gauge and in the kernel set (within a
    // rescan, every 5 s).
    let deadline = Instant::now() + Duration::from_secs(12);
    let gauge = loop {
        let gauge = traced_gauge(port);
        if gauge <= 1.0 || Instant::now() > deadline {
            break gauge;
        }
        sleep(Duration::from_millis(200));
    };
    let left = kernel_pids(map);
    if left != BTreeSet::from([keeper.pid()]) || gauge != 1.0 {
        failures.push(format!(
            "after the churn, the gauge is {gauge} and the kernel PID set holds more than the keeper {}:\n{}",
            keeper.pid(),
            describe(&left)
        ));
    }

    // A process outside the cgroup on a PID the agent traced (one still in
    // the set first, if any): not traced.
    let before = everything_exported(&rotel, port);
    let formerly: Vec<u32> = children
        .iter()
        .copied()
        .filter(|p| traced_once.contains(p) && !drivers.contains(p) && !left.contains(p))
        .chain(left.iter().copied().filter(|p| !drivers.contains(p)))
        .collect();
    assert!(!formerly.is_empty(), "no churn process was seen traced");
    let (mut reused, tries) = start_on_reused_pid(&formerly);
    let reused_pid = reused.id();
    assert!(reused.wait().expect("outside process").success());
    // Then a selected one, which is traced: once its spanlets are in, any
    // of the outside process (recorded earlier) would be too.
    let control = Background::from_command(in_cgroup(&cgroup.leaf, C_MUTEX, &OUTSIDE_ARGS));
    let control_pid = control.pid();
    let (status, _) = control.wait(Duration::from_secs(30));
    assert!(status.success());
    // The metrics may not count the control's waits yet when it exits, so
    // rotel is watched for them instead (the exporter keeps order).
    let after = rotel.received_until("the selected control process's waits", |got| {
        logs_by_pid(got).get(&control_pid).is_some_and(|&n| n > 0)
    });
    let (before, after) = (logs_by_pid(&before), logs_by_pid(&after));
    assert!(
        after.get(&control_pid).is_some_and(|&n| n > 0),
        "the selected control process {control_pid} was not traced: {after:?}"
    );
    for pid in tries {
        if after.get(&pid) != before.get(&pid) {
            failures.push(format!(
                "the outside process on PID {pid} was traced: {:?} spanlets, {:?} before (landed on {reused_pid})",
                after.get(&pid),
                before.get(&pid)
            ));
        }
    }
    drop(keeper);
    drop(agent);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `spanlet_traced_processes` now.
fn traced_gauge(port: u16) -> f64 {
    let text = http_get(port, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    metric(&text, "spanlet_traced_processes").expect("the traced-processes gauge")
}
