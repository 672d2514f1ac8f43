//! Trust layer, step 3: load exactly what was checked: every plugin file is copied into a private
//! per-process folder, hashed while it is copied, and the copy is what gets
//! verified and opened.
//!
//! This closes the window between checking a file and the dynamic loader
//! opening it, and it keeps the host alive when someone overwrites a plugin
//! file in place while it is loaded: the loader maps the private copy, which
//! nobody else can write.

use std::{
    ffi::OsStr,
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sha2::{Digest, Sha256};

use crate::sys;

/// The target of this module's log records: its path before the modules
/// moved into layers, which `RUST_LOG` filters name.
const LOG_TARGET: &str = "dropin_host::snapshot";

const PREFIX: &str = "dropin-snapshot-";
/// Before a folder's name: the folder a starting host is making.
const MAKING: &str = ".making-";
const LOCK: &str = ".in-use";

/// A private folder of plugin copies, removed when dropped.
///
/// A running host holds an exclusive lock on a file inside it, taken before
/// the folder gets its name: a named folder whose lock can be taken belongs
/// to a host that died without cleaning up (by any signal), and the next
/// host to start removes it at once.
#[derive(Debug)]
pub(crate) struct SnapshotDir {
    path: PathBuf,
    count: AtomicUsize,
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
        let (making, path) = loop {
            let name = format!("{PREFIX}{}-{stamp}-{attempt}", std::process::id());
            let making = root.join(format!("{MAKING}{name}"));
            // `create_dir` fails on an existing path: nobody can hand us a
            // folder prepared in advance.
            match private_dir_builder().create(&making) {
                Ok(()) => break (making, root.join(name)),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        };
        // Locked before it is named: no host ever sees a named folder whose
        // live host has not locked it yet.
        let locked = File::create(making.join(LOCK)).and_then(|lock| {
            lock.lock()?;
            fs::rename(&making, &path)?;
            Ok(lock)
        });
        let lock = match locked {
            Ok(lock) => lock,
            Err(error) => {
                let _ = fs::remove_dir_all(&making);
                return Err(error);
            }
        };
        Ok(Self {
            path,
            count: AtomicUsize::new(0),
            _lock: lock,
        })
    }

    /// The folder.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The folder it was made in.
    pub(crate) fn root(&self) -> &Path {
        self.path.parent().unwrap_or(&self.path)
    }

    /// Copies `limit` bytes at most from the open file `input` (from its
    /// start) into a new private file named after `name`, returning the
    /// copy's path, how many bytes it holds and, if `hash`, their SHA-256.
    /// Without `hash` the kernel copies the bytes; [`sha256_of`](crate::digest::sha256_of) can hash
    /// the private copy later.
    pub(crate) fn copy_in(
        &self,
        name: &OsStr,
        input: &mut File,
        limit: u64,
        hash: bool,
    ) -> io::Result<Copied> {
        input.seek(SeekFrom::Start(0))?;
        let mut input = input.take(limit);
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let path = self
            .path
            .join(format!("{count}-{}", name.to_string_lossy()));
        let mut output = private_file_options().open(&path)?;
        if !hash {
            let len = io::copy(&mut input, &mut output)?;
            return Ok(Copied {
                path,
                len,
                sha256: None,
            });
        }
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 64 * 1024];
        let mut len = 0;
        loop {
            let n = match input.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            hasher.update(&buffer[..n]);
            output.write_all(&buffer[..n])?;
            len += n as u64;
        }
        output.flush()?;
        Ok(Copied {
            path,
            len,
            sha256: Some(hasher.finalize().into()),
        })
    }
}

/// A private copy.
#[derive(Debug)]
pub(crate) struct Copied {
    /// Where it is.
    pub(crate) path: PathBuf,
    /// How many bytes it holds.
    pub(crate) len: u64,
    /// Their SHA-256, if it was asked for.
    pub(crate) sha256: Option<[u8; 32]>,
}

impl Drop for SnapshotDir {
    fn drop(&mut self) {
        // Libraries opened from here stay mapped: removing their files does
        // not unmap them (on Windows the removal fails while they are loaded,
        // and the next host cleans up).
        if let Err(error) = fs::remove_dir_all(&self.path) {
            log::debug!(target: LOG_TARGET,
                "cannot remove snapshot folder {}: {error}",
                self.path.display()
            );
        }
    }
}

/// A folder still being made (not yet named) younger than this is never
/// taken for stale: between creating it and locking it, a starting host's
/// lock file exists unlocked for a moment. Named folders need no grace:
/// they are locked before they are named.
const GRACE: Duration = Duration::from_secs(60);

/// Removes the snapshot folders in `root` whose host is gone.
fn remove_stale(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let making = name
            .strip_prefix(MAKING)
            .is_some_and(|rest| rest.starts_with(PREFIX));
        if !making && !name.starts_with(PREFIX) {
            continue;
        }
        let path = entry.path();
        // Only a folder this user made, as `create` makes them: nothing in a
        // folder another user planted under the name is ever opened.
        if !ours(&path) {
            continue;
        }
        let young = || {
            fs::symlink_metadata(&path)
                .and_then(|meta| meta.modified())
                .map_or(true, |modified| {
                    modified.elapsed().map_or(true, |age| age < GRACE)
                })
        };
        // A folder being made may not be locked yet: only once it is old.
        if making && young() {
            continue;
        }
        let lock = match open_lock(&path.join(LOCK)) {
            Ok(lock) => lock,
            // Never locked (its host died before it made the lock file):
            // stale once old.
            Err(error) if error.kind() == io::ErrorKind::NotFound && !young() => {
                let _ = fs::remove_dir_all(&path);
                continue;
            }
            Err(_) => continue,
        };
        if !lock.metadata().is_ok_and(|meta| meta.is_file()) {
            continue;
        }
        if lock.try_lock().is_ok() {
            drop(lock);
            match fs::remove_dir_all(&path) {
                Ok(()) => {
                    log::debug!(target: LOG_TARGET, "removed stale snapshot folder {}", path.display())
                }
                Err(error) => {
                    log::debug!(target: LOG_TARGET, "cannot remove stale {}: {error}", path.display())
                }
            }
        }
    }
}

