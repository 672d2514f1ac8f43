//! Load exactly what was checked: every plugin file is copied into a private
//! per-process folder, hashed while it is copied, and the copy is what gets
//! verified and opened.
//!
//! This closes the window between checking a file and the dynamic loader
//! opening it, and it keeps the host alive when someone overwrites a plugin
//! file in place while it is loaded: the loader maps the private copy, which
//! nobody else can write.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sha2::{Digest, Sha256};

const PREFIX: &str = "dropin-snapshot-";
const LOCK: &str = ".in-use";

/// A private folder of plugin copies, removed when dropped.
///
/// A running host holds an exclusive lock on a file inside it; a folder whose
/// lock can be taken belongs to a host that died without cleaning up, and is
/// removed by the next one.
#[derive(Debug)]
pub(crate) struct SnapshotDir {
    path: PathBuf,
    count: usize,
    // Held for the folder's lifetime; dropping it releases the lock.
    _lock: File,
}

impl SnapshotDir {
    /// Creates a fresh folder in `root`, readable and writable by the current
    /// user only, after removing stale ones left by crashed hosts.
    pub(crate) fn create(root: &Path) -> io::Result<Self> {
        remove_stale(root);
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        let mut attempt = 0u32;
        let path = loop {
            let path = root.join(format!("{PREFIX}{}-{stamp}-{attempt}", std::process::id()));
            // `create_dir` fails on an existing path: nobody can hand us a
            // folder prepared in advance.
            match private_dir_builder().create(&path) {
                Ok(()) => break path,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        };
        let lock = File::create(path.join(LOCK))?;
        lock.lock()?;
        Ok(Self {
            path,
            count: 0,
            _lock: lock,
        })
    }

    /// The folder.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Copies `source` in, returning the copy's path and, if `hash`, the
    /// SHA-256 of the bytes written to it. Without `hash` the kernel copies
    /// the file; [`sha256_of`] can hash the private copy later.
    pub(crate) fn copy_in(
        &mut self,
        source: &Path,
        hash: bool,
    ) -> io::Result<(PathBuf, Option<[u8; 32]>)> {
        let mut input = File::open(source)?;
        self.count += 1;
        let name = source
            .file_name()
            .map_or_else(|| "plugin".into(), |name| name.to_string_lossy());
        let path = self.path.join(format!("{}-{name}", self.count));
        let mut output = private_file_options().open(&path)?;
        if !hash {
            io::copy(&mut input, &mut output)?;
            return Ok((path, None));
        }
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let n = match input.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            hasher.update(&buffer[..n]);
            output.write_all(&buffer[..n])?;
        }
        output.flush()?;
        Ok((path, Some(hasher.finalize().into())))
    }
}

impl Drop for SnapshotDir {
    fn drop(&mut self) {
        // Libraries opened from here stay mapped: removing their files does
        // not unmap them (on Windows the removal fails while they are loaded,
        // and the next host cleans up).
        if let Err(error) = fs::remove_dir_all(&self.path) {
            log::debug!(
                "cannot remove snapshot folder {}: {error}",
                self.path.display()
            );
        }
    }
}

/// A folder younger than this is never taken for stale: between creating
/// its folder and locking it, a starting host's lock file exists unlocked
/// for a moment, and another host starting at the same time must not take
/// that moment for a crash.
const GRACE: Duration = Duration::from_secs(60);

/// Removes the snapshot folders in `root` whose host is gone.
fn remove_stale(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(lock) = File::open(path.join(LOCK)) else {
            continue;
        };
        let young = lock
            .metadata()
            .and_then(|meta| meta.modified())
            .map_or(true, |modified| {
                modified.elapsed().map_or(true, |age| age < GRACE)
            });
        if young {
            continue;
        }
        if lock.try_lock().is_ok() {
            drop(lock);
            match fs::remove_dir_all(&path) {
                Ok(()) => log::debug!("removed stale snapshot folder {}", path.display()),
                Err(error) => log::debug!("cannot remove stale {}: {error}", path.display()),
            }
        }
    }
}

#[cfg(unix)]
fn private_dir_builder() -> fs::DirBuilder {
    use std::os::unix::fs::DirBuilderExt;
    let mut builder = fs::DirBuilder::new();
    builder.mode(0o700);
    builder
}

#[cfg(not(unix))]
fn private_dir_builder() -> fs::DirBuilder {
    fs::DirBuilder::new()
}

fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o500);
    }
    options
}

/// The SHA-256 of the file at `path`.
pub(crate) fn sha256_of(path: &Path) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(hasher.finalize().into())
}

/// A SHA-256 digest as lowercase hexadecimal.
pub(crate) fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_private_hashed_and_removed_with_the_folder() {
        let root = tempfile::tempdir().unwrap();
        let source = root.path().join("libx.so");
        fs::write(&source, b"abc").unwrap();
        let mut dir = SnapshotDir::create(root.path()).unwrap();
        let (copy, digest) = dir.copy_in(&source, true).unwrap();
        assert_eq!(fs::read(&copy).unwrap(), b"abc");
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(hex(&digest.unwrap()), expected);
        let (unhashed, digest) = dir.copy_in(&source, false).unwrap();
        assert_eq!(digest, None);
        assert_eq!(hex(&sha256_of(&unhashed).unwrap()), expected);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let folder = dir.path().to_owned();
        drop(dir);
        assert!(!folder.exists());
    }

    #[test]
    fn folders_of_dead_hosts_are_removed_and_live_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        let stale = root.path().join(format!("{PREFIX}1-2-3"));
        fs::create_dir(&stale).unwrap();
        let lock = File::create(stale.join(LOCK)).unwrap();
        // Too young to be taken for stale: it may be a host starting up.
        let first = SnapshotDir::create(root.path()).unwrap();
        assert!(stale.exists());
        lock.set_modified(SystemTime::now() - 2 * GRACE).unwrap();
        drop(lock);
        let live = SnapshotDir::create(root.path()).unwrap();
        assert!(!stale.exists());
        assert!(first.path().exists());
        let other = SnapshotDir::create(root.path()).unwrap();
        assert!(live.path().exists());
        assert_ne!(live.path(), other.path());
    }
}
