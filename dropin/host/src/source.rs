//! Stage 2: open a candidate file once. The kind of file, its owner and
//! mode, its size and the private copy all come from this one handle, so a
//! path swapped in between (a link flipped, a file replaced) cannot slip
//! other bytes past the checks.

use std::{
    fs::{File, Metadata, OpenOptions},
    path::Path,
};

use crate::{error::LoadError, permissions::check_metadata, verify::read_at};

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
    let (file, meta) = open_regular(path).map_err(|error| match error {
        NotRegular::Io(source) => LoadError::Unreadable {
            path: path.to_owned(),
            source,
        },
        NotRegular::Found(found) => LoadError::NotAFile {
            path: path.to_owned(),
            found,
        },
    })?;
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

/// Why [`open_regular`] did not give a regular file.
#[derive(Debug)]
pub(crate) enum NotRegular {
    /// It could not be opened or looked at.
    Io(std::io::Error),
    /// It is something else: "a folder", "a FIFO", "a socket", ...
    Found(&'static str),
}

/// Opens the regular file at `path` (following a link) as
/// [`untrusted_open_options`] does, with its metadata from the handle.
///
/// A socket cannot be opened at all (`ENXIO`): when the open fails, the
/// path is looked at once more, so that the error says what is there, as for
/// a FIFO or a device. Only the message depends on that second look; nothing
/// more is opened.
pub(crate) fn open_regular(path: &Path) -> Result<(File, Metadata), NotRegular> {
    let file = match untrusted_open_options(true).open(path) {
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

/// Whether the file changed in the last two seconds: a write may still be
/// under way.
///
/// A write sets the file's times when it starts, not when it ends, and a
/// writer can be descheduled in the middle of one: a copy made then shows the
/// same times before and after, and the same bytes when read again, yet it
/// is half one build and half another. So a recently changed file must have
/// no writer ([`open_for_writing`]) and read the same a second time
/// ([`same_bytes`]); an older one is in the middle of no write that a later
/// one did not stamp.
pub(crate) fn recently_changed(meta: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let changed = meta.mtime().max(meta.ctime());
        changed >= change_clock() - 2
    }
    #[cfg(not(unix))]
    {
        meta.modified()
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_none_or(|age| age.as_secs() < 2)
    }
}

/// Whether some process has the file open for writing: `None` where that
/// cannot be told (another platform, a file system without leases, a file
/// of another owner without `CAP_LEASE`).
///
/// Linux refuses a read lease on a file that any process has open for
/// writing; one granted is released at once. A writer that opens the file in
/// that instant breaks the lease, which signals the lease holder: the signal
/// asked for is `SIGURG`, which a process ignores unless it handles it
/// (`SIGIO`, the default, would end it).
pub(crate) fn open_for_writing(file: &File) -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // <fcntl.h>'s F_SETSIG, the same on every Linux architecture; the
        // libc crate does not define it.
        const F_SETSIG: libc::c_int = 10;
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor this handle owns, with the commands'
        // documented integer arguments; no memory is passed.
        unsafe {
            if libc::fcntl(fd, F_SETSIG, libc::SIGURG) != 0 {
                return None;
            }
            if libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) == 0 {
                libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK);
                return Some(false);
            }
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => Some(true),
            _ => None,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        None
    }
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

/// The second the kernel gives a change now: by its coarse clock on Linux,
/// which advances in ticks.
#[cfg(unix)]
fn change_clock() -> i64 {
    #[cfg(target_os = "linux")]
    let clock = libc::CLOCK_REALTIME_COARSE;
    #[cfg(not(target_os = "linux"))]
    let clock = libc::CLOCK_REALTIME;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the clock id is one the
    // platform defines.
    unsafe { libc::clock_gettime(clock, &mut now) };
    now.tv_sec
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
