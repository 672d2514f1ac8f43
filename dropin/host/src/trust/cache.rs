//! Trust layer, step 3 for a locked file: a cache of verified private copies, kept across runs in a folder the
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
//! The kept copies are never written again after they are made. A kept copy
//! is mapped without being hashed again, so the cache must be trusted as
//! much as the lock file that approves it, and no more widely writable: the
//! folder and each copy must belong to the owner of the lock file and be
//! writable by nobody else. Where the lock file belongs to root (so that
//! the application cannot approve anything itself), only a cache root made
//! and filled is used. Unix only: elsewhere the loader keeps nothing.
//!
//! What a build of the host proved about a kept copy is kept too: a
//! file `proven-<build>` in the folder lists the kept copies whose object
//! headers passed every check strictly (an executable stack allowed by the
//! application does not count) and whose root module passed abi_stable's
//! layout check, in the host build `<build>`: the GNU build IDs of the
//! objects that hold the checking code and the layout it checks against.
//! A later load by the same build maps such a copy without checking its
//! headers and its root module's layout again; every other check (the
//! lock entry, the versions, the host's policy, the method signatures)
//! runs as always. The list also holds each proven copy's description,
//! the bytes read from the copy when it was proven (in hexadecimal after
//! its name): a later load judges those bytes instead of reading them from
//! the copy again, which they are, since the copy never changes. Why that is sound: both checks compare the kept copy's
//! bytes, which never change, with this build's code and constants, which
//! the build ID names (the linker computes it from the contents it links,
//! unless told to write a fixed one); the list is trusted as the copies
//! are, so it must belong to the lock file's owner and be writable by
//! nobody else. A changed file is another copy, and a copy refused once is
//! never listed: both are checked in full. Where the platform gives no
//! build ID, nothing is listed.
//!
//! One thing the layout check does beyond that comparison is skipped with
//! it: abi_stable records, for the whole process, the fields a prefix type
//! has past those the host knows, and refuses a later library whose
//! fields there disagree with an earlier one's. A proven copy takes no part
//! in that. Nothing depends on it here: the host reads only the root
//! module's fields it knows (which the proven check covers) and plugins
//! never exchange root modules, so no code reads the fields that record
//! is about (dropin appends fields only in a new minor, and a plugin of
//! another minor is refused before any layout check).
//!
//! [`LoaderBuilder::snapshot_cache`]: crate::LoaderBuilder::snapshot_cache

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
    sync::Mutex,
};

use crate::{sys, trust::permissions::check_metadata, trust::source::Stamp};

/// The target of this module's log records: its path before the modules
/// moved into layers, which `RUST_LOG` filters name.
const LOG_TARGET: &str = "dropin_host::cache";

/// The kept copies this process mapped, by file and by path: the dynamic
/// loader returns the library it already has for a file or a path it has
/// seen, so a copy is handed out once per process; a second load of the
/// same file copies afresh. (A path can name another file later: a copy
/// removed as unused and kept again.)
static HANDED_OUT: Mutex<Option<HandedOut>> = Mutex::new(None);

/// Files (device and inode) and paths (as bytes: hashed whole, not a
/// component at a time).
type HandedOut = (HashSet<(u64, u64)>, HashSet<std::ffi::OsString>);

/// Numbers the temporary files of this process's copies into the cache.
static TEMPORARY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The most a list of proven copies may hold: about thirteen thousand
/// greeter plugins' names with their descriptions (beyond that, nothing is
/// taken as proven and everything is checked).
const MAX_PROVEN: u64 = 16 << 20;

/// How long a kept copy, or a list of proven copies, that no load used
/// stays in the cache.
const UNUSED_FOR: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// How long the temporary file of a process that died before naming it
/// stays in the cache.
const LEFT_BEHIND_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The cache folder, checked.
#[derive(Debug)]
pub(crate) struct Cache {
    dir: PathBuf,
    /// The user the folder and every copy must belong to: the lock file's
    /// owner.
    owner: u32,
    /// The running host build, if the platform names it.
    build: Option<String>,
    /// The kept copies this build proved, by file name, as its list said
    /// when the cache was opened, each with its description's bytes in
    /// hexadecimal (empty if the list did not record them).
    proven: HashMap<String, String>,
    /// Those it proved since.
    newly_proven: Mutex<Vec<(String, String)>>,
    /// Whether this load kept a copy the cache did not have.
    added: std::sync::atomic::AtomicBool,
    /// The device of the folder.
    device: u64,
}

