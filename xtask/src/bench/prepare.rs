//! Before any run: spanlet built, the C workloads compiled, the tools found.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::scenarios::Programs;
use crate::util::{cargo, run, stdout_of, target_dir, workspace_root};

/// Sources of the bench workloads and the bpftrace script.
pub const SOURCES: &str = "xtask/workloads/bench";
const C_WORKLOADS: [&str; 6] = [
    "wake",
    "pingpong",
    "tcppingpong",
    "shortcs",
    "idle",
    "mmaplock",
];

/// Everything a run needs besides its scenario.
#[derive(Clone, Debug)]
pub struct Tools {
    pub spanlet: PathBuf,
    pub bpftrace: PathBuf,
    /// `futex_waits.bt`, with `TARGET_PID` still in it.
    pub bpftrace_script: String,
    pub programs: Programs,
}

pub fn tools(spanlet: Option<&Path>) -> Result<Tools> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench loads eBPF programs (spanlet and bpftrace): run it as root");
    }
    let spanlet = match spanlet {
        Some(bin) => bin.to_path_buf(),
        None => build_spanlet()?,
    };
    let sources = workspace_root().join(SOURCES);
    let script_path = sources.join("futex_waits.bt");
    let bpftrace_script = fs::read_to_string(&script_path)
        .with_context(|| format!("reading {}", script_path.display()))?;
    let programs = Programs {
        bin_dir: compile_workloads(&sources)?,
        python: python()?,
        pylock: sources.join("pylock.py"),
        sysbench: which("sysbench")?,
    };
    Ok(Tools {
        spanlet,
        bpftrace: which("bpftrace")?,
        bpftrace_script,
        programs,
    })
}

/// Like `cargo xtask demo`: only the binary, selected like `cargo xtask
/// test`'s build, so the two share one build.
fn build_spanlet() -> Result<PathBuf> {
    eprintln!("bench: building spanlet (release)");
    run(cargo().args(["build", "--release", "--bin", "spanlet"]))?;
    Ok(target_dir().join("release").join("spanlet"))
}

/// Compiles the C workloads into `<target>/xtask/bench/`.
fn compile_workloads(sources: &Path) -> Result<PathBuf> {
    let out = target_dir().join("xtask").join("bench");
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for name in C_WORKLOADS {
        run(Command::new("gcc")
            .args(["-O2", "-g", "-pthread", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(out.join(name))
            .arg(sources.join(format!("{name}.c"))))
        .with_context(|| format!("compiling the {name} workload"))?;
    }
    Ok(out)
}

/// The interpreter behind `python3` (pyenv's shim is a shell script; the
/// bpftrace script traces the launched process itself).
fn python() -> Result<PathBuf> {
    let exe = stdout_of(Command::new("python3").args(["-c", "import sys; print(sys.executable)"]))
        .context("finding the python3 interpreter")?;
    Ok(PathBuf::from(exe.trim()))
}

/// A program's absolute path, from `PATH`.
pub fn which(name: &str) -> Result<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("`{name}` is not installed (cargo xtask setup installs it)"))
}
