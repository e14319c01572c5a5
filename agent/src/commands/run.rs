use std::process::ExitCode;

use spanlet::{cli::RunArgs, record::RecordOptions};

use super::record::{execute, live_otlp};

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    execute(RecordOptions {
        pids: args.pids,
        command: Vec::new(),
        duration: args.duration,
        min_wait: args.min_wait,
        output: None,
        otlp: Some(live_otlp(&args.otlp)?),
        mutex_uprobes: false,
        kernel_locks: args.kernel_locks,
        follow_forks: args.follow_forks,
        ringbuf_bytes: args.ringbuf_size,
        obi_ctx_map: Some(args.obi_ctx_map),
    })
}