/// A kept copy found for a file.
pub(crate) struct Kept {
    /// Where it is.
    pub(crate) path: PathBuf,
    /// Its name in the cache folder.
    pub(crate) name: String,
    /// Whether this build proved its headers and its root module's layout.
    pub(crate) proven: bool,
    /// Its description's bytes, as they were read from it when it was
    /// proven.
    pub(crate) description: Option<Vec<u8>>,
}

/// Which file `meta` describes: device and inode, as the dynamic loader
/// tells libraries apart.
fn file_id(meta: &fs::Metadata) -> (u64, u64) {
    sys::file_times(meta).id
}

/// Checks the folders above `dir`, a canonical path whose last folder
/// belongs to `owner`: each must belong to this user or root, and be
/// writable by nobody else, or be sticky (as `/tmp` is) with the folder
/// below it belonging to this user or root. Then nobody else can rename or
/// replace a folder on the way to the kept copies, and mapping a copy by
/// its path maps the file that was checked.
fn check_ancestors(dir: &Path, owner: u32) -> Result<(), String> {
    let host = sys::effective_uid().unwrap_or(0);
    let trusted = |uid: u32| uid == host || uid == 0;
    let mut below = owner;
    for folder in dir.ancestors().skip(1) {
        let meta =
            fs::metadata(folder).map_err(|error| format!("{}: {error}", folder.display()))?;
        let (uid, mode) = sys::owner_and_mode(&meta).unwrap_or((0, 0o755));
        if !trusted(uid) {
            return Err(format!(
                "the folder above it {} belongs to uid {uid}; expected this user (uid {host}) or \
                 root",
                folder.display(),
            ));
        }
        let sticky = mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !(sticky && trusted(below)) {
            return Err(format!(
                "the folder above it {} may be written by others (mode {mode:04o}), who could \
                 replace the cache with their own",
                folder.display()
            ));
        }
        below = uid;
    }
    Ok(())
}

/// The owner of the file `meta` describes; the cache is used only where
/// the platform has owners.
fn owner(meta: &fs::Metadata) -> u32 {
    sys::owner_and_mode(meta).map_or(u32::MAX, |(owner, _)| owner)
}

/// Marks the file `id` at `path` as mapped by this process; whether
/// neither was yet.
fn hand_out(id: (u64, u64), path: &Path) -> bool {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let (files, paths) = handed_out.get_or_insert_with(Default::default);
    let new = !files.contains(&id) && !paths.contains(path.as_os_str());
    files.insert(id);
    paths.insert(path.as_os_str().to_owned());
    new
}

/// What [`Cache::forget_unused`] may remove: names the cache makes, and
/// how long each may go unused.
fn removable(name: &str) -> Option<std::time::Duration> {
    // `<sha256>-<stamp>.so`, `proven-<build IDs>`, or either (a kept copy
    // without `.so`) followed by `.<pid>.<number>.new`.
    let kept = |name: &str| {
        name.len() > 65
            && name.as_bytes()[..64]
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            && name.as_bytes()[64] == b'-'
    };
    let list = |name: &str| {
        name.strip_prefix("proven-").is_some_and(|build| {
            !build.is_empty() && build.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        })
    };
    if let Some(rest) = name.strip_suffix(".new") {
        fn numbered(rest: &str) -> Option<&str> {
            rest.rsplit_once('.')
                .filter(|(_, number)| {
                    !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
                })
                .map(|(rest, _)| rest)
        }
        let base = numbered(rest).and_then(numbered)?;
        return (kept(base) || list(base)).then_some(LEFT_BEHIND_FOR);
    }
    ((kept(name) && name.ends_with(".so")) || list(name)).then_some(UNUSED_FOR)
}

