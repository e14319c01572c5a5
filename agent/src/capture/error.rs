//! Errors of reading and writing capture files; each names the file so that a
//! CLI can print it as is.

use std::{io, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The cause is the error's source; a CLI printing the chain shows it.
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{}: the file is empty (the recorder stopped before writing anything)", path.display())]
    Empty { path: PathBuf },

    #[error("{}: not a spanlet capture (bad magic bytes)", path.display())]
    NotACapture { path: PathBuf },

    #[error(
        "{}: unsupported capture format version {found} (this build reads versions 1 to {supported})",
        path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("{}: missing or invalid capture metadata: {reason}", path.display())]
    InvalidMeta { path: PathBuf, reason: String },

    #[error(
        "{}: malformed record (type {record_type}) at byte offset {offset}: {reason}",
        path.display()
    )]
    Malformed {
        path: PathBuf,
        offset: u64,
        record_type: u8,
        reason: String,
    },

    #[error("{}: cannot encode a record: {reason}", path.display())]
    Encode { path: PathBuf, reason: String },
}

impl CaptureError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}
