//! One module per subcommand; each turns parsed arguments into calls on the
//! library and an exit code.
mod export;
mod record;
mod replay;
mod report;
mod run;

use std::process::ExitCode;

use spanlet::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Record(args) => record::run(args),
        Command::Run(args) => {
            // First, while this is the only thread: every thread the agent
            // starts inherits it.
            if spanlet::kernel::caps::harden()?.securebits {
                tracing::info!("no_new_privs set, securebits locked");
            } else {
                tracing::info!("no_new_privs set; securebits unchanged (no CAP_SETPCAP)");
            }
            run::run(args)
        }
        Command::Report(args) => report::run(&args),
        Command::Export(args) => export::run(&args),
        Command::Replay(args) => replay::run(&args),
    }
}

/// Tells on stderr what a streaming read found wrong with a capture.
fn warn_of_damage<R: std::io::Read>(
    file: &std::path::Path,
    reader: &spanlet::capture::CaptureReader<R>,
) {
    let tail = reader.damaged_tail().map(|t| t.bytes);
    for warning in reader.integrity().warnings(tail) {
        eprintln!(
            "spanlet: warning: {}: {warning}",
            spanlet::output::term_escape::Escaped(&file.display().to_string())
        );
    }
}
