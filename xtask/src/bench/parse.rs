//! Reading what the workloads and tracers print: the workloads' JSON lines,
//! sysbench's report, and spanlet's closing summary line.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

/// One run's own measurement of its timed phase.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measured {
    pub ops: f64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    /// From the workload's start to its result line (C and Python workloads).
    pub total_seconds: Option<f64>,
    /// Any other numeric field the workload printed (e.g. `latency_ns`).
    pub extra: BTreeMap<String, f64>,
}

/// What one line of a workload's stdout means to the harness.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// The timed phase begins.
    Start,
    /// The timed phase is over; its figures.
    Result(Measured),
    /// Anything else (tracer output, sysbench's prose).
    Other,
}

/// Classifies a line printed by a bench workload (`bench.h`, `pylock.py`):
/// `{"bench_start":…}` or `{"bench":…,"ops":…,"seconds":…,"ops_per_sec":…}`.
pub fn workload_line(line: &str) -> Result<Line> {
    let line = line.trim();
    if !line.starts_with("{\"bench") {
        return Ok(Line::Other);
    }
    let value: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("bad workload line {line:?}"))?;
    let Some(obj) = value.as_object() else {
        return Ok(Line::Other);
    };
    if obj.contains_key("bench_start") {
        return Ok(Line::Start);
    }
    if !obj.contains_key("bench") {
        return Ok(Line::Other);
    }
    let number = |key: &str| {
        obj.get(key)
            .and_then(serde_json::Value::as_f64)
            .with_context(|| format!("workload line without a numeric {key:?}: {line}"))
    };
    let standard = ["bench", "ops", "seconds", "ops_per_sec", "total_seconds"];
    let extra = obj
        .iter()
        .filter(|(k, _)| !standard.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
        .collect();
    Ok(Line::Result(Measured {
        ops: number("ops")?,
        seconds: number("seconds")?,
        ops_per_sec: number("ops_per_sec")?,
        total_seconds: obj.get("total_seconds").and_then(serde_json::Value::as_f64),
        extra,
    }))
}

/// sysbench prints `Threads started!` when its worker threads begin.
pub fn sysbench_started(line: &str) -> bool {
    line.trim() == "Threads started!"
}

/// sysbench's report begins with `General statistics:` once the threads are done.
pub fn sysbench_finished(line: &str) -> bool {
    line.trim() == "General statistics:"
}

/// `total time:` (seconds) and `total number of events:` from sysbench 1.0's
/// report.
pub fn sysbench_report(text: &str) -> Result<(f64, f64)> {
    let mut seconds = None;
    let mut events = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("total time:") {
            seconds = v.trim().trim_end_matches('s').parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("total number of events:") {
            events = v.trim().parse::<f64>().ok();
        }
    }
    match (events, seconds) {
        (Some(e), Some(s)) if s > 0.0 => Ok((e, s)),
        _ => bail!("no `total time` and `total number of events` in sysbench's output"),
    }
}

/// The counts in spanlet's closing line:
/// `spanlet: N spanlets in T to FILE (REASON); W waits seen, B below --min-wait, D dropped`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpanletSummary {
    pub spanlets: u64,
    pub waits_seen: u64,
    pub below_min_wait: u64,
    pub dropped: u64,
}

/// Finds spanlet's summary line in its stderr.
pub fn spanlet_summary(stderr: &str) -> Option<SpanletSummary> {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("spanlet: ") && l.contains(" spanlets in "))?;
    // The number just before a label.
    let before = |label: &str| -> Option<u64> {
        let head = &line[..line.find(label)?];
        head.split_whitespace().next_back()?.parse().ok()
    };
    Some(SpanletSummary {
        spanlets: before(" spanlets in ")?,
        waits_seen: before(" waits seen")?,
        below_min_wait: before(" below --min-wait")?,
        dropped: before(" dropped")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_lines() {
        assert_eq!(
            workload_line(r#"{"bench_start":"wake"}"#).unwrap(),
            Line::Start
        );
        let line = r#"{"bench":"idle","ops":814,"seconds":1.000874,"ops_per_sec":813.289,"total_seconds":1.2,"latency_ns":76062.1,"period_us":1000}"#;
        let Line::Result(m) = workload_line(line).unwrap() else {
            panic!("not a result")
        };
        assert_eq!(m.ops, 814.0);
        assert_eq!(m.ops_per_sec, 813.289);
        assert_eq!(m.total_seconds, Some(1.2));
        assert_eq!(m.extra["latency_ns"], 76062.1);
        assert_eq!(m.extra["period_us"], 1000.0);
        assert!(!m.extra.contains_key("bench"));
        assert_eq!(workload_line("Attaching 5 probes...").unwrap(), Line::Other);
        assert_eq!(workload_line("@wait_ns[0x1]: ").unwrap(), Line::Other);
        assert!(workload_line(r#"{"bench":"x","ops":1}"#).is_err());
        assert!(workload_line(r#"{"bench":"#).is_err());
    }

    const SYSBENCH: &str = "sysbench 1.0.20 (using system LuaJIT 2.1.0-beta3)

Running the test with following options:
Number of threads: 4
Initializing random number generator from current time


Initializing worker threads...

Threads started!


General statistics:
    total time:                          2.0083s
    total number of events:              677

Latency (ms):
         min:                                    0.67
         avg:                                   11.85
         max:                                   20.32
         95th percentile:                       15.83
         sum:                                 8021.35

Threads fairness:
    events (avg/stddev):           169.2500/26.41
    execution time (avg/stddev):   2.0053/0.00
";

    #[test]
    fn sysbench_output() {
        assert_eq!(sysbench_report(SYSBENCH).unwrap(), (677.0, 2.0083));
        assert!(SYSBENCH.lines().any(sysbench_started));
        assert!(SYSBENCH.lines().any(sysbench_finished));
        assert!(sysbench_report("FATAL: no such test").is_err());
    }

    #[test]
    fn spanlet_summary_line() {
        let stderr = "ERROR: something else\nspanlet: 91 spanlets in 231ms to /tmp/x.data \
                      (command exited (exit code 0)); 20239 waits seen, 20148 below \
                      --min-wait, 0 dropped\n";
        assert_eq!(
            spanlet_summary(stderr),
            Some(SpanletSummary {
                spanlets: 91,
                waits_seen: 20239,
                below_min_wait: 20148,
                dropped: 0
            })
        );
        assert_eq!(spanlet_summary("spanlet: error: no such pid 7\n"), None);
    }
}
