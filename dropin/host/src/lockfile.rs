//! `plugins.lock`: the SHA-256 of every plugin file a deployment trusts.
//!
//! With a lock file, a library that is not listed, or whose bytes differ from
//! what was recorded, is refused before the dynamic loader ever opens it.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

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
}

impl Lockfile {
    /// A lock file with these entries, sorted by file name.
    pub fn new(mut plugins: Vec<LockEntry>) -> Self {
        plugins.sort_by(|a, b| a.file.cmp(&b.file));
        Self {
            format: FORMAT_VERSION,
            plugins,
        }
    }

    /// Reads the lock file at `path`, `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`LockfileError`] if it cannot be read or does not parse; the message
    /// names the line.
    pub fn read(path: &Path) -> Result<Option<Self>, LockfileError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LockfileError::Io {
                    path: path.to_owned(),
                    source,
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
        let temporary = path.with_extension("lock.tmp");
        fs::write(&temporary, text).map_err(io)?;
        fs::rename(&temporary, path).map_err(io)
    }

    /// The entry for the file called `file`.
    pub fn entry(&self, file: &str) -> Option<&LockEntry> {
        self.plugins.iter().find(|entry| entry.file == file)
    }
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
        assert_eq!(Lockfile::read(&path).unwrap(), None);

        let lock = Lockfile::new(vec![LockEntry {
            file: "libhello.so".into(),
            sha256: "00".repeat(32),
            name: "hello".into(),
            version: "1.0.0".into(),
            interface_version: "1.1.0".into(),
        }]);
        lock.write(&path).unwrap();
        assert_eq!(Lockfile::read(&path).unwrap(), Some(lock));

        fs::write(
            &path,
            "{\n  \"format\": 1,\n  \"plugins\": [\n    {\"file\": 3}\n  ]\n}\n",
        )
        .unwrap();
        let error = Lockfile::read(&path).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{}:4:14: invalid lock file: invalid type: integer `3`, expected a string",
                path.display()
            )
        );
    }
}