/// Whether `path` is a real folder (not a link) of this user's, private to
/// it, as [`SnapshotDir::create`] makes them.
fn ours(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| {
        meta.is_dir()
            && match (sys::owner_and_mode(&meta), sys::effective_uid()) {
                (Some((owner, mode)), Some(uid)) => owner == uid && mode & 0o077 == 0,
                _ => true,
            }
    })
}

/// Opens a lock file without following a link and without blocking on a
/// FIFO.
fn open_lock(path: &Path) -> io::Result<File> {
    sys::untrusted_open_options(false).open(path)
}

fn private_dir_builder() -> fs::DirBuilder {
    sys::dir_builder(0o700)
}

/// Copies the private file `from` to a new private file `to`.
pub(crate) fn copy_private(from: &Path, to: &Path) -> io::Result<()> {
    let mut input = File::open(from)?;
    let mut output = private_file_options().open(to)?;
    io::copy(&mut input, &mut output)?;
    output.sync_data()
}

/// Writes `bytes` to a new file at `to`, readable by this user only.
pub(crate) fn write_private(to: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    private_file_options().open(to)?.write_all(bytes)
}

fn private_file_options() -> OpenOptions {
    sys::new_file_options(0o500, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{hex, sha256_of};

    #[test]
    fn copies_are_private_hashed_and_removed_with_the_folder() {
        let root = tempfile::tempdir().unwrap();
        let source = root.path().join("libx.so");
        fs::write(&source, b"abc").unwrap();
        let dir = SnapshotDir::create(root.path()).unwrap();
        let mut input = File::open(&source).unwrap();
        let name = OsStr::new("libx.so");
        let copied = dir.copy_in(name, &mut input, 100, true).unwrap();
        assert_eq!(fs::read(&copied.path).unwrap(), b"abc");
        assert_eq!(copied.len, 3);
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(hex(&copied.sha256.unwrap()), expected);
        // From the start again, whatever was read before.
        let unhashed = dir.copy_in(name, &mut input, 100, false).unwrap();
        assert_eq!(unhashed.sha256, None);
        assert_eq!(hex(&sha256_of(&unhashed.path).unwrap()), expected);
        // Never more than the limit, whatever the file has grown to.
        let capped = dir.copy_in(name, &mut input, 2, true).unwrap();
        assert_eq!(fs::read(&capped.path).unwrap(), b"ab");
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
        // A named folder whose lock nobody holds: its host died, however
        // recently; the next host removes it at once.
        let stale = root.path().join(format!("{PREFIX}1-2-3"));
        private_dir_builder().create(&stale).unwrap();
        drop(File::create(stale.join(LOCK)).unwrap());
        // A folder a host is still making, not yet locked: kept while young.
        let making = root.path().join(format!("{MAKING}{PREFIX}4-5-6"));
        private_dir_builder().create(&making).unwrap();
        let first = SnapshotDir::create(root.path()).unwrap();
        assert!(!stale.exists());
        assert!(making.exists());
        // Once old, a folder that never got its name is stale too.
        File::open(&making)
            .unwrap()
            .set_modified(SystemTime::now() - 2 * GRACE)
            .unwrap();
        let live = SnapshotDir::create(root.path()).unwrap();
        assert!(!making.exists());
        // The folders of live hosts, whatever their age, are kept: only the
        // lock its host holds keeps a folder.
        let other = SnapshotDir::create(root.path()).unwrap();
        assert_ne!(live.path(), other.path());
        for dir in [&first, &live, &other] {
            assert!(dir.path().exists(), "{} was removed", dir.path().display());
            let name = dir.path().file_name().unwrap().to_string_lossy();
            assert!(name.starts_with(PREFIX), "{name}");
        }
        // No folder is left being made.
        let left: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(MAKING))
            .collect();
        assert!(left.is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn the_sweep_never_opens_anything_in_a_folder_it_did_not_make() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        // A folder anyone could have planted (mode 0755), holding a FIFO
        // where the lock would be: opening it would hang.
        let planted = root.path().join(format!("{PREFIX}9-9-9"));
        fs::create_dir(&planted).unwrap();
        fs::set_permissions(&planted, fs::Permissions::from_mode(0o755)).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(planted.join(LOCK))
            .status()
            .unwrap();
        assert!(status.success());
        // And a private one whose lock is a FIFO too: not opened for
        // reading in a way that blocks.
        let private = root.path().join(format!("{PREFIX}8-8-8"));
        fs::create_dir(&private).unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(private.join(LOCK))
            .status()
            .unwrap();
        assert!(status.success());
        // On a thread of its own, so that a sweep that blocks fails the
        // test instead of hanging it.
        let (made, made_in_time) = std::sync::mpsc::channel();
        let at = root.path().to_owned();
        std::thread::spawn(move || made.send(SnapshotDir::create(&at).unwrap()));
        let dir = made_in_time
            .recv_timeout(Duration::from_secs(20))
            .expect("the sweep never blocks");
        assert!(planted.exists() && private.exists());
        drop(dir);
    }
}
