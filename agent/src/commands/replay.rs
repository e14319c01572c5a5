use std::process::ExitCode;

use anyhow::Context as _;
use spanlet::{
    capture::Capture,
    cli::ReplayArgs,
    otlp::{self, ResourceSettings, RetryPolicy, Sender, Settings},
};

pub fn run(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env(&args.otlp.overrides())?;
    let capture = Capture::open(&args.file)?;
    if capture.truncated {
        eprintln!(
            "spanlet: warning: {} ends in {} damaged bytes (an interrupted recording?); replaying what precedes them",
            args.file.display(),
            capture.damaged_tail_bytes
        );
    }
    let resource = ResourceSettings::from_env(&capture.meta.hostname)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let endpoint = settings.logs_endpoint.clone();
    let delivered = runtime.block_on(async {
        let mut sender = Sender::new(settings)?;
        otlp::replay(
            &capture,
            &mut sender,
            &resource,
            args.batch as usize,
            RetryPolicy::default(),
        )
        .await
        .map_err(anyhow::Error::from)
    })?;
    eprintln!(
        "spanlet: replayed {} spanlets to {endpoint}: {} log events, {} spans",
        delivered.spanlets, delivered.events, delivered.spans
    );
    Ok(ExitCode::SUCCESS)
}
