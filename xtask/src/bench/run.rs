//! One run: a workload untraced, under spanlet, or under bpftrace; its own
//! figures and what the tracer cost while it ran.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{ChildStdout, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{
    child::{Guard, Watchdog, wait_until},
    floor::Floor,
    parse::{self, Line, Measured, SpanletSummary},
    prepare::Tools,
    procfs::{self, HeldProgs, Sample},
    scenarios::{Mode, Output, Scenario, Workload},
};
use crate::util::display;

/// Which pass of the bench a run belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pass {
    /// The interleaved three-way comparison.
    Compare,
    /// One run per tracer with eBPF run-time statistics on.
    BpfStats,
    /// spanlet at a high spanlet rate, for its own CPU and memory.
    AgentLoad,
    /// Untraced, against empty programs on spanlet's hooks (bench::floor).
    Floor,
    /// spanlet with its defaults, against spanlet with `--kernel-locks`.
    KernelLocks,
}

/// The option whose cost the kernel-locks pass measures.
pub const KERNEL_LOCKS_FLAG: &str = "--kernel-locks";

/// What to run.
pub struct Request<'a> {
    pub scenario: Scenario,
    pub mode: Mode,
    pub pass: Pass,
    pub rep: u32,
    pub workload: &'a Workload,
    pub tools: &'a Tools,
    /// Scratch space for captures, logs and scripts.
    pub work_dir: &'a Path,
    /// Read the tracer's eBPF program statistics (they must be enabled).
    pub prog_stats: bool,
    /// Extra `spanlet record` flags (none: its defaults).
    pub spanlet_flags: &'a [String],
    /// Empty programs on spanlet's hooks during the run (an untraced one).
    pub floor: bool,
    /// Kill the run after this long.
    pub timeout: Duration,
}

/// One run's results, as kept in the raw JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    pub scenario: Scenario,
    pub mode: Mode,
    pub pass: Pass,
    pub rep: u32,
    /// Run with the floor's empty programs attached.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub floor: bool,
    /// Extra `spanlet record` flags of the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spanlet_flags: Vec<String>,
    /// The command line, tracer included.
    pub command: String,
    pub ops: f64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_seconds: Option<f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, f64>,
    /// The whole run, tracer start-up and exit included.
    pub wall_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracer: Option<TracerRecord>,
}

/// The tracer process during the workload's timed phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TracerRecord {
    /// Wall time between the workload's start and result lines.
    pub window_seconds: f64,
    /// Tracer CPU time (user + system, all threads) in that window.
    pub cpu_seconds: Option<f64>,
    /// Peak RSS of the tracer process, at the end of the window.
    pub vm_hwm_kib: Option<u64>,
    /// Its eBPF programs' counters over the window (with bpf stats on).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub progs: Vec<ProgRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spanlet: Option<SpanletSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_bytes: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProgRecord {
    pub id: u32,
    pub name: String,
    pub run_cnt: u64,
    pub run_time_ns: u64,
}

impl Request<'_> {
    fn label(&self) -> String {
        let flags: String = self
            .spanlet_flags
            .iter()
            .map(|f| format!("-{}", f.trim_start_matches('-')))
            .collect();
        format!(
            "{}-{}{}{flags}-{:?}-{}",
            self.scenario.name(),
            self.mode.name(),
            if self.floor { "-floor" } else { "" },
            self.pass,
            self.rep
        )
        .to_lowercase()
    }
}

/// Runs one request to the end and returns its figures; fails with the
/// tail of the run's stderr when something does not work.
pub fn run(req: &Request) -> Result<Record> {
    let label = req.label();
    let stderr_path = req.work_dir.join(format!("{label}.stderr"));
    let capture = req.work_dir.join(format!("{label}.spanlet"));
    let started = Instant::now();
    let floor = req.floor.then(Floor::attach).transpose()?;
    let result = if req.scenario.outside() {
        run_outside(req, &label, &stderr_path, &capture)
    } else {
        run_launched(req, &label, &stderr_path, &capture)
    };
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    let (command, measured, mut tracer) = result.with_context(|| {
        let what = format!("{} {} run failed", req.scenario.name(), req.mode.name());
        if stderr.trim().is_empty() {
            format!("{what} (nothing on stderr)")
        } else {
            format!("{what}; its stderr ends with:\n{}", tail(&stderr, 15))
        }
    })?;
    if let Some(t) = tracer.as_mut()
        && req.mode == Mode::Spanlet
    {
        t.spanlet = parse::spanlet_summary(&stderr);
        t.capture_bytes = fs::metadata(&capture).ok().map(|m| m.len());
    }
    drop(floor);
    // Captures can be large; only their size is kept.
    let _ = fs::remove_file(&capture);
    let command = if req.floor {
        format!("(floor attached) {command}")
    } else {
        command
    };
    Ok(Record {
        scenario: req.scenario,
        mode: req.mode,
        pass: req.pass,
        rep: req.rep,
        floor: req.floor,
        spanlet_flags: req.spanlet_flags.to_vec(),
        command,
        ops: measured.ops,
        seconds: measured.seconds,
        ops_per_sec: measured.ops_per_sec,
        total_seconds: measured.total_seconds,
        extra: measured.extra,
        wall_seconds: started.elapsed().as_secs_f64(),
        tracer,
    })
}

