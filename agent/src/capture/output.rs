//! Creating the files that hold capture data (captures, exports) safely
//! when running as root in a directory someone else can write to.
//!
//! A symbolic link at the output path is refused, never followed: it may
//! have been planted to point anywhere, and replacing it could break a link
//! the user made (`/dev/stdout`). Otherwise nothing already at the path is
//! opened: the data goes to a new file, created exclusively under a random
//! name in the same directory, which is then renamed over the path. That
//! replaces another user's file (or a hard link) planted there instead of
//! writing into it, and the result is always a fresh file owned by the
//! writer. Captures hold command lines and thread names, so the file is mode
//! 0600 whatever the umask. The one exception is a device or FIFO owned by
//! the writer or root (`/dev/null`), which is opened as it is.

use std::{
    fs::{File, OpenOptions, Permissions},
    io,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _},
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
    target: Target,
}

#[derive(Debug)]
enum Target {
    /// A new file next to the path, renamed over it at the end.
    Temp(tempfile::NamedTempFile),
    /// A device or FIFO of the writer's own, written in place.
    Special(File),
}

impl PrivateFile {
    /// Creates the file next to `path` (which is not touched yet), or fails
    /// if `path` is a link, a directory, or a special file of another user.
    pub fn create(path: &Path) -> io::Result<Self> {
        if path.file_name().is_none() {
            return Err(refused("names no file"));
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(refused(
                    "is a symbolic link; spanlet does not write through links (one \
                     planted there could point anywhere): remove it or name the file itself",
                ));
            }
            Ok(meta) if meta.is_dir() => return Err(io::Error::from_raw_os_error(libc::EISDIR)),
            Ok(meta) if !meta.is_file() => return Self::special(path, &meta),
            _ => {}
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
            target: Target::Temp(temp),
        })
    }

    /// A device or FIFO is written in place if the writer or root owns it.
    fn special(path: &Path, meta: &std::fs::Metadata) -> io::Result<Self> {
        check_special(meta)?;
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        // What was opened is checked again: the path may have been swapped
        // for another user's regular file since it was looked at.
        check_special(&file.metadata()?)?;
        Ok(Self {
            path: path.to_owned(),
            target: Target::Special(file),
        })
    }

    /// Where the file will be once persisted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file, open for writing.
    pub fn file(&self) -> &File {
        match &self.target {
            Target::Temp(temp) => temp.as_file(),
            Target::Special(file) => file,
        }
    }

    /// Renames the file over its output path, replacing whatever is there
    /// (never what a link there points to), and returns it still open.
    pub fn persist(self) -> io::Result<File> {
        match self.target {
            Target::Temp(temp) => temp.persist(&self.path).map_err(|e| e.error),
            Target::Special(file) => Ok(file),
        }
    }
}

/// A device or FIFO the writer or root owns.
fn check_special(meta: &std::fs::Metadata) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let kind = meta.file_type();
    if !(kind.is_char_device() || kind.is_block_device() || kind.is_fifo())
        || (meta.uid() != euid && meta.uid() != 0)
    {
        return Err(refused(
            "is a special file of another user; spanlet writes only regular files there",
        ));
    }
    Ok(())
}

fn refused(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("the output path {why}"),
    )
}
