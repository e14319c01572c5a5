//! From the raw runs to the figures the report shows: medians per scenario
//! and mode, ratios, added nanoseconds, eBPF program costs, the agent's own
//! cost, and the targets met or missed.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    run::{KERNEL_LOCKS_FLAG, Pass, Record},
    scenarios::{COMPARED, Mode, Scenario},
    stats::{added_ns_per_op, median, ratio, spread},
};

#[derive(Clone, Debug, Default, Serialize)]
pub struct ModeSummary {
    pub runs: usize,
    pub ops_per_sec: Option<f64>,
    /// (max − min) / median of the runs' ops/s.
    pub spread: Option<f64>,
    /// Medians of the workload's other figures (e.g. latency_ns).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScenarioSummary {
    pub scenario: Scenario,
    pub unit: &'static str,
    pub untraced: ModeSummary,
    pub spanlet: ModeSummary,
    pub bpftrace: ModeSummary,
    /// Median ops/s traced over median ops/s untraced.
    pub spanlet_ratio: Option<f64>,
    pub bpftrace_ratio: Option<f64>,
    /// 1e9/traced − 1e9/untraced, per op.
    pub spanlet_added_ns_per_op: Option<f64>,
    pub bpftrace_added_ns_per_op: Option<f64>,
    /// Per blocking wait/wake pair, where the workload counts them
    /// (`blocked_waits_per_op`, in the traced runs): per op / pairs per op.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spanlet_added_ns_per_pair: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpftrace_added_ns_per_pair: Option<f64>,
}

impl ScenarioSummary {
    pub fn mode(&self, mode: Mode) -> &ModeSummary {
        match mode {
            Mode::Untraced => &self.untraced,
            Mode::Spanlet => &self.spanlet,
            Mode::Bpftrace => &self.bpftrace,
        }
    }
}

/// A scenario without and with one thing, from a pass that alternates
/// them: untraced without and with the floor's empty programs, or spanlet
/// without and with `--kernel-locks`.
#[derive(Clone, Debug, Serialize)]
pub struct PairSummary {
    pub scenario: Scenario,
    pub unit: &'static str,
    pub without: ModeSummary,
    pub with: ModeSummary,
    /// Median ops/s with over median ops/s without.
    pub ratio: Option<f64>,
    pub added_ns_per_op: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added_ns_per_pair: Option<f64>,
}

/// One tracer's eBPF programs during one bpf-stats run.
#[derive(Clone, Debug, Serialize)]
pub struct ProgCost {
    pub scenario: Scenario,
    pub mode: Mode,
    pub ops: f64,
    pub progs: Vec<ProgLine>,
    /// Σ run_time_ns / ops: eBPF time per workload op.
    pub ns_per_op: Option<f64>,
    /// The same per blocking wait/wake pair, where the workload counts them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns_per_pair: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProgLine {
    pub name: String,
    pub run_cnt: u64,
    pub ns_per_run: Option<f64>,
    pub runs_per_op: Option<f64>,
}

/// spanlet's own cost at a high spanlet rate.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AgentLoad {
    pub spanlets: Option<u64>,
    pub spanlets_per_sec: Option<f64>,
    /// CPU time over wall time during the timed phase (1.0 = one core).
    pub cpu_cores: Option<f64>,
    pub vm_hwm_mib: Option<f64>,
    pub dropped: Option<u64>,
    pub capture_bytes: Option<u64>,
    pub bytes_per_spanlet: Option<f64>,
    pub command: String,
}

/// The user-space decode bench's result (`decode.json`), or why there is none.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decode {
    Measured(serde_json::Value),
    NotMeasured(String),
}

