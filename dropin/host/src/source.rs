//! Stage 2: open a candidate file once. The kind of file, its owner and
//! mode, its size and the private copy all come from this one handle, so a
//! path swapped in between (a link flipped, a file replaced) cannot slip
//! other bytes past the checks.

use std::{
    fs::{File, Metadata, OpenOptions},
    path::Path,
};

use crate::{load::LoadError, permissions::check_metadata};

/// An open candidate and what the checks saw of it.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) file: File,
    pub(crate) meta: Metadata,
}

/// Opens `path` (following a link: a plugin may be installed as one) without
/// blocking and without becoming a controlling terminal, then checks on the
/// handle that it is a regular file, safe to trust if `check_permissions`,
/// and at most `max_size` bytes long.
///
/// # Errors
///
/// [`LoadError`] naming `path`: unreadable, not a regular file, unsafe
/// permissions, or too large.
pub(crate) fn open(
    path: &Path,
    check_permissions: bool,
    max_size: u64,
) -> Result<Source, LoadError> {
    let unreadable = |source| LoadError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let file = untrusted_open_options(true)
        .open(path)
        .map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(LoadError::NotAFile {
            path: path.to_owned(),
            found: kind(&meta),
        });
    }
    if check_permissions {
        check_metadata(&meta).map_err(|source| LoadError::InsecurePermissions {
            path: path.to_owned(),
            source,
        })?;
    }
    if meta.len() > max_size {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
            limit: max_size,
        });
    }
    Ok(Source { file, meta })
}

/// How to open a file someone else may have put in place: for reading,
/// without blocking (a FIFO would block `open` until a writer came), without
/// becoming our controlling terminal, and, unless `follow_links`, not
/// through a link.
pub(crate) fn untrusted_open_options(follow_links: bool) -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let nofollow = if follow_links { 0 } else { libc::O_NOFOLLOW };
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | nofollow);
    }
    #[cfg(not(unix))]
    let _ = follow_links;
    options
}

/// Whether `c` hides, reorders or moves text when printed: control
/// characters (escape sequences included), bidirectional controls and
/// zero-width characters. Plugin names may not contain them, and output
/// should show them escaped.
pub fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// Whether a file's size and modification and change times are the same:
/// a file written to in between has at least one that differs.
pub(crate) fn unchanged(before: &Metadata, after: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        before.len() == after.len()
            && (before.mtime(), before.mtime_nsec()) == (after.mtime(), after.mtime_nsec())
            && (before.ctime(), before.ctime_nsec()) == (after.ctime(), after.ctime_nsec())
    }
    #[cfg(not(unix))]
    {
        before.len() == after.len() && before.modified().ok() == after.modified().ok()
    }
}

/// What tells one version of a file from the next without reading it:
/// which file a path named (device and inode) and its size and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    id: (u64, u64),
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    /// The stamp as a file name: every field, in decimal.
    pub(crate) fn key(&self) -> String {
        format!(
            "{}-{}-{}-{}.{}-{}.{}",
            self.id.0,
            self.id.1,
            self.len,
            self.modified.0,
            self.modified.1,
            self.changed.0,
            self.changed.1
        )
    }

    pub(crate) fn of(meta: &Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Self {
                id: (meta.dev(), meta.ino()),
                len: meta.len(),
                modified: (meta.mtime(), meta.mtime_nsec()),
                changed: (meta.ctime(), meta.ctime_nsec()),
            }
        }
        #[cfg(not(unix))]
        {
            let modified = meta
                .modified()
                .ok()
                .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or((0, 0), |d| {
                    (d.as_secs() as i64, i64::from(d.subsec_nanos()))
                });
            Self {
                id: (0, 0),
                len: meta.len(),
                modified,
                changed: modified,
            }
        }
    }
}

/// What kind of file system object `meta` describes, for messages.
fn kind(meta: &Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    "something other than a regular file"
}
