//! `cargo xtask bench`: each scenario untraced, under spanlet and under an
//! equivalent bpftrace script, interleaved over several repetitions; medians,
//! ratios, per-call costs, spanlet's own cost, and the targets met or missed.
//! A full run writes BENCHMARKS.md and keeps its raw results as JSON in
//! bench-results/; `--smoke` only checks that everything runs.

mod bpfstats;
mod child;
mod decode;
mod floor;
mod machine;
mod misses;
mod outputs;
mod parse;
mod passes;
mod prepare;
mod procfs;
mod report;
mod results;
mod run;
mod scenarios;
mod stats;
mod summary;

use std::{path::PathBuf, time::Instant};

use anyhow::{Context, Result, bail};

use self::{
    bpfstats::BpfStats,
    outputs::Destinations,
    passes::Bench,
    results::{Config, Results, smoke_check},
    scenarios::{COMPARED, Scenario},
    summary::Decode,
};
use crate::util::workspace_root;

/// The scenarios of the kernel-locks pass: one where kernel locks are
/// contended, one where they are not.
const KERNEL_LOCKS_SCENARIOS: [Scenario; 2] = [Scenario::Mmaplock, Scenario::Pingpong];

#[derive(Clone, clap::Args)]
pub struct Args {
    /// Repetitions of every (scenario, mode) run, interleaved.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub reps: u32,
    /// Length of each run's timed phase, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Untimed warm-up before each timed phase, in seconds.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// One short pass over every scenario (1 repetition, 0.3 s runs; --reps,
    /// --seconds and --warmup are ignored), results in a temporary directory,
    /// checking only that each produced numbers; never writes BENCHMARKS.md.
    /// `cargo xtask test` runs it.
    #[arg(long)]
    pub smoke: bool,
    /// Run only these scenarios (repeat or comma-separate); `agent` is
    /// spanlet's own cost, `decode` the user-space decode bench.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Scenario>,
    /// Directory for the raw JSON [default: bench-results/, or a temporary
    /// directory with --smoke].
    #[arg(long)]
    pub results_dir: Option<PathBuf>,
    /// Where to write the Markdown report [default: BENCHMARKS.md, for a full
    /// run of every scenario; otherwise none].
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Use this spanlet binary instead of building target/release/spanlet.
    #[arg(long)]
    pub spanlet: Option<PathBuf>,
}

impl Args {
    /// What `cargo xtask test` runs.
    pub fn smoke() -> Self {
        Self {
            reps: 1,
            seconds: 0.3,
            warmup: 0.1,
            smoke: true,
            only: Vec::new(),
            results_dir: None,
            markdown: None,
            spanlet: None,
        }
    }
}

/// Smoke runs: this long, whatever --seconds says.
const SMOKE_SECONDS: f64 = 0.3;
const SMOKE_WARMUP: f64 = 0.1;

pub fn task(args: &Args) -> Result<()> {
    let started = Instant::now();
    let config = config(args)?;
    let selected = &config.scenarios;
    let compared: Vec<Scenario> = selected
        .iter()
        .copied()
        .filter(|s| s.is_compared())
        .collect();
    let floored: Vec<Scenario> = compared
        .iter()
        .copied()
        .filter(|s| floor::SCENARIOS.contains(s))
        .collect();
    let kernel_locked: Vec<Scenario> = compared
        .iter()
        .copied()
        .filter(|s| KERNEL_LOCKS_SCENARIOS.contains(s))
        .collect();
    let agent = selected.contains(&Scenario::Agent);

    let tools = prepare::tools(args.spanlet.as_deref()).context("bench step `prepare` failed")?;
    let work = tempfile::Builder::new()
        .prefix("spanlet-bench-")
        .tempdir()
        .context("creating a scratch directory")?;
    let mut bench = Bench::new(
        &tools,
        work.path(),
        args.smoke,
        config.seconds,
        config.warmup,
    );
    bench.expect(
        (compared.len() * 3 + (floored.len() + kernel_locked.len()) * 2) * config.reps as usize
            + usize::from(agent),
    );
    if args.smoke {
        // One pass exercises everything: statistics on throughout.
        let _stats = BpfStats::enable().context("enabling eBPF run-time statistics")?;
        bench.compare(&compared, config.reps, true)?;
    } else {
        // Statistics cost time per program run: only in a pass of their own.
        bench.expect(compared.len() * 2);
        bench.compare(&compared, config.reps, false)?;
        if !compared.is_empty() {
            bench.bpf_stats(&compared)?;
        }
    }
    bench.floor(&floored, config.reps)?;
    bench.kernel_locks(&kernel_locked, config.reps)?;
    if agent {
        bench.agent_load()?;
    }
    let decode = selected.contains(&Scenario::Decode).then(|| {
        if args.smoke {
            Decode::NotMeasured("skipped in a smoke pass".into())
        } else {
            decode::run()
        }
    });

    let machine = machine::describe(&tools.spanlet, &tools.programs.python);
    let Bench { runs, failures, .. } = bench;
    let results = Results::new(config, machine, runs, decode, failures);
    if args.smoke {
        smoke_check(&results, &compared, &floored, &kernel_locked, agent)?;
    }
    outputs::write(&results, &destinations(args, &results.config), work.path())?;
    println!("{}", report::table(&results));
    // A smoke pass's figures are too short to judge.
    if !args.smoke {
        for t in &results.targets {
            println!("target: {}: {} ({})", t.target, t.measured, t.status.text());
        }
    }
    eprintln!(
        "bench: {} runs in {:.0} s",
        results.runs.len(),
        started.elapsed().as_secs_f64()
    );
    if !results.failures.is_empty() {
        bail!("{} bench runs failed (see above)", results.failures.len());
    }
    Ok(())
}

/// Repetitions, lengths and scenarios, from the flags.
fn config(args: &Args) -> Result<Config> {
    let (reps, seconds, warmup) = if args.smoke {
        (1, SMOKE_SECONDS, SMOKE_WARMUP)
    } else {
        (args.reps, args.seconds, args.warmup)
    };
    if !(seconds > 0.0 && warmup >= 0.0) {
        bail!("--seconds must be positive and --warmup not negative");
    }
    let mut scenarios = if args.only.is_empty() {
        everything()
    } else {
        args.only.clone()
    };
    scenarios.sort();
    scenarios.dedup();
    Ok(Config {
        smoke: args.smoke,
        reps,
        seconds,
        warmup,
        scenarios,
        command: command_line(),
    })
}

fn everything() -> Vec<Scenario> {
    let mut all = COMPARED.to_vec();
    all.extend([Scenario::Agent, Scenario::Decode]);
    all
}

/// Raw JSON to bench-results/ (a smoke pass: a fixed temporary directory);
/// BENCHMARKS.md only from a full run of everything, unless --markdown.
fn destinations(args: &Args, config: &Config) -> Destinations {
    let root = workspace_root();
    let results_dir = match (&args.results_dir, args.smoke) {
        (Some(dir), _) => dir.clone(),
        (None, true) => std::env::temp_dir().join("spanlet-bench-smoke"),
        (None, false) => root.join("bench-results"),
    };
    let markdown = match &args.markdown {
        Some(path) => Some(path.clone()),
        None if !args.smoke && config.scenarios == everything() => Some(root.join("BENCHMARKS.md")),
        None => None,
    };
    Destinations {
        results_dir,
        smoke: args.smoke,
        markdown,
    }
}

/// `cargo xtask bench ARGS`, as typed.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "bench") {
        format!("cargo xtask {}", args.join(" "))
    } else {
        // Run from `cargo xtask test`.
        "cargo xtask bench --smoke".to_owned()
    }
}
