use std::{io::Write as _, process::ExitCode};

use anyhow::Context as _;
use spanlet::{
    capture::Capture,
    cli::{ReportArgs, ReportFormat},
    output::report::{build_report, render_json, render_text},
    output::term_escape::{Escaped, json_for_terminal},
};

pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let capture = Capture::open(&args.file)?;
    for warning in capture.warnings() {
        eprintln!(
            "spanlet: warning: {}: {warning}",
            Escaped(&args.file.display().to_string())
        );
    }
    let report = build_report(&capture, args.top);
    let text = match args.format {
        ReportFormat::Text => render_text(&report),
        ReportFormat::Json => {
            format!(
                "{}\n",
                json_for_terminal(&serde_json::to_string_pretty(&render_json(&report))?)
            )
        }
    };
    // A closed pipe or a full disk is an error like any other, not a panic.
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the report to standard output")?;
    Ok(ExitCode::SUCCESS)
}
