//! `cargo xtask fuzz`: a short, bounded pass of every fuzz target in fuzz/
//! (cargo-fuzz, libFuzzer, nightly), seeded from the committed corpus in
//! fuzz/corpus/<target>/. What libFuzzer adds to the corpus goes to a
//! scratch directory under target/, and so do crash artifacts: the
//! committed seeds change only by hand.

use std::{fs, path::Path, process::Command, time::Instant};

use anyhow::{Context, Result};

use crate::util::{run, target_dir, workspace_root};

/// (target, -max_len): a capture or an executable needs room; settings
/// text does not.
const TARGETS: &[(&str, u32)] = &[
    ("capture_reader", 64 * 1024),
    ("thread_ctx", 64 * 1024),
    ("config", 4 * 1024),
];

#[derive(clap::Args)]
pub struct Args {
    /// Seconds of fuzzing per target (after its build).
    #[arg(long, default_value_t = 20)]
    pub seconds: u32,
}

impl Default for Args {
    fn default() -> Self {
        Self { seconds: 20 }
    }
}

pub fn task(args: &Args) -> Result<()> {
    let root = workspace_root();
    let scratch = target_dir().join("fuzz-scratch");
    let started = Instant::now();
    build(&root)?;
    for &(target, max_len) in TARGETS {
        let new_inputs = scratch.join("corpus").join(target);
        let artifacts = scratch.join("artifacts").join(target);
        for dir in [&new_inputs, &artifacts] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let seeds = root.join("fuzz/corpus").join(target);
        // libFuzzer writes new inputs to the first corpus directory only.
        run(fuzz_command(&root)
            .args(["run", target])
            .arg(&new_inputs)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .arg(format!("-max_len={max_len}"))
            .arg("-rss_limit_mb=512")
            .arg("-timeout=10")
            .arg(format!("-artifact_prefix={}/", artifacts.display())))
        .with_context(|| {
            format!(
                "fuzz target {target} failed; the input is in {}",
                artifacts.display()
            )
        })?;
    }
    eprintln!(
        "fuzz: {} targets, {} s each, done in {:.0} s",
        TARGETS.len(),
        args.seconds,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// All targets at once, so the run steps only fuzz.
fn build(root: &Path) -> Result<()> {
    run(fuzz_command(root).arg("build"))
}

/// `cargo +nightly fuzz` in fuzz/, building into target/fuzz. The agent's
/// build script is told not to build the eBPF object: no target loads it.
fn fuzz_command(root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root.join("fuzz"))
        .args(["+nightly", "fuzz"])
        .env("CARGO_TARGET_DIR", target_dir().join("fuzz"))
        .env("AYA_BUILD_SKIP", "1");
    cmd
}
