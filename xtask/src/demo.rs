//! `cargo xtask demo`: record a bundled contended workload and print the report.
//! Progress goes to stderr; stdout carries only the report.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result};

use crate::util::{cargo, run, target_dir, workspace_root};

const WORKLOAD_SOURCE: &str = "xtask/workloads/demo_contention.c";

#[derive(clap::Args)]
pub struct Args {
    /// Where to write the recording (default: a temporary file, removed afterwards).
    #[arg(long)]
    output: Option<PathBuf>,
    /// How long the workload runs, in seconds.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

pub fn task(args: &Args) -> Result<()> {
    build_spanlet().context("demo step `build spanlet` failed")?;
    let workload = build_workload().context("demo step `build workload` failed")?;

    let tmp = tempfile::Builder::new()
        .prefix("spanlet-demo-")
        .tempdir()
        .context("creating a temporary directory")?;
    let recording = args
        .output
        .clone()
        .unwrap_or_else(|| tmp.path().join("demo.spanlet"));
    record(&workload, args.seconds, &recording).context("demo step `spanlet record` failed")?;
    report(&recording).context("demo step `spanlet report` failed")?;
    Ok(())
}

fn spanlet_bin() -> PathBuf {
    target_dir().join("release").join("spanlet")
}

/// Only the `spanlet` binary, but selected like `cargo xtask test`'s build
/// (default members, so the same features): the two share one build.
fn build_spanlet() -> Result<()> {
    eprintln!("demo: building spanlet (release)");
    run(cargo().args(["build", "--release", "--bin", "spanlet"]))
}

/// Compile the C workload into `target/xtask/demo_contention` with frame
/// pointers and debug info, so its stacks symbolize.
fn build_workload() -> Result<PathBuf> {
    let source = workspace_root().join(WORKLOAD_SOURCE);
    let out_dir = target_dir().join("xtask");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let binary = out_dir.join("demo_contention");
    eprintln!("demo: compiling the contended workload {WORKLOAD_SOURCE}");
    run(Command::new("gcc")
        .args([
            "-O1",
            "-g",
            "-fno-omit-frame-pointer",
            "-pthread",
            "-Wall",
            "-o",
        ])
        .arg(&binary)
        .arg(&source))?;
    Ok(binary)
}

/// Everything the recording prints (spanlet's and the workload's output) goes
/// to stderr so that stdout ends with the report alone.
fn record(workload: &Path, seconds: f64, recording: &Path) -> Result<()> {
    eprintln!(
        "demo: recording a {seconds} s run of a bank whose 4 tellers and an auditor share one \
         pthread mutex (needs root)"
    );
    run(Command::new(spanlet_bin())
        .arg("record")
        .arg("--output")
        .arg(recording)
        .arg("--")
        .arg(workload)
        .arg(seconds.to_string())
        .stdout(Stdio::from(std::io::stderr())))?;
    eprintln!("demo: recorded {}", recording.display());
    Ok(())
}

fn report(recording: &Path) -> Result<()> {
    eprintln!("demo: report");
    run(Command::new(spanlet_bin()).arg("report").arg(recording))
}
