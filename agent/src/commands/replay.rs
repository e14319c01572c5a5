use std::process::ExitCode;

use anyhow::Context as _;
use spanlet::{
    capture::{Capture, CaptureReader},
    cli::ReplayArgs,
    output::otlp::{self, ResourceSettings, Sender, Settings},
};

/// Reads the capture twice, so memory stays bounded whatever its size:
/// first for its process and thread names (which name every spanlet, also
/// those recorded before a thread was renamed), then streaming its spanlets.
pub fn run(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env(&args.otlp.overrides())?;
    let names = Capture::read_names(CaptureReader::open(&args.file)?)?;
    for warning in names.warnings() {
        eprintln!(
            "spanlet: warning: {}: {warning}; replaying what could be read",
            spanlet::output::term_escape::Escaped(&args.file.display().to_string())
        );
    }
    let mut spanlets = CaptureReader::open(&args.file)?;
    let resource = ResourceSettings::from_env(&names.meta.hostname)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let endpoint = settings.logs_endpoint.clone();
    let delivered = runtime.block_on(async {
        let mut sender = Sender::new(settings, otlp::replay_retry())?;
        otlp::replay(
            &mut spanlets,
            &names,
            &mut sender,
            &resource,
            args.batch as usize,
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
