//! `cargo xtask test`: the project's one test command (README and .ci/run use it).

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::util::{cargo, display, run, target_dir, workspace_root};

#[derive(clap::Args)]
pub struct Args {
    /// Leave out the bench smoke pass (`cargo xtask bench --smoke`, under half
    /// a minute), e.g. while iterating on one test. CI runs it.
    #[arg(long)]
    skip_bench_smoke: bool,
    /// Leave out building the OCI image (`cargo xtask image`: a static musl
    /// build and buildah, a few minutes), e.g. while iterating on one test.
    /// CI runs it.
    #[arg(long)]
    skip_image: bool,
    /// Leave out the short fuzz pass (`cargo xtask fuzz`: every target in
    /// fuzz/ for 20 s after a nightly build), e.g. while iterating on one
    /// test. CI runs it.
    #[arg(long)]
    skip_fuzz: bool,
    /// Extra arguments for `cargo test --release`, after `--`
    /// (e.g. `cargo xtask test -- -p spanlet-tests -- --nocapture`).
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

pub fn task(args: &Args) -> Result<()> {
    fmt().context("test step `cargo fmt --check` failed")?;
    clippy().context("test step `cargo clippy` failed")?;
    clippy_ebpf().context("test step `cargo clippy` of the eBPF programs failed")?;
    build().context("test step `cargo build --release` failed")?;
    validate_deploy().context("test step `cargo xtask validate-deploy` failed")?;
    if args.skip_image {
        eprintln!("test: skipping the image build (--skip-image)");
    } else {
        image().context("test step `cargo xtask image` failed")?;
    }
    if args.skip_bench_smoke {
        eprintln!("test: skipping the bench smoke pass (--skip-bench-smoke)");
    } else {
        bench_smoke().context("test step `cargo xtask bench --smoke` failed")?;
    }
    if args.skip_fuzz {
        eprintln!("test: skipping the fuzz pass (--skip-fuzz)");
    } else {
        fuzz().context("test step `cargo xtask fuzz` failed")?;
    }
    test(&args.cargo_test_args).context("test step `cargo test --release` failed")?;
    Ok(())
}

fn fmt() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))
}

/// Run at the root without `--workspace`: default-members leave out
/// agent-ebpf, whose binary only builds for the BPF target (agent/build.rs
/// builds it there, in `cargo build` below). Clippy's build-script output
/// directory differs from the build's, so without `AYA_BUILD_SKIP=1` the eBPF
/// object would be compiled twice; clippy never lints it either way.
fn clippy() -> Result<()> {
    run(cargo()
        .args([
            "clippy",
            "--all-targets",
            "--release",
            "--",
            "-D",
            "warnings",
        ])
        .env("AYA_BUILD_SKIP", "1"))
}

/// The kernel programs, for the BPF target with the nightly toolchain, as
/// agent/build.rs builds them (in a target directory of their own).
fn clippy_ebpf() -> Result<()> {
    let root = workspace_root();
    run(Command::new("cargo")
        .current_dir(root.join("agent-ebpf"))
        .args([
            "+nightly",
            "clippy",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--bins",
            "--lib",
            "--target-dir",
        ])
        .arg(root.join("target/clippy-ebpf"))
        .args(["--", "-D", "warnings"]))
}

/// Builds `spanlet` including its eBPF object (agent/build.rs via aya-build).
fn build() -> Result<()> {
    run(cargo().args(["build", "--release"]))
}

/// The Kubernetes manifest and Helm chart in deploy/, against the API
/// schemas and each other; no cluster needed.
fn validate_deploy() -> Result<()> {
    eprintln!("$ cargo xtask validate-deploy");
    crate::deploy::task()
}

/// The deployable image, built the way a release would be, and its binary
/// run from the image's root filesystem, so deploy/Containerfile and the
/// static musl build cannot rot.
fn image() -> Result<()> {
    eprintln!("$ cargo xtask image");
    crate::image::task(&crate::image::Args::default())
}

/// One short pass of the bench harness, so it cannot rot: every scenario
/// untraced, under spanlet and under bpftrace. It asserts nothing about
/// speed, only that every scenario ran and produced numbers.
fn bench_smoke() -> Result<()> {
    eprintln!("$ cargo xtask bench --smoke");
    crate::bench::task(&crate::bench::Args::smoke())
}

/// Every fuzz target for a short bounded time from the committed seeds: a
/// parser change that panics on damaged input is caught here.
fn fuzz() -> Result<()> {
    eprintln!("$ cargo xtask fuzz");
    crate::fuzz::task(&crate::fuzz::Args::default())
}

/// Unit and integration tests; the integration tests run the built binary
/// (`SPANLET_BIN`) and load real eBPF programs, so they need root. Cargo's
/// output is passed through, and the per-binary `test result:` lines are
/// summed into one closing line, so the run ends on the whole count rather
/// than on whichever binary happened to run last.
fn test(extra: &[String]) -> Result<()> {
    let bin = target_dir().join("release").join("spanlet");
    let mut cmd = cargo();
    cmd.args(["test", "--release"])
        .args(extra)
        .env("SPANLET_BIN", &bin)
        .stdout(Stdio::piped());
    // The OTLP export tests send to rotel, installed by `cargo xtask setup`.
    if let Some(rotel) = crate::setup::rotel_agent() {
        cmd.env("SPANLET_ROTEL", rotel);
    }
    eprintln!("$ {}", display(&cmd));
    let mut child = cmd.spawn().context("could not start `cargo test`")?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let mut totals = Totals::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        totals.add(&line);
    }
    let status = child.wait().context("waiting for `cargo test`")?;
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if !status.success() {
        bail!("`cargo test --release` failed ({status})");
    }
    if totals.passed == 0 {
        bail!("`cargo test --release` ran no test");
    }
    Ok(())
}

/// Sums of cargo's `test result: ok. 3 passed; 0 failed; 1 ignored; ...` lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    fn add(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_result_lines() {
        let mut t = Totals::default();
        t.add("test result: ok. 57 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.04s");
        t.add("test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out");
        t.add("test foo ... ok");
        assert_eq!(
            t,
            Totals {
                passed: 60,
                failed: 1,
                ignored: 1
            }
        );
    }
}
