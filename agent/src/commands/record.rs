use std::process::ExitCode;

use anyhow::Context as _;
use spanlet::{
    cli::RecordArgs,
    record::{RecordOptions, record},
    report::format_duration_ns,
};

pub fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let opts = RecordOptions {
        pids: args.pids,
        command: args.command,
        duration: args.duration,
        min_wait: args.min_wait,
        output: args.output,
        mutex_uprobes: args.mutex_uprobes,
        follow_forks: args.follow_forks,
        ringbuf_bytes: args.ringbuf_size,
    };
    let output = opts.output.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let summary = runtime.block_on(record(opts))?;
    let s = &summary.stats;
    eprintln!(
        "spanlet: {} spanlets in {} to {} ({}); {} waits seen, {} below --min-wait, {} dropped",
        s.spanlets,
        format_duration_ns(u64::try_from(summary.elapsed.as_nanos()).unwrap_or(u64::MAX)),
        output.display(),
        summary.end.reason,
        s.waits_seen,
        s.below_min_wait,
        s.dropped(),
    );
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
    if s.dropped() > 0 {
        eprintln!(
            "spanlet: warning: {} events lost (ring full {}, wait map full {}, queue full {}); try a larger --ringbuf-size or a higher --min-wait",
            s.dropped(),
            s.dropped_ringbuf_full,
            s.dropped_waits_map_full,
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
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