impl Decode {
    pub fn spanlets_per_sec(&self) -> Option<f64> {
        match self {
            Self::Measured(v) => v["spanlets_per_sec"].as_f64(),
            Self::NotMeasured(_) => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Met,
    Missed,
    NotMeasured,
}

impl Status {
    pub fn text(self) -> &'static str {
        match self {
            Self::Met => "met",
            Self::Missed => "**missed**",
            Self::NotMeasured => "not measured",
        }
    }

    fn from(ok: Option<bool>) -> Self {
        match ok {
            Some(true) => Self::Met,
            Some(false) => Self::Missed,
            None => Self::NotMeasured,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    pub target: String,
    pub measured: String,
    pub status: Status,
}

pub fn scenarios(records: &[Record]) -> Vec<ScenarioSummary> {
    COMPARED
        .iter()
        .filter(|s| records.iter().any(|r| r.scenario == **s))
        .map(|&scenario| {
            let mode = |mode| mode_summary(records, scenario, mode);
            let (untraced, spanlet, bpftrace) = (
                mode(Mode::Untraced),
                mode(Mode::Spanlet),
                mode(Mode::Bpftrace),
            );
            let spanlet_added = added_ns_per_op(untraced.ops_per_sec, spanlet.ops_per_sec);
            let bpftrace_added = added_ns_per_op(untraced.ops_per_sec, bpftrace.ops_per_sec);
            ScenarioSummary {
                scenario,
                unit: scenario.unit(),
                spanlet_ratio: ratio(spanlet.ops_per_sec, untraced.ops_per_sec),
                bpftrace_ratio: ratio(bpftrace.ops_per_sec, untraced.ops_per_sec),
                spanlet_added_ns_per_op: spanlet_added,
                bpftrace_added_ns_per_op: bpftrace_added,
                spanlet_added_ns_per_pair: per_pair(spanlet_added, spanlet.extra.get(PAIRS)),
                bpftrace_added_ns_per_pair: per_pair(bpftrace_added, bpftrace.extra.get(PAIRS)),
                untraced,
                spanlet,
                bpftrace,
            }
        })
        .collect()
}

/// The workload's count of blocking wait/wake pairs per op (pingpong).
const PAIRS: &str = "blocked_waits_per_op";

fn per_pair(per_op: Option<f64>, pairs_per_op: Option<&f64>) -> Option<f64> {
    match (per_op, pairs_per_op) {
        (Some(ns), Some(&pairs)) if pairs > 0.0 => Some(ns / pairs),
        _ => None,
    }
}

fn mode_summary(records: &[Record], scenario: Scenario, mode: Mode) -> ModeSummary {
    summarize(
        records
            .iter()
            .filter(|r| r.pass == Pass::Compare && r.scenario == scenario && r.mode == mode)
            .collect(),
    )
}

/// The floor pass of each scenario that had one.
pub fn floors(records: &[Record]) -> Vec<PairSummary> {
    pairs(records, Pass::Floor, |r| r.floor)
}

/// The kernel-locks pass of each scenario that had one.
pub fn kernel_locks(records: &[Record]) -> Vec<PairSummary> {
    pairs(records, Pass::KernelLocks, |r| {
        r.spanlet_flags.iter().any(|f| f == KERNEL_LOCKS_FLAG)
    })
}

fn pairs(records: &[Record], pass: Pass, with: impl Fn(&Record) -> bool) -> Vec<PairSummary> {
    COMPARED
        .iter()
        .filter(|s| records.iter().any(|r| r.pass == pass && r.scenario == **s))
        .map(|&scenario| {
            let side = |w: bool| {
                summarize(
                    records
                        .iter()
                        .filter(|r| r.pass == pass && r.scenario == scenario && with(r) == w)
                        .collect(),
                )
            };
            let (without, with) = (side(false), side(true));
            let added = added_ns_per_op(without.ops_per_sec, with.ops_per_sec);
            PairSummary {
                scenario,
                unit: scenario.unit(),
                ratio: ratio(with.ops_per_sec, without.ops_per_sec),
                added_ns_per_op: added,
                added_ns_per_pair: per_pair(added, with.extra.get(PAIRS)),
                without,
                with,
            }
        })
        .collect()
}

fn summarize(runs: Vec<&Record>) -> ModeSummary {
    let tput: Vec<f64> = runs.iter().map(|r| r.ops_per_sec).collect();
    let mut keys: Vec<&String> = runs.iter().flat_map(|r| r.extra.keys()).collect();
    keys.sort();
    keys.dedup();
    let extra = keys
        .into_iter()
        .filter_map(|k| {
            let values: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.extra.get(k).copied())
                .collect();
            Some((k.clone(), median(&values)?))
        })
        .collect();
    ModeSummary {
        runs: runs.len(),
        ops_per_sec: median(&tput),
        spread: spread(&tput),
        extra,
    }
}

/// eBPF program costs from the runs that sampled them (the bpf-stats pass,
/// or every traced run of a smoke pass), one per scenario and tracer.
pub fn prog_costs(records: &[Record]) -> Vec<ProgCost> {
    let mut costs: Vec<ProgCost> = Vec::new();
    for r in records {
        let Some(t) = &r.tracer else { continue };
        if t.progs.is_empty() || r.pass == Pass::AgentLoad {
            continue;
        }
        if costs
            .iter()
            .any(|c| c.scenario == r.scenario && c.mode == r.mode)
        {
            continue;
        }
        let per_op = |x: f64| (r.ops > 0.0).then(|| x / r.ops);
        let mut progs: Vec<ProgLine> = t
            .progs
            .iter()
            .map(|p| ProgLine {
                name: p.name.clone(),
                run_cnt: p.run_cnt,
                ns_per_run: (p.run_cnt > 0).then(|| p.run_time_ns as f64 / p.run_cnt as f64),
                runs_per_op: per_op(p.run_cnt as f64),
            })
            .collect();
        progs.sort_by(|a, b| b.run_cnt.cmp(&a.run_cnt).then(a.name.cmp(&b.name)));
        let total: u64 = t.progs.iter().map(|p| p.run_time_ns).sum();
        let ns_per_op = per_op(total as f64);
        costs.push(ProgCost {
            scenario: r.scenario,
            mode: r.mode,
            ops: r.ops,
            progs,
            ns_per_op,
            ns_per_pair: per_pair(ns_per_op, r.extra.get(PAIRS)),
        });
    }
    costs
}

pub fn agent_load(records: &[Record]) -> Option<AgentLoad> {
    let r = records.iter().find(|r| r.pass == Pass::AgentLoad)?;
    let t = r.tracer.as_ref()?;
    let spanlets = t.spanlet.map(|s| s.spanlets);
    Some(AgentLoad {
        spanlets,
        spanlets_per_sec: match (spanlets, r.total_seconds) {
            (Some(n), Some(s)) if s > 0.0 => Some(n as f64 / s),
            _ => None,
        },
        cpu_cores: t
            .cpu_seconds
            .filter(|_| t.window_seconds > 0.0)
            .map(|c| c / t.window_seconds),
        vm_hwm_mib: t.vm_hwm_kib.map(|k| k as f64 / 1024.0),
        dropped: t.spanlet.map(|s| s.dropped),
        capture_bytes: t.capture_bytes,
        bytes_per_spanlet: match (t.capture_bytes, spanlets) {
            (Some(b), Some(n)) if n > 0 => Some(b as f64 / n as f64),
            _ => None,
        },
        command: r.command.clone(),
    })
}

/// The targets, judged on this run's figures.
pub fn targets(
    scenarios: &[ScenarioSummary],
    floors: &[PairSummary],
    agent: Option<&AgentLoad>,
    decode: Option<&Decode>,
) -> Vec<TargetCheck> {
    let find = |s: Scenario| scenarios.iter().find(|x| x.scenario == s);
    let floor = |s: Scenario| floors.iter().find(|x| x.scenario == s);
    let pct = |r: Option<f64>| r.map_or("n/a".to_owned(), |r| format!("{r:.3}"));
    let mut checks = Vec::new();

    if let Some(s) = find(Scenario::Outside) {
        // "No measurable cost": within the untraced runs' own spread, or
        // at most 1% below.
        let allowed = s.untraced.spread.unwrap_or(0.0).max(0.01);
        checks.push(TargetCheck {
            target: "process outside the PID set: no measurable cost".into(),
            measured: format!(
                "spanlet/untraced {} (untraced runs spread {})",
                pct(s.spanlet_ratio),
                s.untraced
                    .spread
                    .map_or("n/a".into(), |x| format!("{:.1}%", x * 100.0)),
            ),
            status: Status::from(s.spanlet_ratio.map(|r| r >= 1.0 - allowed)),
        });
    }
    if let Some(s) = find(Scenario::Wake) {
        checks.push(TargetCheck {
            target: "FUTEX_WAKE loop (no waiters, traced) keeps ≥ 0.98 of its calls/s".into(),
            measured: format!("spanlet/untraced {}", pct(s.spanlet_ratio)),
            status: Status::from(s.spanlet_ratio.map(|r| r >= 0.98)),
        });
        checks.push(TargetCheck {
            target: "< 20 ns added per futex call that does not block".into(),
            measured: ns(s.spanlet_added_ns_per_op, "per call"),
            status: Status::from(s.spanlet_added_ns_per_op.map(|n| n < 20.0)),
        });
    }
    if let Some(s) = find(Scenario::Pingpong) {
        let per_pair = s.spanlet_added_ns_per_pair;
        let empty = floor(Scenario::Pingpong).map_or(String::new(), |f| {
            format!(
                " (empty programs alone: {})",
                ns(f.added_ns_per_pair, "per pair")
            )
        });
        checks.push(TargetCheck {
            target: "< 300 ns per blocking wait/wake pair (ping-pong)".into(),
            measured: format!("{}{empty}", ns(per_pair, "per pair")),
            status: Status::from(per_pair.map(|n| n < 300.0)),
        });
    }
    if let Some(s) = find(Scenario::SysbenchThreads) {
        let empty = floor(Scenario::SysbenchThreads).map_or(String::new(), |f| {
            format!(" (empty programs alone: {})", pct(f.ratio))
        });
        checks.push(TargetCheck {
            target: "≥ 0.97 of untraced throughput on sysbench threads".into(),
            measured: format!("spanlet/untraced {}{empty}", pct(s.spanlet_ratio)),
            status: Status::from(s.spanlet_ratio.map(|r| r >= 0.97)),
        });
    }
    if !scenarios.is_empty() {
        checks.push(less_than_bpftrace(scenarios));
    }
    if let Some(d) = decode {
        let rate = d.spanlets_per_sec();
        checks.push(TargetCheck {
            target: "≥ 2M spanlets/s per core decoded and aggregated".into(),
            measured: match (rate, d) {
                (Some(r), _) => format!("{:.2}M spanlets/s", r / 1e6),
                (None, Decode::NotMeasured(why)) => why.clone(),
                (None, Decode::Measured(_)) => "no spanlets_per_sec in decode.json".into(),
            },
            status: Status::from(rate.map(|r| r >= 2e6)),
        });
    }
    if let Some(a) = agent {
        checks.push(agent_rss(a));
    }
    checks
}

fn ns(value: Option<f64>, what: &str) -> String {
    value.map_or("n/a".into(), |n| format!("{n:.0} ns {what}"))
}

/// spanlet's ratio above bpftrace's on every scenario (for the idle service,
/// its request latency below bpftrace's).
fn less_than_bpftrace(scenarios: &[ScenarioSummary]) -> TargetCheck {
    let mut worse = Vec::new();
    let mut unknown = Vec::new();
    for s in scenarios {
        let better = if s.scenario == Scenario::Idle {
            let lat = |m: &ModeSummary| m.extra.get("latency_ns").copied();
            lat(&s.spanlet).zip(lat(&s.bpftrace)).map(|(a, b)| a <= b)
        } else {
            s.spanlet_ratio.zip(s.bpftrace_ratio).map(|(a, b)| a >= b)
        };
        match better {
            Some(true) => {}
            Some(false) => worse.push(if s.scenario.contended() {
                format!("{} (contended)", s.scenario.name())
            } else {
                s.scenario.name().to_owned()
            }),
            None => unknown.push(s.scenario.name()),
        }
    }
    let measured = if !worse.is_empty() {
        format!("bpftrace ahead on: {}", worse.join(", "))
    } else if !unknown.is_empty() {
        format!("not measured on: {}", unknown.join(", "))
    } else {
        format!("spanlet ahead on all {} scenarios", scenarios.len())
    };
    TargetCheck {
        target: "less overhead than the bpftrace script on every scenario".into(),
        measured,
        status: if !worse.is_empty() {
            Status::Missed
        } else if !unknown.is_empty() {
            Status::NotMeasured
        } else {
            Status::Met
        },
    }
}

fn agent_rss(a: &AgentLoad) -> TargetCheck {
    let rate = a.spanlets_per_sec;
    let measured = format!(
        "{} MiB peak RSS at {} spanlets/s, {} dropped",
        a.vm_hwm_mib.map_or("n/a".into(), |m| format!("{m:.1}")),
        rate.map_or("n/a".into(), |r| format!("{r:.0}")),
        a.dropped.map_or("n/a".into(), |d| d.to_string()),
    );
    let ok = match (a.vm_hwm_mib, a.dropped, rate) {
        (Some(m), Some(d), Some(_)) => Some(m < 64.0 && d == 0),
        _ => None,
    };
    let reached = rate.is_some_and(|r| r >= 100_000.0);
    TargetCheck {
        target: "agent RSS < 64 MiB at 100k spanlets/s with no drops".into(),
        measured: if reached || rate.is_none() {
            measured
        } else {
            format!("{measured} (this machine did not reach 100k/s)")
        },
        status: Status::from(ok),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::run::TracerRecord;

    fn record(scenario: Scenario, mode: Mode, ops_per_sec: f64) -> Record {
        Record {
            scenario,
            mode,
            pass: Pass::Compare,
            rep: 1,
            floor: false,
            spanlet_flags: Vec::new(),
            command: String::new(),
            ops: ops_per_sec,
            seconds: 1.0,
            ops_per_sec,
            total_seconds: Some(1.5),
            extra: BTreeMap::new(),
            wall_seconds: 2.0,
            tracer: (mode != Mode::Untraced).then(TracerRecord::default),
        }
    }

    #[test]
    fn medians_ratios_and_targets() {
        let mut records = Vec::new();
        for (a, b, c) in [
            (100.0, 99.0, 50.0),
            (110.0, 100.0, 60.0),
            (90.0, 98.0, 40.0),
        ] {
            records.push(record(Scenario::Wake, Mode::Untraced, a * 1e4));
            records.push(record(Scenario::Wake, Mode::Spanlet, b * 1e4));
            records.push(record(Scenario::Wake, Mode::Bpftrace, c * 1e4));
        }
        let s = scenarios(&records);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].untraced.runs, 3);
        assert_eq!(s[0].untraced.ops_per_sec, Some(1e6));
        assert_eq!(s[0].spanlet.ops_per_sec, Some(990_000.0));
        assert!((s[0].spanlet_ratio.unwrap() - 0.99).abs() < 1e-12);
        assert!((s[0].bpftrace_ratio.unwrap() - 0.5).abs() < 1e-12);
        assert!((s[0].bpftrace_added_ns_per_op.unwrap() - 1000.0).abs() < 1e-6);

        let checks = targets(&s, &[], None, None);
        let status = |t: &str| checks.iter().find(|c| c.target.contains(t)).unwrap().status;
        assert_eq!(status("≥ 0.98"), Status::Met);
        // 1e9/990000 − 1e9/1e6 ≈ 10.1 ns.
        assert_eq!(status("< 20 ns"), Status::Met);
        assert_eq!(status("bpftrace script"), Status::Met);
    }

    #[test]
    fn per_pair_divides_by_the_counted_pairs() {
        let mut records = Vec::new();
        for (mode, tput) in [(Mode::Untraced, 100_000.0), (Mode::Spanlet, 80_000.0)] {
            let mut r = record(Scenario::Pingpong, mode, tput);
            r.extra.insert(PAIRS.into(), 1.25);
            records.push(r);
        }
        let s = &scenarios(&records)[0];
        // 12.5 µs − 10 µs per round trip, 1.25 pairs per round trip.
        assert!((s.spanlet_added_ns_per_pair.unwrap() - 2000.0).abs() < 1e-6);
        assert_eq!(s.bpftrace_added_ns_per_pair, None);
    }

    #[test]
    fn the_floor_pass_is_kept_apart_from_the_comparison() {
        let mut records = vec![record(Scenario::Pingpong, Mode::Untraced, 100_000.0)];
        for (floor, tput) in [(false, 110_000.0), (true, 100_000.0)] {
            let mut r = record(Scenario::Pingpong, Mode::Untraced, tput);
            r.pass = Pass::Floor;
            r.floor = floor;
            r.extra.insert(PAIRS.into(), 1.0);
            records.push(r);
        }
        let f = &floors(&records)[0];
        assert_eq!(f.without.ops_per_sec, Some(110_000.0));
        assert_eq!(f.with.ops_per_sec, Some(100_000.0));
        // 10 µs − 9.09 µs per round trip, one pair each.
        assert!((f.added_ns_per_pair.unwrap() - 909.09).abs() < 0.01);
        // The comparison's untraced median is not mixed with the floor pass.
        assert_eq!(scenarios(&records)[0].untraced.ops_per_sec, Some(100_000.0));
        let checks = targets(&scenarios(&records), &floors(&records), None, None);
        let pingpong = checks.iter().find(|c| c.target.contains("300 ns")).unwrap();
        assert!(
            pingpong
                .measured
                .contains("empty programs alone: 909 ns per pair")
        );
    }

    #[test]
    fn agent_figures() {
        let mut r = record(Scenario::Agent, Mode::Spanlet, 50_000.0);
        r.pass = Pass::AgentLoad;
        r.total_seconds = Some(2.0);
        r.tracer = Some(TracerRecord {
            window_seconds: 2.0,
            cpu_seconds: Some(0.5),
            vm_hwm_kib: Some(30 * 1024),
            spanlet: Some(crate::bench::parse::SpanletSummary {
                spanlets: 200_000,
                waits_seen: 200_000,
                below_min_wait: 0,
                dropped: 0,
            }),
            capture_bytes: Some(20_000_000),
            ..TracerRecord::default()
        });
        let a = agent_load(&[r]).unwrap();
        assert_eq!(a.spanlets_per_sec, Some(100_000.0));
        assert_eq!(a.cpu_cores, Some(0.25));
        assert_eq!(a.vm_hwm_mib, Some(30.0));
        assert_eq!(a.bytes_per_spanlet, Some(100.0));
        assert_eq!(agent_rss(&a).status, Status::Met);
    }
}
