//! What a recording is asked to do, what it reports, and how it fails.
use std::{path::PathBuf, process::ExitStatus, time::Duration};

use super::LiveSummary;
use crate::{
    capture::CaptureError,
    kernel::features::Features,
    kernel::loader::LoadError,
    model::{CaptureEnd, CaptureStats},
};

#[derive(Clone, Debug)]
pub struct RecordOptions {
    pub pids: Vec<u32>,
    /// A command to launch and trace (with its children).
    pub command: Vec<String>,
    pub duration: Option<Duration>,
    /// Capture file; `None` (`spanlet run`) writes none.
    pub output: Option<PathBuf>,
    /// What the programs record (a launched command's forks are followed
    /// whatever it says).
    pub features: Features,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("nothing to trace: give --pid PID or a command after --")]
    NoTarget,
    #[error("no such process: PID {0}")]
    NoSuchPid(u32),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("cannot write the capture to {path}")]
    Output {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot run {command}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{what}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

/// What a finished recording reports.
#[derive(Debug)]
pub struct RecordSummary {
    pub stats: CaptureStats,
    pub end: CaptureEnd,
    pub elapsed: Duration,
    /// Exit status of the launched command, if it ended while recording.
    pub command_status: Option<ExitStatus>,
    /// Live export figures, when exporting.
    pub export: Option<LiveSummary>,
    /// The launched command's PID, when it was still running as
    /// recording stopped (it is no longer traced).
    pub left_running: Option<u32>,
}