impl Cache {
    /// The cache in `dir`, made private if it does not exist, for a lock
    /// file owned by `owner`, used by the host build `build`; `None`, with a
    /// warning, if it cannot be made or is not safe to trust.
    pub(crate) fn open(dir: &Path, owner_of_lock: u32, build: Option<String>) -> Option<Self> {
        let refused = |why: &dyn std::fmt::Display| {
            log::warn!(target: LOG_TARGET, "snapshot cache {} not used: {why}", dir.display());
            None
        };
        if sys::effective_uid().is_none() {
            return refused(&"only on Unix, where its files' owners can be checked");
        }
        if !dir.exists() {
            let made = sys::dir_builder(0o700).recursive(true).create(dir);
            if let Err(error) = made {
                return refused(&error);
            }
        }
        // Kept copies are checked through a handle but mapped by path: the
        // folder is used by its canonical path (no links), every part of
        // which is checked, so that no one else can change where it leads.
        let dir = match fs::canonicalize(dir) {
            Ok(canonical) => canonical,
            Err(error) => return refused(&error),
        };
        let meta = match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => meta,
            _ => return refused(&"expected a folder"),
        };
        if let Err(error) = check_metadata(&meta) {
            return refused(&error);
        }
        if owner(&meta) != owner_of_lock {
            return refused(&format_args!(
                "it belongs to user {}, the lock file to user {owner_of_lock}: a kept copy is \
                 mapped without being hashed again, so the cache must be the lock file's owner's",
                owner(&meta)
            ));
        }
        if sys::space(&dir).is_some_and(|space| space.noexec) {
            return refused(&"its file system is mounted noexec");
        }
        if let Err(why) = check_ancestors(&dir, owner(&meta)) {
            return refused(&why);
        }
        let mut cache = Self {
            dir,
            owner: owner_of_lock,
            build,
            proven: HashMap::new(),
            newly_proven: Mutex::new(Vec::new()),
            added: std::sync::atomic::AtomicBool::new(false),
            device: file_id(&meta).0,
        };
        cache.proven = cache.read_proven();
        Some(cache)
    }

    fn path(&self, stamp: &Stamp, sha256: &str) -> PathBuf {
        // The hash first: the dynamic loader compares the name of every
        // library it opens with those it has, and names that start alike
        // take longer to tell apart.
        self.dir.join(format!(
            "{}-{}.so",
            sha256.to_ascii_lowercase(),
            stamp.key()
        ))
    }

    /// The list of the copies this build proved, if it has one and it is
    /// as trusted as the copies.
    fn proven_path(&self) -> Option<PathBuf> {
        Some(self.dir.join(format!("proven-{}", self.build.as_ref()?)))
    }

    /// The names the list of this build holds, with their descriptions;
    /// none if it is missing or not to be trusted.
    fn read_proven(&self) -> HashMap<String, String> {
        let Some(path) = self.proven_path() else {
            return HashMap::new();
        };
        let read = || -> Option<String> {
            use std::io::Read;
            let file = sys::untrusted_open_options(false).open(&path).ok()?;
            let meta = file.metadata().ok()?;
            if owner(&meta) != self.owner {
                return None;
            }
            if !meta.is_file() || meta.len() > MAX_PROVEN || check_metadata(&meta).is_err() {
                return None;
            }
            let mut text = String::new();
            file.take(MAX_PROVEN).read_to_string(&mut text).ok()?;
            Some(text)
        };
        // `<name> <description in hexadecimal>`, or a name alone.
        read()
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let (name, description) = line.split_once(' ').unwrap_or((line, ""));
                (name.to_owned(), description.to_owned())
            })
            .collect()
    }

    /// Records that this build proved the kept copy `name`, whose
    /// description is `description` (see the module's documentation);
    /// written by [`save`](Self::save).
    pub(crate) fn prove(&self, name: String, description: &[u8]) {
        if self.build.is_some() && !self.proven.contains_key(&name) {
            self.newly_proven
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((name, crate::digest::hex(description)));
        }
    }

    /// Whether the file `meta` describes is on the folder's file system.
    fn same_device(&self, meta: &fs::Metadata) -> bool {
        file_id(meta).0 == self.device
    }

    /// Removes what no load used for [`UNUSED_FOR`]: kept copies ([`find`]
    /// marks a copy accessed, at most once a day, whatever the mount's
    /// access-time rules) and lists of proven copies (read when a cache is
    /// opened, which marks them on `relatime` mounts; on `noatime` ones a
    /// list goes 30 days after it was last written, and proofs are made
    /// again); and temporary files that a process left behind when it died.
    /// Only the cache's own files: its names, private, the lock file
    /// owner's. Best effort.
    ///
    /// [`find`]: Self::find
    fn forget_unused(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = std::time::SystemTime::now();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            // Only what the cache makes: its names, this user's, private.
            let Some(limit) = removable(name) else {
                continue;
            };
            // Not following links: nothing else is ever made here.
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let private = sys::owner_and_mode(&meta)
                .is_some_and(|(owner, mode)| owner == self.owner && mode & 0o077 == 0);
            if !private {
                continue;
            }
            let last = [meta.accessed(), meta.modified()]
                .into_iter()
                .flatten()
                .max();
            let unused = last
                .is_some_and(|last| now.duration_since(last).is_ok_and(|unused| unused > limit));
            if meta.is_file() && unused && fs::remove_file(entry.path()).is_ok() {
                log::debug!(target: LOG_TARGET,
                    "snapshot cache: removed {name}, unused for {} days",
                    limit.as_secs() / 86_400
                );
            }
        }
    }

    /// Removes what no load used for a month, if this load kept anything
    /// new (only then can the cache have grown), and writes the list of
    /// proven copies, if this load proved any: merged with what another
    /// process may have written meanwhile, into a new file renamed over the
    /// old one. Best effort: a list that is lost only means checking again.
    pub(crate) fn save(&self) {
        if self.added.load(std::sync::atomic::Ordering::Relaxed) {
            self.forget_unused();
        }
        let newly =
            std::mem::take(&mut *self.newly_proven.lock().unwrap_or_else(|e| e.into_inner()));
        let Some(path) = self.proven_path() else {
            return;
        };
        if newly.is_empty() {
            return;
        }
        let mut names: Vec<(String, String)> =
            self.read_proven().into_iter().chain(newly).collect();
        names.sort_unstable();
        names.dedup_by(|a, b| a.0 == b.0);
        // Copies removed meanwhile are no longer listed.
        names.retain(|(name, _)| self.dir.join(name).exists());
        let mut text = String::new();
        for (name, description) in &names {
            text.push_str(name);
            if !description.is_empty() {
                text.push(' ');
                text.push_str(description);
            }
            text.push('\n');
        }
        let number = TEMPORARY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temporary = path.with_extension(format!("{}.{number}.new", std::process::id()));
        let written = crate::trust::snapshot::write_private(&temporary, text.as_bytes())
            .and_then(|()| fs::rename(&temporary, &path));
        if let Err(error) = written {
            let _ = fs::remove_file(&temporary);
            log::debug!(target: LOG_TARGET, "{}: not written: {error}", path.display());
        }
    }

    /// The kept copy of the file with `stamp`, `len` bytes long, whose
    /// bytes hash to `sha256`, if there is one this process has not mapped.
    pub(crate) fn find(&self, stamp: &Stamp, sha256: &str, len: u64) -> Option<Kept> {
        let path = self.path(stamp, sha256);
        // Through a handle, not following a link: a regular file of this
        // user's, writable by nobody else, of the expected size.
        let file = sys::untrusted_open_options(false).open(&path).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() != len || check_metadata(&meta).is_err() {
            return None;
        }
        {
            if owner(&meta) != self.owner || !hand_out(file_id(&meta), &path) {
                return None;
            }
            // Used now: not to be removed as unused by another process's
            // load meanwhile, whatever the mount's access-time rules. Once a
            // day at most, as `relatime` does: each mark is a write.
            let now = std::time::SystemTime::now();
            let marked = meta.accessed().is_ok_and(|at| {
                now.duration_since(at)
                    .is_ok_and(|since| since < std::time::Duration::from_secs(86_400))
            });
            if !marked {
                let _ = file.set_times(fs::FileTimes::new().set_accessed(now));
            }
            let name = path.file_name()?.to_str()?.to_owned();
            let proven = self.proven.get(&name);
            Some(Kept {
                proven: proven.is_some(),
                description: proven
                    .filter(|hex| !hex.is_empty())
                    .and_then(|hex| crate::digest::unhex(hex)),
                path,
                name,
            })
        }
    }

    /// Keeps `copy`, a private copy of the file with `stamp` whose bytes
    /// hash to `sha256` as its lock entry says, for later runs: a second
    /// name for the same file (nothing is copied) where the folders share a
    /// file system, else a copy made under a temporary name created
    /// exclusively. A kept copy is mapped without being hashed again, so it
    /// gets its name only once its bytes are on disk, and never in place of
    /// an existing one. Best effort: the name it is kept under, if it is.
    pub(crate) fn keep(&self, copy: &Path, stamp: &Stamp, sha256: &str) -> Option<String> {
        let path = self.path(stamp, sha256);
        let name = path.file_name()?.to_str()?.to_owned();
        // A kept copy of this name holds these very bytes.
        if fs::symlink_metadata(&path).is_ok() {
            return Some(name);
        }
        match self.name_copy(copy, &path) {
            Ok(made) => {
                if made {
                    self.added.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Some(name)
            }
            Err(error) => {
                log::debug!(target: LOG_TARGET,
                    "{}: not kept in the snapshot cache: {error}",
                    copy.display()
                );
                None
            }
        }
    }

    /// Gives the bytes of `copy` the name `path`, once they are on disk:
    /// whether this process made the name (not if another one did
    /// meanwhile).
    fn name_copy(&self, copy: &Path, path: &Path) -> std::io::Result<bool> {
        let meta = fs::metadata(copy)?;
        if self.same_device(&meta) {
            fs::File::open(copy)?.sync_data()?;
            match fs::hard_link(copy, path) {
                Ok(()) => {
                    // The same file as the copy this process maps: not to be
                    // handed out again in this process.
                    hand_out(file_id(&meta), path);
                    return Ok(true);
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Ok(false);
                }
                // Another mount of the file system, or one without hard
                // links: copied instead.
                Err(_) => {}
            }
        }
        // Copied under a temporary name created exclusively, synced, then
        // linked into place, which fails rather than replace a copy another
        // process may have found.
        let number = TEMPORARY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temporary = path.with_extension(format!("{}.{number}.new", std::process::id()));
        let made = crate::trust::snapshot::copy_private(copy, &temporary).and_then(|()| {
            match fs::hard_link(&temporary, path) {
                Ok(()) => Ok(true),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                // No hard links on this file system: renamed, which the
                // check above makes a new name but for a race with another
                // process, whose copy holds the same bytes.
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::Unsupported | std::io::ErrorKind::PermissionDenied
                    ) =>
                {
                    fs::rename(&temporary, path).map(|()| true)
                }
                Err(error) => Err(error),
            }
        });
        let _ = fs::remove_file(&temporary);
        made
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_the_cache_makes_are_removable() {
        let hash = "ab".repeat(32);
        for (name, limit) in [
            (format!("{hash}-1-2-3-4.5-6.7.so"), UNUSED_FOR),
            ("proven-0123abcd".to_owned(), UNUSED_FOR),
            ("proven-0123abcd-4567".to_owned(), UNUSED_FOR),
            (format!("{hash}-1-2-3-4.5-6.7.123.0.new"), LEFT_BEHIND_FOR),
            ("proven-0123abcd.123.4.new".to_owned(), LEFT_BEHIND_FOR),
        ] {
            assert_eq!(removable(&name), Some(limit), "{name}");
        }
        for name in [
            "libhello.so".to_owned(),
            "proven-".to_owned(),
            "proven-xyz".to_owned(),
            format!("{}-a.so", "AB".repeat(32)),
            format!("{hash}.so"),
            format!("{hash}-1.so.new"),
            "x.1.2.new".to_owned(),
            "proven-ab.x.2.new".to_owned(),
        ] {
            assert_eq!(removable(&name), None, "{name}");
        }
    }
}