type Outcome = (String, Measured, Option<TracerRecord>);

/// How long a process may take to exit once the workload's output has
/// ended (spanlet drains its ring and writes the capture's end).
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The tracer launches the workload: `spanlet record -- CMD` or
/// `bpftrace -c CMD` with `pid == cpid`; both trace it from its first
/// instruction. The workload's stdout comes through the tracer's.
fn run_launched(req: &Request, label: &str, stderr: &Path, capture: &Path) -> Result<Outcome> {
    let argv = &req.workload.argv;
    let mut cmd = match req.mode {
        Mode::Untraced => {
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            cmd
        }
        Mode::Spanlet => {
            let mut cmd = spanlet_record(req, capture);
            cmd.arg("--").args(argv);
            cmd
        }
        Mode::Bpftrace => {
            // bpftrace splits -c on spaces, without quoting.
            if let Some(arg) = argv.iter().find(|a| a.contains(char::is_whitespace)) {
                bail!("bpftrace -c cannot run a command with a space in {arg:?}");
            }
            let script = bpftrace_script(req, label, "cpid")?;
            let mut cmd = Command::new(&req.tools.bpftrace);
            cmd.arg("-c").arg(argv.join(" ")).arg(script);
            cmd
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(stderr)?);
    let shown = display(&cmd);
    let mut child = Guard::spawn(&mut cmd)?;
    let watchdog = Watchdog::arm(child.id(), req.timeout);
    let tracer_pid = (req.mode != Mode::Untraced).then(|| child.id());
    let stdout = child.stdout()?;
    let read = read_workload(stdout, req.workload.output, tracer_pid, req.prog_stats);
    watchdog.check()?;
    let status = child.wait_for(EXIT_TIMEOUT)?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    let (measured, tracer) = read?;
    Ok((shown, measured, tracer))
}

/// The tracers trace an idle `sleep` while the workload runs untraced
/// beside it: the cost on a process outside the PID set.
fn run_outside(req: &Request, label: &str, stderr: &Path, capture: &Path) -> Result<Outcome> {
    let mut idle = Guard::spawn(
        Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    )?;
    let target = idle.id().to_string();
    let deadline = Instant::now() + req.timeout;
    let mut tracer = match req.mode {
        Mode::Untraced => None,
        Mode::Spanlet => {
            let mut cmd = spanlet_record(req, capture);
            cmd.arg("--pid").arg(&target);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file(stderr)?);
            let mut child = Guard::spawn(&mut cmd)?;
            // The capture's header is written once the programs are attached.
            wait_until(&mut child, deadline, || {
                fs::metadata(capture).is_ok_and(|m| m.len() > 0)
            })?;
            Some((display(&cmd), child))
        }
        Mode::Bpftrace => {
            let script = bpftrace_script(req, label, &target)?;
            let mut cmd = Command::new(&req.tools.bpftrace);
            cmd.arg(script)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log_file(stderr)?);
            let mut child = Guard::spawn(&mut cmd)?;
            let attached = drain_until_attached(child.stdout()?);
            wait_until(&mut child, deadline, || attached.try_recv().is_ok())?;
            Some((display(&cmd), child))
        }
    };
    // Let the tracer settle after attaching.
    thread::sleep(Duration::from_millis(200));
    let argv = &req.workload.argv;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(stderr)?);
    let mut workload = Guard::spawn(&mut cmd)?;
    let watchdog = Watchdog::arm(workload.id(), req.timeout);
    let tracer_pid = tracer.as_ref().map(|(_, t)| t.id());
    let read = read_workload(
        workload.stdout()?,
        req.workload.output,
        tracer_pid,
        req.prog_stats,
    );
    watchdog.check()?;
    let status = workload.wait_for(EXIT_TIMEOUT)?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(&cmd));
    }
    let (measured, record) = read?;
    let mut shown = display(&cmd);
    if let Some((tracer_shown, mut child)) = tracer.take() {
        child.signal(libc::SIGINT);
        let status = child.wait_for(EXIT_TIMEOUT)?;
        if !status.success() {
            bail!("`{tracer_shown}` failed ({status})");
        }
        shown = format!("{tracer_shown} & {shown}");
    }
    idle.kill();
    Ok((shown, measured, record))
}

