//! Creating the files that hold capture data (captures, exports) safely
//! when running as root in a directory someone else can write to.
//!
//! Nothing already at the output path is ever opened: the data goes to a
//! new file, created exclusively under a random name in the same directory,
//! which is then renamed over the output path. A rename replaces a symbolic
//! link (or a hard link, or another user's file) planted there instead of
//! writing through it, so no other file can be truncated or overwritten, and
//! the result is always a fresh file owned by the writer. Captures hold
//! command lines and thread names, so the file is mode 0600 whatever the
//! umask.

use std::{
    fs::{File, Permissions},
    io,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

/// Mode of every file spanlet writes capture data to.
pub const PRIVATE_MODE: u32 = 0o600;

/// A new private file that will become `path` once [`persist`]ed; dropped
/// before that, it is removed and `path` is left as it was.
///
/// [`persist`]: PrivateFile::persist
#[derive(Debug)]
pub struct PrivateFile {
    path: PathBuf,
    temp: tempfile::NamedTempFile,
}

impl PrivateFile {
    /// Creates the file next to `path` (which is not touched yet).
    pub fn create(path: &Path) -> io::Result<Self> {
        if path.file_name().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the output path names no file",
            ));
        }
        // Renaming over a directory would fail only at the end; say it now.
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".spanlet-")
            .suffix(".tmp")
            .permissions(Permissions::from_mode(PRIVATE_MODE))
            .tempfile_in(dir)?;
        // The umask may have taken bits off the mode asked for above.
        temp.as_file()
            .set_permissions(Permissions::from_mode(PRIVATE_MODE))?;
        Ok(Self {
            path: path.to_owned(),
            temp,
        })
    }

    /// Where the file will be once persisted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file, open for writing.
    pub fn file(&self) -> &File {
        self.temp.as_file()
    }

    /// Renames the file over its output path, replacing whatever is there
    /// (never what a link there points to), and returns it still open.
    pub fn persist(self) -> io::Result<File> {
        self.temp.persist(&self.path).map_err(|e| e.error)
    }
}
