use std::process::ExitCode;

use spanlet::{
    capture::Capture,
    cli::{ReportArgs, ReportFormat},
    report::{build_report, render_json, render_text},
    term_escape::json_for_terminal,
};

pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let capture = Capture::open(&args.file)?;
    let report = build_report(&capture, args.top);
    match args.format {
        ReportFormat::Text => print!("{}", render_text(&report)),
        ReportFormat::Json => {
            let json = serde_json::to_string_pretty(&render_json(&report))?;
            println!("{}", json_for_terminal(&json));
        }
    }
    Ok(ExitCode::SUCCESS)
}
