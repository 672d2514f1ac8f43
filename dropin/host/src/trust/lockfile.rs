//! Trust layer, step 4: `plugins.lock`, the SHA-256 of every plugin file a deployment trusts.
//!
//! With a lock file, a library that is not listed, or whose bytes differ from
//! what was recorded, is refused before the dynamic loader ever opens it.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::trust::permissions::PermissionError;

/// The lock file's name inside the plugins folder.
pub const LOCKFILE_NAME: &str = "plugins.lock";

const FORMAT_VERSION: u32 = 1;

/// The contents of a lock file: one entry per trusted plugin file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    /// The format of this file; currently 1.
    pub format: u32,
    /// The trusted plugin files, by file name.
    pub plugins: Vec<LockEntry>,
}

/// One trusted plugin file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockEntry {
    /// The file's name in the plugins folder.
    pub file: String,
    /// The SHA-256 of its bytes, lowercase hexadecimal.
    pub sha256: String,
    /// The plugin's name, as recorded when locked (informational).
    pub name: String,
    /// The plugin's version, as recorded when locked (informational).
    pub version: String,
    /// The interface version, as recorded when locked (informational).
    pub interface_version: String,
}

/// Why a lock file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockfileError {
    /// It could not be read or written.
    #[error("cannot access lock file {}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// It does not parse.
    #[error("{}:{line}:{column}: invalid lock file: {message}", path.display())]
    Parse {
        /// The lock file.
        path: PathBuf,
        /// The line of the error, from 1.
        line: usize,
        /// The column of the error, from 1.
        column: usize,
        /// What was expected.
        message: String,
    },
    /// It parses but is of another format version.
    #[error("{}: lock file format {found}, expected {expected}", path.display())]
    Format {
        /// The lock file.
        path: PathBuf,
        /// The format this host reads.
        expected: u32,
        /// The format the file declares.
        found: u32,
    },
    /// The command line asked for a lock file and there is none.
    #[error("{} does not exist; expected a lock file", path.display())]
    Missing {
        /// Where it was expected.
        path: PathBuf,
    },
    /// Something other than a regular file has the lock file's name.
    #[error("{}: expected a regular lock file, found {found}", path.display())]
    NotAFile {
        /// The lock file's path.
        path: PathBuf,
        /// What is there instead.
        found: &'static str,
    },
    /// Larger than any lock file this host writes.
    #[error("{}: {size} bytes; expected a lock file of at most {limit}", path.display())]
    TooLarge {
        /// The lock file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Someone other than the host's user could have written it.
    #[error("lock file {} is not safe", path.display())]
    Insecure {
        /// The lock file.
        path: PathBuf,
        /// Which permission is wrong.
        #[source]
        source: PermissionError,
    },
    /// Two entries for the same file: which one holds is not clear.
    #[error("{}:{line}: a second entry for {file}; expected one entry per file", path.display())]
    Duplicate {
        /// The lock file.
        path: PathBuf,
        /// The line of the second entry, from 1.
        line: usize,
        /// The file both entries name.
        file: String,
    },
}

/// The largest lock file read: ten thousand entries take about 3 MB.
const MAX_LOCKFILE: u64 = 16 << 20;

impl Lockfile {
    /// A lock file with these entries, sorted by file name.
    pub fn new(mut plugins: Vec<LockEntry>) -> Self {
        plugins.sort_by(|a, b| a.file.cmp(&b.file));
        Self {
            format: FORMAT_VERSION,
            plugins,
        }
    }

