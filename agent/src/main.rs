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
            eprintln!("spanlet: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
