//! spanlet's developer tasks, run as `cargo xtask <task>` (alias in .cargo/config.toml).
//!
//! Needs only the stable toolchain itself; `setup` installs what the rest needs.

mod bench;
mod demo;
mod deploy;
mod elf;
mod fuzz;
mod image;
#[cfg(test)]
mod layers;
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
    /// tracefs, BTF check, the musl target, kubernetes-validate, helm and
    /// cargo-fuzz.
    /// Idempotent; seconds when nothing is missing.
    Setup,
    /// The project's one test command: setup, fmt check, clippy, release
    /// build, deploy/ validation, the OCI image, a bench smoke pass, a
    /// short fuzz pass, then
    /// `cargo test --release` (integration tests load real eBPF: run as
    /// root).
    Test(test::Args),
    /// Setup, build spanlet, record a bundled contended C workload, print
    /// the report.
    Demo(demo::Args),
    /// Setup, then measure tracing overhead: every scenario untraced, under
    /// spanlet and under an equivalent bpftrace script, interleaved; writes
    /// BENCHMARKS.md and raw JSON in bench-results/ (run as root).
    Bench(bench::Args),
    /// Setup, build a static (musl) spanlet, package it FROM scratch as an
    /// OCI image with buildah (deploy/Containerfile), and run the image's
    /// binary out of its mounted root filesystem (run as root).
    Image(image::Args),
    /// Setup, then a short bounded pass of every fuzz target in fuzz/
    /// (cargo-fuzz on nightly), seeded from fuzz/corpus/; new inputs and
    /// crashes go under target/fuzz-scratch/.
    Fuzz(fuzz::Args),
    /// Setup, then check deploy/: the Kubernetes manifest against the API
    /// schemas, the Helm chart linted, rendered and validated the same way
    /// and equal to the manifest, versions in step with the workspace.
    ValidateDeploy,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::task(),
        // Each starts with the idempotent setup, so each works on a fresh
        // machine on its own.
        Task::Test(args) => setup::task().and_then(|()| test::task(&args)),
        Task::Demo(args) => setup::task().and_then(|()| demo::task(&args)),
        Task::Bench(args) => setup::task().and_then(|()| bench::task(&args)),
        Task::Image(args) => setup::task().and_then(|()| image::task(&args)),
        Task::ValidateDeploy => setup::task().and_then(|()| deploy::task()),
        Task::Fuzz(args) => setup::task().and_then(|()| fuzz::task(&args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