fn spanlet_record(req: &Request, capture: &Path) -> Command {
    let mut cmd = Command::new(&req.tools.spanlet);
    cmd.arg("record")
        .arg("--output")
        .arg(capture)
        .args(req.spanlet_flags);
    cmd
}

/// Writes futex_waits.bt with its `TARGET_PID` filled in; returns its path.
fn bpftrace_script(req: &Request, label: &str, target: &str) -> Result<PathBuf> {
    let path = req.work_dir.join(format!("{label}.bt"));
    let text = req.tools.bpftrace_script.replace("TARGET_PID", target);
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn log_file(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Reads the workload's output to its end, sampling the tracer when the
/// timed phase starts and ends; `prog_stats` adds its programs' counters.
fn read_workload(
    stdout: ChildStdout,
    output: Output,
    tracer: Option<u32>,
    prog_stats: bool,
) -> Result<(Measured, Option<TracerRecord>)> {
    let sample = || tracer.map(|pid| (Instant::now(), procfs::sample(pid, prog_stats)));
    // Program names are read after the start's sample, not to delay the end's.
    let names = || {
        if prog_stats && tracer.is_some() {
            procfs::prog_names()
        } else {
            BTreeMap::new()
        }
    };
    let mut names_by_id = BTreeMap::new();
    let mut held = None;
    let mut start: Option<(Instant, Sample)> = None;
    let mut end: Option<(Instant, Sample)> = None;
    let mut measured = None;
    let mut text = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the workload's output")?;
        match output {
            Output::Json => match parse::workload_line(&line)? {
                Line::Start => {
                    start = sample();
                    held = hold(&start);
                    names_by_id = names();
                }
                Line::Result(m) => {
                    end = sample();
                    measured = Some(m);
                }
                Line::Other => {}
            },
            Output::Sysbench { .. } => {
                if parse::sysbench_started(&line) {
                    start = sample();
                    held = hold(&start);
                    names_by_id = names();
                } else if parse::sysbench_finished(&line) {
                    end = sample();
                }
                text.push_str(&line);
                text.push('\n');
            }
        }
    }
    let measured = match output {
        Output::Json => measured.context("the workload printed no result line")?,
        Output::Sysbench { ops_per_event } => {
            let (events, seconds) = parse::sysbench_report(&text)?;
            let ops = events * ops_per_event;
            Measured {
                ops,
                seconds,
                ops_per_sec: ops / seconds,
                ..Measured::default()
            }
        }
    };
    if let (Some(held), Some((_, s1))) = (&held, &mut end) {
        s1.progs = held.stats(s1);
    }
    let tracer = match (start, end) {
        (Some(start), Some(end)) => Some(tracer_record(&start, &end, &names_by_id)),
        _ if tracer.is_some() => bail!("the workload's timed phase was not seen"),
        _ => None,
    };
    Ok((measured, tracer))
}

fn hold(start: &Option<(Instant, Sample)>) -> Option<HeldProgs> {
    start.as_ref().map(|(_, s)| HeldProgs::open(s))
}

fn tracer_record(
    (t0, s0): &(Instant, Sample),
    (t1, s1): &(Instant, Sample),
    names: &BTreeMap<u32, String>,
) -> TracerRecord {
    let ticks = procfs::clock_ticks_per_sec();
    let progs = s1
        .progs
        .values()
        .map(|p| {
            let before = s0.progs.get(&p.id);
            ProgRecord {
                id: p.id,
                name: names
                    .get(&p.id)
                    .cloned()
                    .unwrap_or_else(|| format!("prog {}", p.id)),
                run_cnt: p.run_cnt - before.map_or(0, |b| b.run_cnt.min(p.run_cnt)),
                run_time_ns: p.run_time_ns - before.map_or(0, |b| b.run_time_ns.min(p.run_time_ns)),
            }
        })
        .collect();
    TracerRecord {
        window_seconds: t1.duration_since(*t0).as_secs_f64(),
        cpu_seconds: match (s0.cpu_ticks, s1.cpu_ticks) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / ticks),
            _ => None,
        },
        vm_hwm_kib: s1.vm_hwm_kib,
        progs,
        spanlet: None,
        capture_bytes: None,
    }
}

/// Reads bpftrace's stdout on a thread (so it never blocks on a full pipe);
/// the channel gets a message once the script's BEGIN line appears.
fn drain_until_attached(stdout: ChildStdout) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("futex_waits.bt: attached") {
                let _ = tx.send(());
            }
        }
    });
    rx
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
