//! Trust layer: the small text files a host trusts as much as its plugins
//! (the lock file, a plugins folder's configuration), read by one set of
//! rules: opened once without blocking and without following a link to
//! anything but a regular file, its owner and mode checked on that handle,
//! and at most a documented size read.

use std::{
    io::{self, Read},
    path::{Path, PathBuf},
};

use crate::trust::{
    permissions::{PermissionError, check_metadata},
    source::{NotRegular, open_regular},
};

/// Why a trusted text file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustedFileError {
    /// It could not be read.
    #[error("cannot read {what} {}", path.display())]
    Io {
        /// What the file is (`"configuration"`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Something other than a regular file has its name: a folder, a FIFO
    /// (which would block a reader until someone writes), a device, a
    /// socket, or a link to one.
    #[error("{}: expected a regular file for the {what}, found {found}", path.display())]
    NotAFile {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is there instead.
        found: &'static str,
    },
    /// Someone other than the host's user (or root) could have written it.
    #[error("{what} {} is not safe", path.display())]
    Insecure {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Which permission is wrong.
        #[source]
        source: PermissionError,
    },
    /// Larger than any such file needs to be.
    #[error("{}: {size} bytes; expected a {what} of at most {limit}", path.display())]
    TooLarge {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Not UTF-8 text.
    #[error("{}: expected the {what} as UTF-8 text", path.display())]
    NotText {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
}

/// The text of the file at `path`, `what` a host trusts (named in errors),
/// read by the lock file's rules: a regular file (a link is followed only
/// to one), opened without blocking; owned by this user or root and
/// writable by nobody else, unless `check_permissions` is off; at most
/// `limit` bytes. `None` if there is no such file.
///
/// # Errors
///
/// [`TrustedFileError`] naming the file and what was expected.
pub fn read_trusted_text(
    path: &Path,
    what: &'static str,
    check_permissions: bool,
    limit: u64,
) -> Result<Option<String>, TrustedFileError> {
    let io = |source| TrustedFileError::Io {
        what,
        path: path.to_owned(),
        source,
    };
    let (file, meta) = match open_regular(path) {
        Ok(opened) => opened,
        Err(NotRegular::Io(error)) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(NotRegular::Io(source)) => return Err(io(source)),
        Err(NotRegular::Found(found)) => {
            return Err(TrustedFileError::NotAFile {
                what,
                path: path.to_owned(),
                found,
            });
        }
    };
    if check_permissions {
        check_metadata(&meta).map_err(|source| TrustedFileError::Insecure {
            what,
            path: path.to_owned(),
            source,
        })?;
    }
    if meta.len() > limit {
        return Err(TrustedFileError::TooLarge {
            what,
            path: path.to_owned(),
            size: meta.len(),
            limit,
        });
    }
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes).map_err(io)?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| TrustedFileError::NotText {
            what,
            path: path.to_owned(),
        })
}
