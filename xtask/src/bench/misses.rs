//! For each missed cost target, the profile that explains it, computed from
//! the same run's eBPF statistics: what spanlet's programs spend, against
//! what a program that does almost nothing costs on this machine.
use std::fmt::Write as _;

use agent_ebpf::programs;

use super::{
    results::Results,
    scenarios::{Mode, Scenario},
    summary::{ProgLine, Status},
};

/// The trivial program: one per-CPU store (`hrtimer_expire_exit`).
const TRIVIAL: &str = "hrtimer_expire_exit";

fn spanlet_progs(r: &Results, scenario: Scenario) -> Option<&[ProgLine]> {
    r.bpf_stats
        .iter()
        .find(|c| c.scenario == scenario && c.mode == Mode::Spanlet)
        .map(|c| c.progs.as_slice())
}

fn prog<'a>(progs: &'a [ProgLine], name: &str) -> Option<&'a ProgLine> {
    progs.iter().find(|p| p.name == name)
}

/// The trivial program's lowest mean run time among the scenarios where it
/// ran often enough to say.
fn trivial_ns(r: &Results) -> Option<f64> {
    r.bpf_stats
        .iter()
        .filter(|c| c.mode == Mode::Spanlet)
        .filter_map(|c| prog(&c.progs, TRIVIAL))
        .filter(|p| p.run_cnt >= 500)
        .filter_map(|p| p.ns_per_run)
        .min_by(f64::total_cmp)
}

/// What the floor pass measured for `scenario`, as a sentence (empty when
/// there was no floor pass).
fn floor_sentence(r: &Results, scenario: Scenario) -> String {
    let Some(f) = r.floor.iter().find(|f| f.scenario == scenario) else {
        return String::new();
    };
    match (scenario, f.added_ns_per_pair, f.ratio) {
        (Scenario::Pingpong, Some(ns), _) => format!(
            " The floor pass measures it directly: with only empty programs on \
             spanlet's hooks, and nothing traced, ping-pong already takes {ns:.0} ns \
             longer per pair."
        ),
        (_, _, Some(ratio)) => format!(
            " The floor pass measures it directly: with only empty programs on \
             spanlet's hooks, and nothing traced, `sysbench threads` keeps {ratio:.3} \
             of its untraced throughput."
        ),
        _ => String::new(),
    }
}

fn missed(r: &Results, starts: &str) -> bool {
    r.targets
        .iter()
        .any(|t| t.target.starts_with(starts) && t.status == Status::Missed)
}

pub fn explain(md: &mut String, r: &Results) {
    let Some(floor) = trivial_ns(r) else {
        return;
    };
    let mut lines = Vec::new();
    if missed(r, "< 300 ns per blocking")
        && let Some(progs) = spanlet_progs(r, Scenario::Pingpong)
        && let (Some(switch), Some(waking)) = (
            prog(progs, programs::SCHED_SWITCH),
            prog(progs, programs::SCHED_WAKING),
        )
        && let (Some(sw), Some(wk)) = (switch.ns_per_run, waking.ns_per_run)
    {
        lines.push(format!(
            "* **ping-pong**: each blocking pair runs three programs: `sched_switch` as \
             the waiter sleeps ({sw:.0} ns per run here), `sched_waking` as the waker \
             wakes it ({wk:.0} ns) and `sched_switch` as it runs again. The trivial \
             `{TRIVIAL}` program (one per-CPU store) measures {floor:.0} ns per run in \
             this run, statistics included, so about {:.0} ns of the pair is what any \
             three programs on these hooks cost on this machine before doing \
             anything. The rest is the work: the sleeper's and the waker's saved \
             registers, three clock reads (a clock read costs tens of ns in this VM) \
             and three task-storage lookups. The README's profile switches these \
             parts off one at a time.{}",
            3.0 * floor,
            floor_sentence(r, Scenario::Pingpong)
        ));
    }
    if missed(r, "≥ 0.97 of untraced throughput on sysbench threads")
        && let Some(progs) = spanlet_progs(r, Scenario::SysbenchThreads)
        && let Some(switch) = prog(progs, programs::SCHED_SWITCH)
        && let (Some(ns), Some(per_op)) = (switch.ns_per_run, switch.runs_per_op)
    {
        let bpftrace = r
            .scenarios
            .iter()
            .find(|s| s.scenario == Scenario::SysbenchThreads)
            .and_then(|s| s.bpftrace_ratio)
            .map_or(String::new(), |b| {
                format!(
                    " bpftrace, which has no `sched_switch` program, kept {b:.3} in the same run."
                )
            });
        lines.push(format!(
            "* **sysbench threads**: `sched_yield` makes {per_op:.0} context switches per \
             event, and `sched_switch` runs at {ns:.0} ns each, against {floor:.0} ns for \
             the trivial program: none of these switches opens or closes a wait, and \
             spanlet's work on them is an inlined array load. What is left is the cost \
             of having any program on `sched_switch` at all, which spanlet needs to see \
             a wait begin without tracing every syscall.{}{bpftrace}",
            floor_sentence(r, Scenario::SysbenchThreads)
        ));
    }
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(md, "### Why the missed cost targets are missed\n");
    for line in lines {
        let _ = writeln!(md, "{line}");
    }
    md.push('\n');
}
