//! Everything one `cargo xtask bench` produced, as kept in the raw JSON.

use anyhow::{Result, bail};
use serde::Serialize;

use super::{
    machine::Machine,
    run::Record,
    scenarios::{Mode, Scenario},
    summary::{self, AgentLoad, Decode, PairSummary, ProgCost, ScenarioSummary, TargetCheck},
};

#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub smoke: bool,
    pub reps: u32,
    pub seconds: f64,
    pub warmup: f64,
    pub scenarios: Vec<Scenario>,
    /// The command line, as typed.
    pub command: String,
}

/// A run that failed (full mode goes on without it).
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub what: String,
    pub error: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub config: Config,
    pub machine: Machine,
    pub scenarios: Vec<ScenarioSummary>,
    /// Untraced against empty programs on spanlet's hooks.
    pub floor: Vec<PairSummary>,
    /// spanlet with its defaults against spanlet with `--kernel-locks`.
    pub kernel_locks: Vec<PairSummary>,
    pub bpf_stats: Vec<ProgCost>,
    pub agent: Option<AgentLoad>,
    pub decode: Option<Decode>,
    pub targets: Vec<TargetCheck>,
    pub failures: Vec<Failure>,
    pub runs: Vec<Record>,
}

impl Results {
    pub fn new(
        config: Config,
        machine: Machine,
        runs: Vec<Record>,
        decode: Option<Decode>,
        failures: Vec<Failure>,
    ) -> Self {
        let scenarios = summary::scenarios(&runs);
        let agent = summary::agent_load(&runs);
        let floor = summary::floors(&runs);
        let targets = summary::targets(&scenarios, &floor, agent.as_ref(), decode.as_ref());
        Self {
            bpf_stats: summary::prog_costs(&runs),
            config,
            machine,
            scenarios,
            floor,
            kernel_locks: summary::kernel_locks(&runs),
            agent,
            decode,
            targets,
            failures,
            runs,
        }
    }
}

/// A smoke pass asserts nothing about speed: only that every scenario ran
/// every way and produced numbers.
pub fn smoke_check(
    results: &Results,
    compared: &[Scenario],
    floored: &[Scenario],
    kernel_locked: &[Scenario],
    agent: bool,
) -> Result<()> {
    let mut missing = Vec::new();
    for (pass, scenarios, pairs) in [
        ("floor", floored, &results.floor),
        ("kernel-locks", kernel_locked, &results.kernel_locks),
    ] {
        for &scenario in scenarios {
            let p = pairs.iter().find(|p| p.scenario == scenario);
            if p.is_none_or(|p| p.ratio.is_none()) {
                missing.push(format!("{} {pass}: no throughput", scenario.name()));
            }
        }
    }
    for &scenario in compared {
        let Some(s) = results.scenarios.iter().find(|s| s.scenario == scenario) else {
            missing.push(format!("{}: no runs", scenario.name()));
            continue;
        };
        for mode in Mode::ALL {
            if !s.mode(mode).ops_per_sec.is_some_and(|v| v > 0.0) {
                missing.push(format!(
                    "{} {}: no throughput",
                    scenario.name(),
                    mode.name()
                ));
            }
        }
        for mode in [Mode::Spanlet, Mode::Bpftrace] {
            if !results
                .bpf_stats
                .iter()
                .any(|c| c.scenario == scenario && c.mode == mode)
            {
                missing.push(format!(
                    "{} {}: no eBPF program statistics",
                    scenario.name(),
                    mode.name()
                ));
            }
        }
    }
    if agent {
        let ok = results
            .agent
            .as_ref()
            .is_some_and(|a| a.spanlets.is_some_and(|n| n > 0) && a.vm_hwm_mib.is_some());
        if !ok {
            missing.push("agent: no spanlet count or peak RSS".into());
        }
    }
    if !missing.is_empty() {
        bail!("bench smoke pass incomplete:\n  {}", missing.join("\n  "));
    }
    eprintln!("bench: smoke pass complete (no speed is asserted)");
    Ok(())
}