    /// Reads the lock file at `path`, `None` if there is none. Like a
    /// plugin, it must be a regular file, of a sane size, and, with
    /// `check_permissions`, writable only by the host's user or root.
    ///
    /// # Errors
    ///
    /// [`LockfileError`] if it cannot be read, is not safe, does not parse
    /// or lists a file twice; the message names the line.
    pub fn read(path: &Path, check_permissions: bool) -> Result<Option<Self>, LockfileError> {
        use crate::trust::trusted_file::{TrustedFileError as E, read_trusted_text};
        let path_buf = path.to_owned();
        let text = match read_trusted_text(path, "lock file", check_permissions, MAX_LOCKFILE) {
            Ok(Some(text)) => text,
            Ok(None) => return Ok(None),
            Err(E::Io { source, .. }) => {
                return Err(LockfileError::Io {
                    path: path_buf,
                    source,
                });
            }
            Err(E::NotText { .. }) => {
                return Err(LockfileError::Io {
                    path: path_buf,
                    source: io::Error::new(io::ErrorKind::InvalidData, "expected UTF-8 text"),
                });
            }
            Err(E::NotAFile { found, .. }) => {
                return Err(LockfileError::NotAFile {
                    path: path_buf,
                    found,
                });
            }
            Err(E::Insecure { source, .. }) => {
                return Err(LockfileError::Insecure {
                    path: path_buf,
                    source,
                });
            }
            Err(E::TooLarge { size, limit, .. }) => {
                return Err(LockfileError::TooLarge {
                    path: path_buf,
                    size,
                    limit,
                });
            }
        };
        let lockfile: Self = serde_json::from_str(&text).map_err(|error| LockfileError::Parse {
            path: path.to_owned(),
            line: error.line(),
            column: error.column(),
            message: strip_position(&error.to_string()),
        })?;
        if lockfile.format != FORMAT_VERSION {
            return Err(LockfileError::Format {
                path: path.to_owned(),
                expected: FORMAT_VERSION,
                found: lockfile.format,
            });
        }
        let mut seen = std::collections::HashSet::new();
        for entry in &lockfile.plugins {
            if !seen.insert(entry.file.as_str()) {
                return Err(LockfileError::Duplicate {
                    path: path.to_owned(),
                    line: second_line(&text, &entry.file),
                    file: entry.file.clone(),
                });
            }
        }
        Ok(Some(lockfile))
    }

    /// Writes the lock file to `path`, replacing it atomically.
    ///
    /// # Errors
    ///
    /// [`LockfileError::Io`] if it cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), LockfileError> {
        let io = |source| LockfileError::Io {
            path: path.to_owned(),
            source,
        };
        let mut text = serde_json::to_string_pretty(self).expect("a lock file serialises");
        text.push('\n');
        // A fresh name, created exclusively and never through a link: a
        // file or link planted under the temporary name cannot receive it.
        let temporary = path.with_extension(format!("lock.{}.tmp", std::process::id()));
        let options = crate::sys::new_file_options(0o644, false);
        let written = options.open(&temporary).and_then(|mut file| {
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
        });
        if let Err(source) = written {
            let _ = fs::remove_file(&temporary);
            return Err(io(source));
        }
        fs::rename(&temporary, path).map_err(io)
    }

    /// The entry for the file called `file`.
    pub fn entry(&self, file: &str) -> Option<&LockEntry> {
        self.plugins.iter().find(|entry| entry.file == file)
    }
}

/// The line (from 1) of the second entry for `file` in the lock file's text
/// (0 if the text is laid out so that it cannot be found).
fn second_line(text: &str, file: &str) -> usize {
    let quoted = serde_json::to_string(file).unwrap_or_default();
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.trim_start().starts_with("\"file\"") && line.contains(&quoted))
        .nth(1)
        .map_or(0, |(index, _)| index + 1)
}

/// serde_json appends " at line L column C"; the error carries those apart.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_file_round_trips_and_a_broken_one_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCKFILE_NAME);
        assert_eq!(Lockfile::read(&path, true).unwrap(), None);

        let lock = Lockfile::new(vec![LockEntry {
            file: "libhello.so".into(),
            sha256: "00".repeat(32),
            name: "hello".into(),
            version: "1.0.0".into(),
            interface_version: "1.1.0".into(),
        }]);
        lock.write(&path).unwrap();
        assert_eq!(Lockfile::read(&path, true).unwrap(), Some(lock.clone()));

        let mut twice = lock.clone();
        twice.plugins.push(twice.plugins[0].clone());
        twice.write(&path).unwrap();
        assert_eq!(
            Lockfile::read(&path, true).unwrap_err().to_string(),
            format!(
                "{}:12: a second entry for libhello.so; expected one entry per file",
                path.display()
            )
        );

        fs::write(
            &path,
            "{\n  \"format\": 1,\n  \"plugins\": [\n    {\"file\": 3}\n  ]\n}\n",
        )
        .unwrap();
        let error = Lockfile::read(&path, true).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{}:4:14: invalid lock file: invalid type: integer `3`, expected a string",
                path.display()
            )
        );
    }
}
