//! Trust layer, step 2: refuse plugin files and folders that someone other than the host's user
//! could have written: whoever can write a plugin runs code inside the host.

use std::{fmt, io, path::Path};

use crate::sys;

/// Why a file or folder is not trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PermissionError {
    /// Its metadata could not be read.
    #[error("cannot read its permissions")]
    Io(#[from] io::Error),
    /// Group or others may write it.
    #[error(
        "writable by {who} (mode {mode:04o}); expected no write permission for group or others"
    )]
    Writable {
        /// "group", "others", or "group and others".
        who: Writers,
        /// The permission bits.
        mode: u32,
    },
    /// Owned by a user other than the host's user or root.
    #[error("owned by uid {owner}; expected the host's user (uid {host}) or root")]
    Owner {
        /// The owner's user id.
        owner: u32,
        /// The host's effective user id.
        host: u32,
    },
}

/// Who, besides the owner, may write a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writers {
    /// The file's group.
    Group,
    /// Every user.
    Others,
    /// Both.
    GroupAndOthers,
}

impl fmt::Display for Writers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Group => "group",
            Self::Others => "others",
            Self::GroupAndOthers => "group and others",
        })
    }
}

/// Checks that only the host's user (or root) can write `path`; links are
/// followed. Always passes on platforms without Unix permissions.
///
/// # Errors
///
/// [`PermissionError`] saying which bit or which owner is wrong.
pub fn check_permissions(path: &Path) -> Result<(), PermissionError> {
    if sys::effective_uid().is_none() {
        return Ok(());
    }
    check_metadata(&std::fs::metadata(path)?)
}

/// Checks the owner and mode of an already opened file (its metadata from
/// the handle, so that the path cannot be swapped in between). Always
/// passes on platforms without Unix permissions.
pub(crate) fn check_metadata(meta: &std::fs::Metadata) -> Result<(), PermissionError> {
    let (Some((owner, mode)), Some(host)) = (sys::owner_and_mode(meta), sys::effective_uid())
    else {
        return Ok(());
    };
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => None,
        (true, false) => Some(Writers::Group),
        (false, true) => Some(Writers::Others),
        (true, true) => Some(Writers::GroupAndOthers),
    };
    if let Some(who) = who {
        return Err(PermissionError::Writable { who, mode });
    }
    if owner != host && owner != 0 {
        return Err(PermissionError::Owner { owner, host });
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::{fs, os::unix::fs::PermissionsExt};

    use super::*;

    #[test]
    fn group_or_world_writable_files_are_named_by_bit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libx.so");
        fs::write(&path, b"x").unwrap();
        for (mode, expected) in [
            (0o644, None),
            (
                0o664,
                Some(
                    "writable by group (mode 0664); expected no write permission for group or others",
                ),
            ),
            (
                0o646,
                Some(
                    "writable by others (mode 0646); expected no write permission for group or others",
                ),
            ),
            (
                0o777,
                Some(
                    "writable by group and others (mode 0777); expected no write permission for group or others",
                ),
            ),
        ] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let result = check_permissions(&path).err().map(|e| e.to_string());
            assert_eq!(result.as_deref(), expected, "{mode:o}");
        }
    }
}
