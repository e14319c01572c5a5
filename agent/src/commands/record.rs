use std::{io::IsTerminal as _, process::ExitCode, time::Duration};

use anyhow::Context as _;
use spanlet::{
    cli::{OtlpArgs, RecordArgs},
    host::procfs,
    kernel::features::Features,
    model::CaptureStats,
    output::otlp::{ResourceSettings, Settings, live::LiveOtlp},
    output::report::format_duration_ns,
    output::term_escape::Escaped,
    record::{LiveConsumer, NoHooks, Progress, RecordOptions, RecordSummary, Recorder},
};

pub fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let opts = RecordOptions {
        pids: args.pids,
        command: args.command,
        duration: args.duration,
        output: Some(args.output),
        features: Features {
            min_wait: args.min_wait,
            mutex_uprobes: args.mutex_uprobes,
            kernel_locks: args.kernel_locks,
            follow_forks: args.follow_forks,
            ringbuf_bytes: args.ringbuf_size,
            obi_ctx_map: Some(args.obi_ctx_map),
            trace_all: false,
            report_all_execs: false,
        },
    };
    let otlp = match args.otlp {
        true => Some(live_otlp(&args.otlp_args)?),
        false => None,
    };
    execute(opts, otlp)
}

/// OTLP settings from the environment and flags, checked before tracing.
pub fn live_otlp(args: &OtlpArgs) -> anyhow::Result<LiveOtlp> {
    Ok(LiveOtlp {
        settings: Settings::from_env(&args.overrides())?,
        resource: ResourceSettings::from_env(&procfs::hostname())?,
    })
}

/// Records and prints the summary; the exit code follows a launched
/// command's.
fn execute(opts: RecordOptions, otlp: Option<LiveOtlp>) -> anyhow::Result<ExitCode> {
    let destination = match (&opts.output, &otlp) {
        (Some(path), _) => path.display().to_string(),
        (None, Some(otlp)) => otlp.settings.logs_endpoint.clone(),
        (None, None) => "nowhere".to_owned(),
    };
    let program = opts.command.first().cloned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let summary = runtime.block_on(async {
        let recorder = Recorder::new(opts, Box::new(NoHooks), Box::new(StderrProgress::new()))?;
        let live = start_live(otlp)?;
        anyhow::Ok(recorder.run(live).await?)
    })?;
    if let (Some(pid), Some(program)) = (summary.left_running, program) {
        eprintln!("spanlet: {program} (pid {pid}) is still running, no longer traced");
    }
    Ok(print_summary(&summary, &destination))
}

/// Starts the live OTLP export, if asked for; bad settings are an error
/// before tracing starts.
pub fn start_live(otlp: Option<LiveOtlp>) -> anyhow::Result<Option<Box<dyn LiveConsumer>>> {
    Ok(match otlp {
        Some(otlp) => Some(Box::new(otlp.start()?)),
        None => None,
    })
}

/// Tells how a recording goes on stderr, with a live line on a terminal.
pub struct StderrProgress {
    live_line: bool,
}

impl StderrProgress {
    pub fn new() -> Self {
        Self {
            live_line: std::io::stderr().is_terminal(),
        }
    }
}

impl Progress for StderrProgress {
    fn pid_is_thread(&mut self, tid: u32, tgid: u32) {
        eprintln!("spanlet: {tid} is a thread of process {tgid}; tracing process {tgid}");
    }

    fn recording(&mut self, stats: &CaptureStats, elapsed: Duration) {
        if self.live_line {
            eprint!(
                "\r\x1b[Kspanlet: recording {:>5.1}s  spanlets {}  dropped {}",
                elapsed.as_secs_f64(),
                stats.spanlets,
                stats.dropped()
            );
        }
    }

    fn stopped(&mut self) {
        if self.live_line {
            eprintln!();
        }
    }
}

/// Prints what a recording did; the exit code follows a launched command's.
pub fn print_summary(summary: &RecordSummary, destination: &str) -> ExitCode {
    let s = &summary.stats;
    // Every figure that closes the books on the waits seen: each was
    // recorded, filtered, still open when its thread exited, or dropped.
    eprintln!(
        "spanlet: {} spanlets in {} to {destination} ({}); {} waits seen, {} below --min-wait, {} still waiting when their thread exited, {} dropped; {} recorded as ending at their wake-up",
        s.spanlets,
        format_duration_ns(u64::try_from(summary.elapsed.as_nanos()).unwrap_or(u64::MAX)),
        summary.end.reason,
        s.waits_seen,
        s.below_min_wait,
        s.exited_in_wait,
        s.dropped(),
        s.waits_ended_at_wake,
    );
    if let Some(e) = &summary.export {
        eprintln!(
            "spanlet: OTLP: {} spanlets exported, {} dropped ({} while the queue was full, {} in failed batches, {} unsent at exit)",
            e.exported,
            e.dropped(),
            e.dropped_queue_full,
            e.dropped_send_failed,
            e.dropped_at_exit
        );
        if let Some(err) = &e.last_error {
            // It may quote the collector's answer.
            eprintln!("spanlet: OTLP: last error: {}", Escaped(err));
        }
    }
    if s.dropped_pids_map_full > 0 {
        eprintln!(
            "spanlet: warning: {} forked processes were not traced (PID map full)",
            s.dropped_pids_map_full
        );
    }
    if s.holds_below_min_wait > 0 {
        eprintln!(
            "spanlet: {} mutex holds shorter than --min-wait were not recorded",
            s.holds_below_min_wait
        );
    }
    if s.kernel_lock_waits_below_min_wait > 0 {
        eprintln!(
            "spanlet: {} kernel lock waits shorter than --min-wait were not recorded",
            s.kernel_lock_waits_below_min_wait
        );
    }
    if s.dropped() > 0 {
        eprintln!(
            "spanlet: warning: {} events lost (ring full {}, wait map full {}, hold maps full {}, kernel lock map full {}, queue full {}); try a larger --ringbuf-size or a higher --min-wait",
            s.dropped(),
            s.dropped_ringbuf_full,
            s.dropped_waits_map_full,
            s.dropped_held_map_full,
            s.dropped_kernel_locks_map_full,
            s.dropped_user_queue_full
        );
    }
    // Like `time`, pass the launched command's failure on.
    let code = summary
        .command_status
        .and_then(|st| {
            use std::os::unix::process::ExitStatusExt as _;
            st.code().or_else(|| st.signal().map(|sig| 128 + sig))
        })
        .unwrap_or(0);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
