//! spanlet's developer tasks, run as `cargo xtask <task>` (alias in .cargo/config.toml).
//!
//! Needs only the stable toolchain itself; `setup` installs what the rest needs.

mod demo;
mod setup;
mod test;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Developer tasks for spanlet.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Prepare this machine: rust-src for nightly, bpf-linker, Debian packages,
    /// tracefs, BTF check. Idempotent; seconds when nothing is missing.
    Setup,
    /// The project's one test command: fmt check, clippy, release build, then
    /// `cargo test --release` (integration tests load real eBPF: run as root).
    Test(test::Args),
    /// Build spanlet, record a bundled contended C workload, print the report.
    Demo(demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::task(),
        Task::Test(args) => test::task(&args),
        Task::Demo(args) => demo::task(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
