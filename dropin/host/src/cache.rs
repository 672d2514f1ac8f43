//! A cache of verified private copies, kept across runs in a folder the
//! application chooses ([`LoaderBuilder::snapshot_cache`]).
//!
//! A locked load copies each file and hashes the copy before anything maps
//! it; most of a load's time goes there. The cache keeps each copy whose
//! hash matched the lock file, under a name made of the source file's
//! stamp (device, inode, size, modification and change times, to the
//! nanosecond) and the hash. A later load of a file with the same stamp
//! whose lock entry names the same hash maps the kept copy: no copy, no
//! hash.
//!
//! Why that is sound: the change time of a file is set by the kernel to
//! the current time on every change of its contents or metadata, and no
//! user but root can set it otherwise; a file with the same device, inode
//! and change time to the nanosecond is the file that was copied, unchanged.
//! The kept copies are never written again after they are made; the folder
//! and each copy must belong to this user (or root) and be writable by
//! nobody else, as the plugins folder must. What someone with the host's
//! own user rights can do to the cache, they can do to the plugins folder
//! and the lock file too.
//!
//! [`LoaderBuilder::snapshot_cache`]: crate::LoaderBuilder::snapshot_cache

use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
    sync::Mutex,
};

use crate::{permissions::check_metadata, source::Stamp};

/// The kept copies this process mapped: the dynamic loader returns the
/// library it already has for a path it has seen, so a copy is handed out
/// once per process; a second load of the same file copies afresh.
static HANDED_OUT: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

/// The cache folder, checked.
#[derive(Debug)]
pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache in `dir`, made private if it does not exist; `None`, with a
    /// warning, if it cannot be made or is not safe to trust.
    pub(crate) fn open(dir: &Path) -> Option<Self> {
        if !dir.exists() {
            #[cfg(unix)]
            let made = {
                use std::os::unix::fs::DirBuilderExt;
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
            };
            #[cfg(not(unix))]
            let made = fs::create_dir_all(dir);
            if let Err(error) = made {
                log::warn!("snapshot cache {} not used: {error}", dir.display());
                return None;
            }
        }
        match fs::symlink_metadata(dir) {
            Ok(meta) if meta.is_dir() => match check_metadata(&meta) {
                Ok(()) => Some(Self {
                    dir: dir.to_owned(),
                }),
                Err(error) => {
                    log::warn!("snapshot cache {} not used: {error}", dir.display());
                    None
                }
            },
            _ => {
                log::warn!(
                    "snapshot cache {} not used: expected a folder",
                    dir.display()
                );
                None
            }
        }
    }

    fn path(&self, stamp: &Stamp, sha256: &str) -> PathBuf {
        self.dir.join(format!(
            "{}-{}.so",
            stamp.key(),
            sha256.to_ascii_lowercase()
        ))
    }

    /// The kept copy of the file with `stamp`, `len` bytes long, whose
    /// bytes hash to `sha256`, if there is one this process has not mapped.
    pub(crate) fn find(&self, stamp: &Stamp, sha256: &str, len: u64) -> Option<PathBuf> {
        let path = self.path(stamp, sha256);
        // Through a handle, not following a link: a regular file of this
        // user's, writable by nobody else, of the expected size.
        let file = crate::source::untrusted_open_options(false)
            .open(&path)
            .ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() != len || check_metadata(&meta).is_err() {
            return None;
        }
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        handed_out
            .get_or_insert_with(HashSet::new)
            .insert(path.clone())
            .then_some(path)
    }

    /// Keeps `copy`, a private copy of the file with `stamp` whose bytes
    /// hash to `sha256` as its lock entry says, for later runs: a second
    /// name for the same file (nothing is copied), where the folders share
    /// a file system. Best effort.
    pub(crate) fn keep(&self, copy: &Path, stamp: &Stamp, sha256: &str) {
        let path = self.path(stamp, sha256);
        let kept = match fs::hard_link(copy, &path) {
            Ok(()) => {
                // The same file as the copy this process maps: not to be
                // handed out again in this process.
                let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
                handed_out.get_or_insert_with(HashSet::new).insert(path);
                Ok(())
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            // Another file system: copied once, under a temporary name
            // created exclusively, then renamed into place whole.
            Err(error) if error.kind() == std::io::ErrorKind::CrossesDevices => {
                let temporary = path.with_extension(format!("{}.new", std::process::id()));
                let _ = fs::remove_file(&temporary);
                let copied = crate::snapshot::copy_private(copy, &temporary)
                    .and_then(|()| fs::rename(&temporary, &path));
                if copied.is_err() {
                    let _ = fs::remove_file(&temporary);
                }
                copied
            }
            Err(error) => Err(error),
        };
        if let Err(error) = kept {
            log::debug!(
                "{}: not kept in the snapshot cache: {error}",
                copy.display()
            );
        }
    }
}
