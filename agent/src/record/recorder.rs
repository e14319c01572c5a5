//! The recorder before it starts: [`Recorder::new`] checks what can be
//! checked (targets, privileges, the output file), and [`Recorder::run`]
//! records until the end.
use super::{
    hooks::{Progress, RecordHooks},
    live::LiveConsumer,
    options::{RecordError, RecordOptions, RecordSummary},
    recording::Recording,
};
use crate::{capture::PrivateFile, host::procfs, kernel::loader::LoadError};

/// A recording whose settings were checked: its processes exist, the agent
/// has the privileges, and the capture file is created (it replaces the
/// output path only once recording starts). Nothing started yet.
pub struct Recorder {
    pub(super) opts: RecordOptions,
    pub(super) output: Option<PrivateFile>,
    pub(super) hooks: Box<dyn RecordHooks>,
    pub(super) progress: Box<dyn Progress>,
}

impl Recorder {
    pub fn new(
        mut opts: RecordOptions,
        hooks: Box<dyn RecordHooks>,
        mut progress: Box<dyn Progress>,
    ) -> Result<Self, RecordError> {
        if opts.pids.is_empty() && opts.command.is_empty() && !hooks.selects_processes() {
            return Err(RecordError::NoTarget);
        }
        opts.pids = resolve_pids(&opts.pids, progress.as_mut())?;
        // Privileges first, then the output, before touching the kernel or
        // the command. The capture goes to a new private file that replaces
        // the output path only once recording starts, so a failed run
        // leaves an existing capture as it was (see `capture::PrivateFile`).
        crate::kernel::caps::check().map_err(LoadError::from)?;
        let output = match &opts.output {
            Some(output) => {
                Some(
                    PrivateFile::create(output).map_err(|source| RecordError::Output {
                        path: output.display().to_string(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Ok(Self {
            opts,
            output,
            hooks,
            progress,
        })
    }

    /// Loads the programs, launches the command if any, and records until
    /// the end; `live` is handed what the capture gets.
    pub async fn run(
        self,
        live: Option<Box<dyn LiveConsumer>>,
    ) -> Result<RecordSummary, RecordError> {
        let mut recording = Recording::start(self, live)?;
        let (reason, command_status) = recording.run_loop().await?;
        recording.stop(reason, command_status).await
    }
}

/// The processes behind `--pid` values: a thread id names its process (the
/// kernel filter works on processes); unknown or finished ones are errors.
fn resolve_pids(pids: &[u32], progress: &mut dyn Progress) -> Result<Vec<u32>, RecordError> {
    let mut resolved: Vec<u32> = Vec::with_capacity(pids.len());
    for &pid in pids {
        if pid == 0 || !procfs::is_running(pid) {
            return Err(RecordError::NoSuchPid(pid));
        }
        let tgid = procfs::tgid_of(pid).unwrap_or(pid);
        if tgid != pid {
            progress.pid_is_thread(pid, tgid);
        }
        if !resolved.contains(&tgid) {
            resolved.push(tgid);
        }
    }
    Ok(resolved)
}
