//! Launching the command `spanlet record -- CMD` traces, from its first
//! instruction.
use std::{path::PathBuf, process::ExitStatus};

use super::RecordError;
use crate::kernel::loader::Tracer;

/// A launched command, traced from its first instruction: the agent's own
/// PID is in the set as a spawner, so the kernel's fork hook adds the child.
pub(super) struct Launched {
    pub(super) child: tokio::process::Child,
    pub(super) pid: u32,
}

pub(super) fn launch(tracer: &mut Tracer, command: &[String]) -> Result<Launched, RecordError> {
    let own = std::process::id();
    // The program's thread-context slot, known before it starts, is set in
    // the kernel as it execs: its very first waits carry context.
    if let Some(program) = program_path(&command[0]) {
        tracer.know_program(&program);
    }
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..]);
    let spawned = cmd.spawn();
    // Stop following the agent's own forks whatever happened.
    tracer.remove_pid(own);
    let child = spawned.map_err(|source| RecordError::Spawn {
        command: command.join(" "),
        source,
    })?;
    let pid = child.id().unwrap_or(0);
    // The fork hook added it already; this makes sure, and marks it as asked for.
    tracer.add_pid(pid)?;
    Ok(Launched { child, pid })
}

/// The file `execvp` would run for `name`: a path as given, else the first
/// executable match on `$PATH`.
fn program_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let is_exec = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_exec(&p).then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| is_exec(p))
}

pub(super) fn exit_code_text(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "unknown status".to_owned(),
    }
}

/// Resolves when the launched command exits; never without one.
pub(super) async fn child_exit(launched: Option<&mut Launched>) -> std::io::Result<ExitStatus> {
    match launched {
        Some(l) => l.child.wait().await,
        None => std::future::pending().await,
    }
}
