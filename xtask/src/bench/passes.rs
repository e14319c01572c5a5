//! The bench's passes: the interleaved comparison, the eBPF statistics runs,
//! the floor and the agent-load run, each made of single runs with a progress line.

use std::{path::Path, thread, time::Duration};

use anyhow::{Context, Result};

use super::{
    bpfstats::BpfStats,
    prepare::Tools,
    results::Failure,
    run::{self, KERNEL_LOCKS_FLAG, Pass, Record, Request},
    scenarios::{self, Mode, Scenario},
};

/// A pause before each run of a full bench, so a run does not start while
/// the kernel is still tearing down the last tracer.
const SETTLE: Duration = Duration::from_millis(300);
/// How long a run may take beyond its warm-up and timed phase (bpftrace
/// compiles its script first, slowly on a busy machine).
const SLACK: Duration = Duration::from_secs(120);
/// spanlet flags for the agent-load run: every blocking wait is a spanlet.
const AGENT_LOAD_FLAGS: [&str; 2] = ["--min-wait", "0"];

/// One run, before the bench adds where and for how long.
#[derive(Clone, Copy)]
struct Job<'f> {
    scenario: Scenario,
    mode: Mode,
    pass: Pass,
    rep: u32,
    /// Read the tracer's eBPF counters (statistics must be on).
    prog_stats: bool,
    spanlet_flags: &'f [String],
    /// The floor's empty programs attached (an untraced run).
    floor: bool,
}

impl Job<'_> {
    fn new(scenario: Scenario, mode: Mode, pass: Pass, rep: u32) -> Self {
        Self {
            scenario,
            mode,
            pass,
            rep,
            prog_stats: false,
            spanlet_flags: &[],
            floor: false,
        }
    }
}

/// The runs so far and what is needed to make more.
pub struct Bench<'a> {
    pub tools: &'a Tools,
    pub work_dir: &'a Path,
    /// Stop at the first failure, and do not pause between runs.
    pub smoke: bool,
    pub seconds: f64,
    pub warmup: f64,
    pub runs: Vec<Record>,
    pub failures: Vec<Failure>,
    done: usize,
    total: usize,
}

impl<'a> Bench<'a> {
    pub fn new(
        tools: &'a Tools,
        work_dir: &'a Path,
        smoke: bool,
        seconds: f64,
        warmup: f64,
    ) -> Self {
        Self {
            tools,
            work_dir,
            smoke,
            seconds,
            warmup,
            runs: Vec::new(),
            failures: Vec::new(),
            done: 0,
            total: 0,
        }
    }

    /// For the progress lines: how many runs the passes will make.
    pub fn expect(&mut self, runs: usize) {
        self.total += runs;
    }

    /// `reps` repetitions; in each, every scenario runs all three ways back
    /// to back, taking the six orders of the modes in turn. `prog_stats`
    /// reads the tracers' eBPF counters (statistics must be on).
    pub fn compare(&mut self, scenarios: &[Scenario], reps: u32, prog_stats: bool) -> Result<()> {
        for rep in 1..=reps {
            for (i, &scenario) in scenarios.iter().enumerate() {
                for mode in Mode::order(rep as usize - 1 + i) {
                    self.run(Job {
                        prog_stats,
                        ..Job::new(scenario, mode, Pass::Compare, rep)
                    })?;
                }
            }
        }
        Ok(())
    }

    /// One run per scenario and tracer with eBPF run-time statistics on.
    pub fn bpf_stats(&mut self, scenarios: &[Scenario]) -> Result<()> {
        let _stats = BpfStats::enable().context("enabling eBPF run-time statistics")?;
        for &scenario in scenarios {
            for mode in [Mode::Spanlet, Mode::Bpftrace] {
                self.run(Job {
                    prog_stats: true,
                    ..Job::new(scenario, mode, Pass::BpfStats, 1)
                })?;
            }
        }
        Ok(())
    }

    /// `reps` repetitions of each scenario untraced and with the floor's
    /// empty programs attached, alternating which goes first.
    pub fn floor(&mut self, scenarios: &[Scenario], reps: u32) -> Result<()> {
        self.alternate(scenarios, reps, |scenario, rep, floor| Job {
            floor,
            ..Job::new(scenario, Mode::Untraced, Pass::Floor, rep)
        })
    }

    /// `reps` repetitions of each scenario under spanlet with its defaults
    /// and with `--kernel-locks`, alternating which goes first.
    pub fn kernel_locks(&mut self, scenarios: &[Scenario], reps: u32) -> Result<()> {
        let flags = [KERNEL_LOCKS_FLAG.to_owned()];
        self.alternate(scenarios, reps, |scenario, rep, with| Job {
            spanlet_flags: if with { &flags } else { &[] },
            ..Job::new(scenario, Mode::Spanlet, Pass::KernelLocks, rep)
        })
    }

    /// Each scenario without and with something, `reps` times, taking turns
    /// at going first.
    fn alternate<'f>(
        &mut self,
        scenarios: &[Scenario],
        reps: u32,
        job: impl Fn(Scenario, u32, bool) -> Job<'f>,
    ) -> Result<()> {
        for rep in 1..=reps {
            for (i, &scenario) in scenarios.iter().enumerate() {
                let first = (rep as usize + i).is_multiple_of(2);
                for with in [first, !first] {
                    self.run(job(scenario, rep, with))?;
                }
            }
        }
        Ok(())
    }

    /// spanlet on a ping-pong with every blocking wait recorded.
    pub fn agent_load(&mut self) -> Result<()> {
        let flags: Vec<String> = AGENT_LOAD_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        self.run(Job {
            spanlet_flags: &flags,
            ..Job::new(Scenario::Agent, Mode::Spanlet, Pass::AgentLoad, 1)
        })
    }

    /// One run, with a progress line. A failure stops a smoke pass; a full
    /// run notes it and goes on.
    fn run(&mut self, job: Job) -> Result<()> {
        let Job {
            scenario,
            mode,
            pass,
            rep,
            prog_stats,
            spanlet_flags,
            floor,
        } = job;
        let workload =
            scenarios::workload(scenario, &self.tools.programs, self.seconds, self.warmup);
        let req = Request {
            scenario,
            mode,
            pass,
            rep,
            workload: &workload,
            tools: self.tools,
            work_dir: self.work_dir,
            prog_stats,
            spanlet_flags,
            floor,
            timeout: Duration::from_secs_f64(self.seconds + self.warmup) + SLACK,
        };
        if !self.smoke && self.done > 0 {
            thread::sleep(SETTLE);
        }
        self.done += 1;
        let who = if floor {
            "floor".to_owned()
        } else if spanlet_flags.is_empty() || pass == Pass::AgentLoad {
            mode.name().to_owned()
        } else {
            format!("{} {}", mode.name(), spanlet_flags.join(" "))
        };
        let what = format!("{} {who} ({pass:?} {rep})", scenario.name()).to_lowercase();
        let progress = format!("bench: [{}/{}] {what}", self.done, self.total);
        match run::run(&req) {
            Ok(record) => {
                eprintln!("{progress}: {:.0} {}", record.ops_per_sec, scenario.unit());
                self.runs.push(record);
                Ok(())
            }
            Err(err) if !self.smoke => {
                eprintln!("{progress} FAILED: {err:#}");
                self.failures.push(Failure {
                    what,
                    error: format!("{err:#}"),
                });
                Ok(())
            }
            Err(err) => Err(err.context(format!("bench run `{what}` failed"))),
        }
    }
}
