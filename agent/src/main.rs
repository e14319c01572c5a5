//! `spanlet`: parse, set up logging, dispatch. Errors print as one line.
mod commands;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = spanlet::cli::Cli::parse();
    spanlet::logging::init();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // An error can quote a traced process's text or a collector's answer.
            let line = one_line(&err);
            eprintln!(
                "spanlet: error: {}",
                spanlet::output::term_escape::escape(&line)
            );
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text the
/// message before it already includes (some library errors print their
/// source in their own message too).
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}
