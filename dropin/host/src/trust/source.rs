//! Trust layer, step 2: open a candidate file once. The kind of file, its owner and
//! mode, its size and the private copy all come from this one handle, so a
//! path swapped in between (a link flipped, a file replaced) cannot slip
//! other bytes past the checks.

use std::{
    fs::{File, Metadata},
    path::Path,
};

use crate::{
    sys::{self, read_at},
    trust::permissions::{PermissionError, check_metadata},
};

/// An open candidate and what the checks saw of it.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) file: File,
    pub(crate) meta: Metadata,
}

/// Why [`open`] refused a file; the loader reports it, naming the file, as
/// a [`LoadError`](crate::LoadError).
#[derive(Debug)]
pub(crate) enum Refused {
    /// It could not be opened or looked at.
    Unreadable(std::io::Error),
    /// It is not a regular file: "a folder", "a FIFO", ...
    NotAFile(&'static str),
    /// Someone other than this user or root may write it.
    Insecure(PermissionError),
    /// It is larger than the loader allows.
    TooLarge {
        /// Its size.
        size: u64,
        /// The most the loader allows.
        limit: u64,
    },
}

/// Opens `path` (following a link: a plugin may be installed as one) without
/// blocking and without becoming a controlling terminal, then checks on the
/// handle that it is a regular file, safe to trust if `check_permissions`,
/// and at most `max_size` bytes long.
///
/// # Errors
///
/// [`Refused`]: unreadable, not a regular file, unsafe permissions, or too
/// large.
pub(crate) fn open(path: &Path, check_permissions: bool, max_size: u64) -> Result<Source, Refused> {
    let (file, meta) = open_regular(path).map_err(|error| match error {
        NotRegular::Io(source) => Refused::Unreadable(source),
        NotRegular::Found(found) => Refused::NotAFile(found),
    })?;
    if check_permissions {
        check_metadata(&meta).map_err(Refused::Insecure)?;
    }
    if meta.len() > max_size {
        return Err(Refused::TooLarge {
            size: meta.len(),
            limit: max_size,
        });
    }
    Ok(Source { file, meta })
}

/// Why [`open_regular`] did not give a regular file.
#[derive(Debug)]
pub(crate) enum NotRegular {
    /// It could not be opened or looked at.
    Io(std::io::Error),
    /// It is something else: "a folder", "a FIFO", "a socket", ...
    Found(&'static str),
}

/// Opens the regular file at `path` (following a link) as
/// [`sys::untrusted_open_options`] does, with its metadata from the handle.
///
/// A socket cannot be opened at all (`ENXIO`): when the open fails, the
/// path is looked at once more, so that the error says what is there, as for
/// a FIFO or a device. Only the message depends on that second look; nothing
/// more is opened.
pub(crate) fn open_regular(path: &Path) -> Result<(File, Metadata), NotRegular> {
    let file = match sys::untrusted_open_options(true).open(path) {
        Ok(file) => file,
        Err(error) => {
            return Err(match std::fs::metadata(path) {
                Ok(meta) if !meta.is_file() => NotRegular::Found(kind(&meta)),
                _ => NotRegular::Io(error),
            });
        }
    };
    let meta = file.metadata().map_err(NotRegular::Io)?;
    if !meta.is_file() {
        return Err(NotRegular::Found(kind(&meta)));
    }
    Ok((file, meta))
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

/// Whether the file changed in the last two seconds: a write may still be
/// under way.
///
/// A write sets the file's times when it starts, not when it ends, and a
/// writer can be descheduled in the middle of one: a copy made then shows the
/// same times before and after, and the same bytes when read again, yet it
/// is half one build and half another. So a recently changed file must have
/// no writer ([`sys::open_for_writing`]) and read the same a second time
/// ([`same_bytes`]); an older one is in the middle of no write that a later
/// one did not stamp.
pub(crate) fn recently_changed(meta: &Metadata) -> bool {
    sys::changed_within(meta, 2)
}

/// Whether `file` (read through the handle, which it does not move) and the
/// file at `copy` are both `len` bytes long and hold the same bytes.
pub(crate) fn same_bytes(file: &File, copy: &Path, len: u64) -> std::io::Result<bool> {
    let copy = File::open(copy)?;
    if file.metadata()?.len() != len || copy.metadata()?.len() != len {
        return Ok(false);
    }
    let mut ours = vec![0; 64 * 1024];
    let mut theirs = vec![0; 64 * 1024];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(ours.len() as u64) as usize;
        for (from, buf) in [(file, &mut theirs), (&copy, &mut ours)] {
            match read_at(from, &mut buf[..n], at) {
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(false);
                }
                other => other?,
            }
        }
        if ours[..n] != theirs[..n] {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// Whether a file's size and modification and change times are the same:
/// a file written to in between has at least one that differs.
pub(crate) fn unchanged(before: &Metadata, after: &Metadata) -> bool {
    let (was, is) = (sys::file_times(before), sys::file_times(after));
    before.len() == after.len() && was.modified == is.modified && was.changed == is.changed
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
        let times = sys::file_times(meta);
        Self {
            id: times.id,
            len: meta.len(),
            modified: times.modified,
            changed: times.changed,
        }
    }
}

/// What kind of file system object `meta` describes, for messages.
fn kind(meta: &Metadata) -> &'static str {
    if meta.file_type().is_dir() {
        return "a folder";
    }
    sys::special_kind(meta).unwrap_or("something other than a regular file")
}
