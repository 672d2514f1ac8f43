//! Loader layer: runs discover → permissions → snapshot → lock file → verify →
//! load → registry over a folder.

use std::{
    collections::{BTreeMap, HashMap},
    fmt, fs, io,
    marker::PhantomData,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread,
};

use dropin::Interface;
use semver::{Version, VersionReq};

use crate::{
    child::isolation::{self, Isolate},
    child::probe::{Probe, Prober},
    digest::hex,
    error::LoadError,
    load::{self, Plugin, Policy, Saved, default_interface_req},
    registry::{LoadReport, Registry},
    sys,
    trust::cache::Cache,
    trust::discover::{DiscoverError, discover},
    trust::lockfile::{LOCKFILE_NAME, LockEntry, Lockfile, LockfileError},
    trust::permissions::{PermissionError, check_permissions},
    trust::snapshot::{Copied, SnapshotDir},
    trust::source,
};

mod reload;

pub use reload::{ReloadError, ReloadReport, Reloaded};

/// Libraries this process has opened through any loader; they are never
/// unloaded.
static MAPPED: AtomicUsize = AtomicUsize::new(0);

/// The default limit on the libraries a process maps through loaders: far
/// above real use, below what exhausts the kernel's limit on memory
/// mappings (`vm.max_map_count`, 65,530 by default, about ten per library).
pub const DEFAULT_MAX_MAPPED: usize = 4096;

/// The default limit on the earlier generations of one plugin that reloads
/// leave mapped ([`LoaderBuilder::max_retained`]).
pub const DEFAULT_MAX_RETAINED: usize = 16;

/// The default limit on a plugin file's size: far above any real plugin
/// (a few MB), far below what would fill a disk with private copies.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 256 << 20;

/// Why a folder could not be loaded at all: nothing was loaded.
///
/// Its `Debug` is its message and causes on one line (as [`ErrorChain`]
/// prints them), so that `fn main() -> Result<(), LoaderError>` reports
/// what happened rather than the variant's structure.
///
/// [`ErrorChain`]: crate::ErrorChain
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum LoaderError {
    /// The folder could not be listed.
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    /// The folder could be written by someone else.
    #[error("plugins folder {} is not safe", path.display())]
    InsecureFolder {
        /// The folder.
        path: PathBuf,
        /// Which permission is wrong.
        #[source]
        source: PermissionError,
    },
    /// The lock file is required and missing, or does not parse.
    #[error(transparent)]
    Lockfile(#[from] LockfileError),
    /// The private snapshot folder could not be created.
    #[error("cannot create the private snapshot folder in {}", root.display())]
    Snapshot {
        /// Where it was to be made.
        root: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The snapshot folder's file system does not let the dynamic loader map
    /// files from it.
    #[error(
        "the private snapshot folder in {} is on a file system mounted noexec: the dynamic loader \
         cannot map plugins from it; expected a folder that allows executing mapped files",
        root.display()
    )]
    SnapshotNoexec {
        /// The folder it was made in.
        root: PathBuf,
    },
    /// The snapshot folder's file system has no room for the copies.
    #[error(
        "the private snapshot folder in {} has {available} bytes free; the copies of the plugin \
         files need {needed}",
        root.display()
    )]
    SnapshotFull {
        /// The folder it was made in.
        root: PathBuf,
        /// The bytes the copies need.
        needed: u64,
        /// The bytes free.
        available: u64,
    },
    /// [`Loader::record`] was asked of a loader without a probe.
    #[error(
        "recording a lock file or isolating a plugin starts this program again: expected a \
         loader with a probe (LoaderBuilder::probe), found none"
    )]
    NoProbe,
}

impl fmt::Debug for LoaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", crate::ErrorChain(self))
    }
}

/// Whether a lock file restricts what may load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LockMode {
    /// Enforce `plugins.lock` if the folder has one (the default).
    #[default]
    IfPresent,
    /// Require `plugins.lock`; without one, nothing loads.
    Required,
    /// Ignore any lock file: for recording a new one.
    Ignore,
}

/// Loads the plugins of interface `I` (the handle type that
/// `#[dropin::interface]` generates) from a folder.
///
/// ```no_run
/// # #[dropin::interface]
/// # pub trait Transform: Send + Sync {
/// #     fn apply(&self, text: &str) -> String;
/// # }
/// use dropin_host::{ErrorChain, Loader};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let report = Loader::<TransformPlugin>::builder().dir("plugins").build().load()?;
/// for plugin in report.registry.iter() {
///     println!("{}: {}", plugin.name(), plugin.apply("text")?);
/// }
/// for error in &report.rejected {
///     eprintln!("rejected: {}", ErrorChain(error));
/// }
/// # Ok(())
/// # }
/// ```
pub struct Loader<I: Interface> {
    dir: PathBuf,
    policy: Policy,
    lock: LockMode,
    /// The folder the application chose, if it did.
    snapshot_root: Option<PathBuf>,
    /// Where verified copies are kept across runs, if anywhere.
    snapshot_cache: Option<PathBuf>,
    check_permissions: bool,
    max_file_size: u64,
    max_mapped: usize,
    max_retained: usize,
    probe: Option<Probe>,
    services: Option<dropin::Services>,
    isolation: isolation::Settings,
    config: HashMap<String, String>,
    interface: PhantomData<fn() -> I>,
}

impl<I: Interface> fmt::Debug for Loader<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loader")
            .field("interface", &I::NAME)
            .field("dir", &self.dir)
            .field("accepted", &self.policy.accepted)
            .field("host_version", &self.policy.host_version)
            .field("allow_panic_abort", &self.policy.allow_panic_abort)
            .field("lock", &self.lock)
            .field("snapshot_root", &self.snapshot_root)
            .field("check_permissions", &self.check_permissions)
            .field("max_file_size", &self.max_file_size)
            .field("probe", &self.probe)
            .finish()
    }
}

impl<I: Interface> Loader<I> {
    /// Starts configuring a loader.
    pub fn builder() -> LoaderBuilder<I> {
        LoaderBuilder {
            dir: PathBuf::from("plugins"),
            accepted: None,
            host_version: None,
            lock: LockMode::default(),
            snapshot_root: None,
            snapshot_cache: None,
            check_permissions: true,
            allow_panic_abort: false,
            allow_executable_stack: false,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_mapped: DEFAULT_MAX_MAPPED,
            max_retained: DEFAULT_MAX_RETAINED,
            services: None,
            probe: None,
            isolation: isolation::Settings::default(),
            config: HashMap::new(),
            interface: PhantomData,
        }
    }

    /// The plugins folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lock file's path: `plugins.lock` in the plugins folder.
    pub fn lockfile_path(&self) -> PathBuf {
        self.dir.join(LOCKFILE_NAME)
    }

    /// The interface versions this loader accepts.
    pub fn accepted_interface(&self) -> &VersionReq {
        &self.policy.accepted
    }

    /// The host version plugins' host requirements are matched against.
    pub fn host_version(&self) -> &Version {
        &self.policy.host_version
    }

    /// Loads every candidate file of the folder. A file that fails is
    /// reported in [`LoadReport::rejected`] and does not stop the others.
    ///
    /// Each file goes through, in order: its permissions, a private copy
    /// (hashed while copying if a lock file is in force), the lock file, the
    /// object headers of the copy,
    /// abi_stable's checks when the copy is opened, the host's version
    /// policy, a unique name, and the plugin's initialisation.
    ///
    /// # Errors
    ///
    /// [`LoaderError`] if the folder cannot be listed or is writable by
    /// others, or if the lock file is required and missing or does not
    /// parse. Then nothing is loaded.
    pub fn load(&self) -> Result<LoadReport<I>, LoaderError> {
        self.check_probe()?;
        let candidates = self.candidates()?;
        // How each file was before it was read: one that changes while it is
        // loaded and is rejected is tried again by a reload.
        let metas = metadata_of(&candidates);
        let stamps: HashMap<&Path, source::Stamp> = candidates
            .iter()
            .zip(&metas)
            .filter_map(|(path, meta)| Some((path.as_path(), source::Stamp::of(meta.as_ref()?))))
            .collect();
        let lockfile = self.lockfile()?;
        let index = lockfile.as_ref().map(lock_index);
        if let Some(lockfile) = &lockfile {
            // Not an error (nothing unapproved loads), but a deployment that
            // lost a plugin should hear about it.
            let present: std::collections::HashSet<&std::ffi::OsStr> = candidates
                .iter()
                .filter_map(|path| path.file_name())
                .collect();
            for entry in &lockfile.plugins {
                if !present.contains(std::ffi::OsStr::new(&entry.file)) {
                    log::warn!(
                        "{} is listed in {} but missing from the folder",
                        self.dir.join(&entry.file).display(),
                        self.lockfile_path().display()
                    );
                }
            }
        }
        let mut report = LoadReport {
            registry: Registry::new(),
            rejected: Vec::new(),
        };
        let snapshots = self.snapshot_dir(&metas)?;
        let mut prober = self.probe.clone().map(Prober::new);
        let cache = match (&lockfile, &self.snapshot_cache) {
            (Some(_), Some(dir)) => lock_owner(&self.lockfile_path())
                .and_then(|owner| Cache::open(dir, owner, host_build::<I>())),
            _ => None,
        };
        if let Some(snapshots) = &snapshots {
            // Opening, copying and hashing run none of a file's code and
            // need no loader lock: worker threads do them ahead, while this
            // thread takes each file's result in the folder's order through
            // the checks that open it, so the registry and the rejections
            // come out as if one thread had done everything.
            let next = AtomicUsize::new(0);
            let workers = thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4));
            thread::scope(|scope| {
                let (send, results) = mpsc::channel();
                for _ in 0..workers {
                    let send = send.clone();
                    let (next, candidates, lockfile, cache) =
                        (&next, &candidates, index.as_ref(), cache.as_ref());
                    scope.spawn(move || {
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            let Some(path) = candidates.get(index) else {
                                break;
                            };
                            let staged = self.stage(snapshots, lockfile, path, false, cache);
                            if send.send((index, staged)).is_err() {
                                break;
                            }
                        }
                    });
                }
                drop(send);
                let mut early = BTreeMap::new();
                let mut expected = 0;
                for (index, staged) in results {
                    early.insert(index, staged);
                    while let Some(staged) = early.remove(&expected) {
                        expected += 1;
                        let loaded = staged.and_then(|staged| {
                            self.finish(&mut report.registry, prober.as_mut(), staged)
                        });
                        if let Err(error) = loaded {
                            log::debug!("rejected: {error}");
                            report.rejected.push(error);
                        }
                    }
                }
            });
        }
        if let Some(cache) = &cache {
            cache.save();
        }
        if let Some(snapshots) = snapshots {
            let _ = report.registry.snapshots.set(snapshots);
        }
        // A rejected file is tried again by a reload once it changes.
        let refused = report
            .registry
            .settled
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        for error in report.rejected.iter().filter(|error| !is_passing(error)) {
            if let Some(stamp) = stamps.get(error.path()) {
                refused.insert(error.path().to_owned(), *stamp);
            }
        }
        Ok(report)
    }

    /// Isolation needs a probe: its program runs isolated plugins.
    fn check_probe(&self) -> Result<(), LoaderError> {
        if !self.isolation.rules.is_empty() && self.probe.is_none() {
            return Err(LoaderError::NoProbe);
        }
        Ok(())
    }

    /// The lock file in force, read afresh.
    fn lockfile(&self) -> Result<Option<Lockfile>, LoaderError> {
        Ok(match self.lock {
            LockMode::Ignore => None,
            LockMode::IfPresent => Lockfile::read(&self.lockfile_path(), self.check_permissions)?,
            LockMode::Required => Some(
                Lockfile::read(&self.lockfile_path(), self.check_permissions)?.ok_or_else(
                    || LockfileError::Missing {
                        path: self.lockfile_path(),
                    },
                )?,
            ),
        })
    }

    /// The folder's candidate files, once the folder itself passed its
    /// permission check.
    fn candidates(&self) -> Result<Vec<PathBuf>, LoaderError> {
        let candidates = discover(&self.dir)?;
        if self.check_permissions {
            check_permissions(&self.dir).map_err(|source| LoaderError::InsecureFolder {
                path: self.dir.clone(),
                source,
            })?;
        }
        Ok(candidates)
    }

    /// A file's first stage, which runs none of its code: one open handle,
    /// its lock-file entry, and a private copy (hashed if the lock file needs
    /// the hash).
    fn stage<'l>(
        &self,
        snapshots: &SnapshotDir,
        lockfile: Option<&LockIndex<'l>>,
        path: &Path,
        hash: bool,
        cache: Option<&'l Cache>,
    ) -> Result<Staged<'l>, LoadError> {
        // One handle from here on: kind, owner, mode, size and bytes all come
        // from the same open file.
        let mut source = source::open(path, self.check_permissions, self.max_file_size)
            .map_err(|refused| LoadError::opening(path, refused))?;
        // Whether the lock lists the file is a question of its name: a file
        // it does not list is refused before anything is copied or hashed.
        let locked = match lockfile {
            None => None,
            Some(lockfile) => {
                let file = path.file_name().unwrap_or_default().to_string_lossy();
                Some(
                    lockfile
                        .get(&*file)
                        .copied()
                        .ok_or_else(|| LoadError::NotLocked {
                            path: path.to_owned(),
                            lockfile: self.lockfile_path(),
                        })?,
                )
            }
        };
        // A copy this user's earlier run verified against the same lock
        // entry, of the same unchanged file: mapped as it is.
        let stamp = source::Stamp::of(&source.meta);
        if let (Some(cache), Some(entry)) = (cache, locked)
            && let Some(sha256) = parse_hex(&entry.sha256)
            && let Some(kept) = cache.find(&stamp, &entry.sha256, source.meta.len())
        {
            log::debug!(
                "{}: its verified copy {} is kept{}",
                path.display(),
                kept.path.display(),
                if kept.proven {
                    ", its headers and layout proven by this build"
                } else {
                    ""
                }
            );
            let (headers, strict) = if kept.proven {
                (Some(Ok(())), false)
            } else {
                self.check_headers(path, &kept.path)
            };
            return Ok(Staged {
                path: path.to_owned(),
                headers,
                proven: kept.proven,
                to_prove: strict.then_some((cache, kept.name)),
                copied: Copied {
                    path: kept.path,
                    len: source.meta.len(),
                    sha256: Some(sha256),
                },
                locked,
                stamp,
            });
        }
        let copied = self.copy(snapshots, &mut source, path, hash || locked.is_some())?;
        let stamp = source::Stamp::of(&source.meta);
        // The headers are parsed here, ahead, only where nothing checks the
        // bytes first: those the lock file approves, and without a lock
        // entry those no probe process opens first. The others are parsed
        // where `load::open` parses them, after the hash and the probe.
        let approved = match (locked, copied.sha256) {
            (Some(entry), Some(sha256)) => hex(&sha256).eq_ignore_ascii_case(&entry.sha256),
            (Some(_), None) => false,
            (None, _) => self.probe.is_none(),
        };
        let (headers, strict) = if approved {
            self.check_headers(path, &copied.path)
        } else {
            (None, false)
        };
        let mut to_prove = None;
        if let (Some(cache), Some(entry), Some(Ok(()))) = (cache, locked, &headers)
            && approved
            && let Some(name) = cache.keep(&copied.path, &stamp, &entry.sha256)
            && strict
        {
            to_prove = Some((cache, name));
        }
        Ok(Staged {
            path: path.to_owned(),
            copied,
            locked,
            stamp,
            headers,
            proven: false,
            to_prove,
        })
    }

    /// The object headers' check of `copy`, the private copy of `path`,
    /// under the host's policy, and whether they passed without the policy's
    /// help.
    fn check_headers(&self, path: &Path, copy: &Path) -> (Option<Result<(), LoadError>>, bool) {
        let found = crate::inspect::verify::verify_library(copy);
        let strict = found.is_ok();
        (Some(load::judge_headers(path, found, &self.policy)), strict)
    }

    /// A staged file's checks, then the plugin into `registry`: its name
    /// must be free.
    fn finish(
        &self,
        registry: &mut Registry<I>,
        prober: Option<&mut Prober>,
        staged: Staged<'_>,
    ) -> Result<(), LoadError> {
        let path = staged.path.clone();
        let plugin = self.admit(
            prober,
            staged,
            &unique_name(registry, &path),
            &|_| None,
            &Default::default(),
        )?;
        registry.insert(plugin);
        Ok(())
    }

    /// A staged file's checks, in this thread: its hash against the lock
    /// file, the probe, the headers, opening it, the policy, `claim` on its
    /// name (as soon as the name is known, before the plugin's own code
    /// runs), and its `init`, which receives what `previous` gives (told
    /// whether the plugin will run isolated). `mapped` is set once the file
    /// is mapped in this process, where it stays whatever happens next.
    fn admit(
        &self,
        prober: Option<&mut Prober>,
        staged: Staged<'_>,
        claim: &dyn Fn(&str) -> Result<(), LoadError>,
        previous: &dyn Fn(bool) -> Option<Saved>,
        mapped: &std::cell::Cell<bool>,
    ) -> Result<Plugin<I>, LoadError> {
        let Staged {
            path,
            copied,
            locked,
            stamp,
            headers,
            proven,
            to_prove,
        } = staged;
        let path = path.as_path();
        let (copy, digest) = (copied.path, copied.sha256);
        if let Some(entry) = locked {
            let actual = hex(&digest.expect("hashed because a lock file is in force"));
            if !entry.sha256.eq_ignore_ascii_case(&actual) {
                return Err(LoadError::HashMismatch {
                    path: path.to_owned(),
                    expected: entry.sha256.clone(),
                    actual,
                });
            }
            claim(&entry.name)?;
        }
        let mut probed_name = None;
        // Bytes the lock file approved were approved by someone; any others
        // are opened in a probe process first, when the loader has one.
        if let (None, Some(prober)) = (locked, prober) {
            let report = prober.check(&copy).map_err(|how| LoadError::Probe {
                path: path.to_owned(),
                how,
            })?;
            // What the probe read is refused before the host maps anything:
            // another interface or version, an unsupported host, a duplicate
            // (a folder of thousands of copies must not fill the host's
            // address space with libraries it will never use).
            if report.no_root() {
                return Err(LoadError::NotAPlugin {
                    path: path.to_owned(),
                    interface: I::NAME,
                    export: I::EXPORT_MACRO,
                });
            }
            if let Some((name, version, has_layout)) = report.root() {
                load::check_root::<I>(path, name, version, has_layout)?;
            }
            // The probe's precise reason is the host's own: in-process, the
            // host opens the file (which the probe survived) and words it;
            // an isolated plugin is never opened here, so its reason is the
            // probe's.
            if let Some(reason) = report.refusal()
                && self.isolation.applies(report.plugin_name(), path, false)
            {
                return Err(LoadError::ProbeRefused {
                    path: path.to_owned(),
                    reason,
                });
            }
            if let Some(facts) = report.facts() {
                load::check_facts::<I>(path, &facts, &self.policy)?;
            }
            if let Some(name) = report.plugin_name() {
                claim(name)?;
            }
            probed_name = report.plugin_name().map(str::to_owned);
        }
        // The name as the lock file recorded it or the probe read it.
        let name = locked.map_or(probed_name.as_deref(), |entry| Some(entry.name.as_str()));
        if let (true, Some(probe)) = (
            self.isolation.applies(name, path, locked.is_some()),
            &self.probe,
        ) {
            let config = name
                .and_then(|name| self.config.get(name))
                .map_or("", String::as_str);
            let mut plugin = isolation::start::<I>(
                &probe.launcher(),
                &self.isolation,
                path,
                &copy,
                digest,
                &self.policy,
                config,
                name,
                previous(true),
                self.services.as_ref(),
            )?;
            claim(plugin.name())?;
            plugin.stamp = Some(stamp);
            log::info!(
                "loaded {} plugin '{}' {} from {}, isolated in a process of its own",
                I::NAME,
                plugin.name(),
                plugin.version(),
                path.display()
            );
            return Ok(plugin);
        }
        // Libraries are never unloaded: past a limit, refuse to map more
        // rather than let the process run out of memory mappings.
        if MAPPED.fetch_add(1, Ordering::Relaxed) >= self.max_mapped {
            MAPPED.fetch_sub(1, Ordering::Relaxed);
            return Err(LoadError::TooMany {
                path: path.to_owned(),
                limit: self.max_mapped,
            });
        }
        mapped.set(true);
        // Opening runs the library's constructors; `init` runs the plugin's
        // code: an `exit` in either must not end the host as a success.
        let mut plugin = crate::exit_guard::guarded(path, || {
            load::open::<I>(path, &copy, digest, &self.policy, headers, proven)
        })?;
        // Its bytes passed every check that reads nothing else.
        if let Some((cache, name)) = to_prove {
            cache.prove(name);
        }
        // Checked before the plugin's own initialisation runs: a duplicate
        // never gets to set anything up.
        claim(plugin.name())?;
        plugin.stamp = Some(stamp);
        let config = self.config.get(plugin.name()).map_or("", String::as_str);
        let previous = previous(false);
        // The plugin's own table: its calls say who they come from, and are
        // refused once it is disabled.
        let services = self.services.as_ref().map(|services| {
            let (table, refusal) = services.table_for(plugin.name());
            plugin.core().set_refusal(refusal);
            table
        });
        let initialized = crate::exit_guard::guarded(path, || {
            load::initialize(&plugin, config, previous.as_ref(), services)
        });
        if let Err(error) = initialized {
            // Threads its `init` started may live on: their calls to the
            // host's services are refused from now on.
            plugin.core().disable("its init failed");
            return Err(error);
        }
        // A plugin built before extensions never sees the state.
        plugin.took_state = previous.is_some() && plugin.extensions.is_some();
        log::info!(
            "loaded {} plugin '{}' {} from {}",
            I::NAME,
            plugin.name(),
            plugin.version(),
            path.display()
        );
        Ok(plugin)
    }
}

impl<I: Interface> Loader<I> {
    /// The private snapshot folder for `candidates` (none if there are
    /// none), checked once for the whole folder: a folder that cannot be
    /// made, whose file system is mounted `noexec`, or that has no room for
    /// the copies would otherwise fail every plugin with the dynamic
    /// loader's or the file system's message.
    fn snapshot_dir(
        &self,
        candidates: &[Option<fs::Metadata>],
    ) -> Result<Option<SnapshotDir>, LoaderError> {
        if candidates.is_empty() {
            return Ok(None);
        }
        // The folder the application chose; else the first default that
        // works.
        let roots = match &self.snapshot_root {
            Some(root) => vec![root.clone()],
            None => default_snapshot_roots(),
        };
        let mut roots = roots.into_iter().peekable();
        loop {
            let root = roots.next().expect("at least the temporary folder");
            match self.snapshot_dir_in(&root, candidates) {
                Ok(dir) => return Ok(Some(dir)),
                Err(error) if roots.peek().is_some() => {
                    log::debug!("{}; trying the next default", crate::ErrorChain(&error));
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn snapshot_dir_in(
        &self,
        root: &Path,
        candidates: &[Option<fs::Metadata>],
    ) -> Result<SnapshotDir, LoaderError> {
        let dir = SnapshotDir::create(root).map_err(|source| LoaderError::Snapshot {
            root: root.to_owned(),
            source,
        })?;
        if let Some(space) = sys::space(dir.path()) {
            if space.noexec {
                return Err(LoaderError::SnapshotNoexec {
                    root: root.to_owned(),
                });
            }
            // Sizes as `stat` gives them, without opening anything; a file
            // over the size limit is refused before it is copied.
            let needed = candidates
                .iter()
                .flatten()
                .filter(|meta| meta.is_file() && meta.len() <= self.max_file_size)
                .map(|meta| meta.len())
                .sum();
            if needed > space.available {
                return Err(LoaderError::SnapshotFull {
                    root: root.to_owned(),
                    needed,
                    available: space.available,
                });
            }
        }
        Ok(dir)
    }

    /// Copies the file behind `source` into the snapshot folder (created on
    /// first use), hashing it if `hash`, and makes sure the copy is the file
    /// as it was: a file someone writes while it is copied would give a copy
    /// that is half one build and half another, so copying repeats until the
    /// file's size and times are the same before and after, a few times at
    /// most.
    fn copy(
        &self,
        snapshots: &SnapshotDir,
        source: &mut source::Source,
        path: &Path,
        hash: bool,
    ) -> Result<Copied, LoadError> {
        let failed = |source: io::Error| match source.kind() {
            io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::FileTooLarge => LoadError::Snapshot {
                path: path.to_owned(),
                root: snapshots.root().to_owned(),
                source,
            },
            _ => LoadError::Unreadable {
                path: path.to_owned(),
                source,
            },
        };
        // A write past the process's file-size limit would kill it with
        // SIGXFSZ: no copy is ever allowed to grow that far.
        let limit = self.max_file_size.min(sys::file_size_limit());
        if source.meta.len() > limit {
            return Err(failed(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "the file has {} bytes and this process may write at most {limit} to one \
                     file (its file-size limit, ulimit -f)",
                    source.meta.len()
                ),
            )));
        }
        let name = path.file_name().unwrap_or_default();
        let mut attempts = 0;
        loop {
            let copied = snapshots
                .copy_in(name, &mut source.file, limit, hash)
                .map_err(failed)?;
            let after = source.file.metadata().map_err(failed)?;
            if after.len() == 0 && copied.len > 0 {
                // Bytes from a file whose size reads as 0: made up by the
                // kernel as they are read, never a library.
                let _ = fs::remove_file(&copied.path);
                return Err(LoadError::NotAFile {
                    path: path.to_owned(),
                    found: "a virtual file whose size reads as 0 (as in /proc or /sys)",
                });
            }
            if source::unchanged(&source.meta, &after)
                && copied.len == after.len()
                && (!source::recently_changed(&after)
                    || (sys::open_for_writing(&source.file) != Some(true)
                        && source::same_bytes(&source.file, &copied.path, copied.len)
                            .map_err(failed)?))
            {
                return Ok(copied);
            }
            let _ = fs::remove_file(&copied.path);
            attempts += 1;
            if attempts == 3 {
                return Err(LoadError::Changing {
                    path: path.to_owned(),
                });
            }
            source.meta = after;
        }
    }

    /// Records the folder's plugin files for a lock file, without running
    /// any of their code in this process: each file goes through the checks
    /// of [`load`](Self::load) up to the probe (permissions, a private copy,
    /// hashed, its object headers), then the probe process opens it and
    /// reports what its root module says, and that report must pass the
    /// host's rules (interface, versions, host requirement, how it was
    /// built, a unique name). Method signatures are compared when the file is
    /// loaded, since that needs the library mapped. Any existing lock file is
    /// ignored; nothing is written: [`Recording::lockfile`] is what to write.
    ///
    /// # Errors
    ///
    /// [`LoaderError::NoProbe`] if the loader has no probe (recording opens
    /// every file, and only a probe may do that without trusting it); the
    /// folder-level errors of [`load`](Self::load).
    pub fn record(&self) -> Result<Recording, LoaderError> {
        let probe = self.probe.clone().ok_or(LoaderError::NoProbe)?;
        let candidates = self.candidates()?;
        let mut prober = Prober::new(probe);
        let snapshots = self.snapshot_dir(&metadata_of(&candidates))?;
        let mut recording = Recording {
            entries: Vec::new(),
            refused: Vec::new(),
        };
        let mut names: HashMap<String, PathBuf> = HashMap::new();
        for path in candidates {
            let snapshots = snapshots
                .as_ref()
                .expect("made for a folder with candidates");
            match self.record_file(snapshots, &mut prober, &names, &path) {
                Ok(entry) => {
                    names.insert(entry.name.clone(), path);
                    recording.entries.push(entry);
                }
                Err(error) => {
                    log::debug!("not recorded: {error}");
                    recording.refused.push(error);
                }
            }
        }
        Ok(recording)
    }

    fn record_file(
        &self,
        snapshots: &SnapshotDir,
        prober: &mut Prober,
        names: &HashMap<String, PathBuf>,
        path: &Path,
    ) -> Result<LockEntry, LoadError> {
        let mut source = source::open(path, self.check_permissions, self.max_file_size)
            .map_err(|refused| LoadError::opening(path, refused))?;
        let copied = self.copy(snapshots, &mut source, path, true)?;
        let sha256 = hex(&copied.sha256.expect("hashed when asked"));
        load::verify(path, &copied.path, &self.policy)?;
        let report = prober.check(&copied.path).map_err(|how| LoadError::Probe {
            path: path.to_owned(),
            how,
        })?;
        let _ = fs::remove_file(&copied.path);
        if let Some(reason) = report.refusal() {
            return Err(LoadError::ProbeRefused {
                path: path.to_owned(),
                reason,
            });
        }
        if report.no_root() {
            return Err(LoadError::NotAPlugin {
                path: path.to_owned(),
                interface: I::NAME,
                export: I::EXPORT_MACRO,
            });
        }
        let (name, version, has_layout) = report.root().ok_or_else(|| LoadError::ProbeRefused {
            path: path.to_owned(),
            reason: "the probe found no root module".to_owned(),
        })?;
        load::check_root::<I>(path, name, version, has_layout)?;
        let facts = report.facts().ok_or_else(|| LoadError::ProbeRefused {
            path: path.to_owned(),
            reason: "the probe could not read the plugin's metadata".to_owned(),
        })?;
        let checked = load::check_facts::<I>(path, &facts, &self.policy)?;
        if let Some(first) = names.get(checked.name) {
            return Err(LoadError::DuplicateName {
                path: path.to_owned(),
                name: checked.name.to_owned(),
                first: first.clone(),
            });
        }
        Ok(LockEntry {
            file: path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            sha256,
            name: checked.name.to_owned(),
            version: checked.version.to_string(),
            interface_version: checked.interface_version.to_string(),
        })
    }
}

/// A file that went through [`Loader::stage`].
struct Staged<'l> {
    path: PathBuf,
    copied: Copied,
    locked: Option<&'l LockEntry>,
    /// The file as it was copied.
    stamp: source::Stamp,
    /// Its object headers' check, if done ahead (it reads the copy and
    /// runs nothing), applied where [`load::open`] would make it.
    headers: Option<Result<(), LoadError>>,
    /// Whether this host build proved the copy's headers and root-module
    /// layout in an earlier run (a kept copy of the snapshot cache).
    proven: bool,
    /// The kept copy to record as proven once its root module passed the
    /// layout check: its headers passed strictly.
    to_prove: Option<(&'l Cache, String)>,
}

/// The check that the plugin of `path` takes a name no plugin of
/// `registry` has.
pub(crate) fn unique_name<'a, I: Interface>(
    registry: &'a Registry<I>,
    path: &'a Path,
) -> impl Fn(&str) -> Result<(), LoadError> + 'a {
    move |name| match registry.get(name) {
        Some(first) => Err(LoadError::DuplicateName {
            path: path.to_owned(),
            name: name.to_owned(),
            first: first.path().to_owned(),
        }),
        None => Ok(()),
    }
}

/// The user the lock file at `path` belongs to (root where the platform
/// has no owners).
fn lock_owner(path: &Path) -> Option<u32> {
    if sys::effective_uid().is_none() {
        return Some(0);
    }
    let meta = fs::metadata(path).ok()?;
    sys::owner_and_mode(&meta).map(|(owner, _)| owner)
}

/// A lock file's entries by file name.
pub(crate) type LockIndex<'l> = HashMap<&'l str, &'l LockEntry>;

/// What `stat` says of each of `paths` (through links), where it can.
fn metadata_of(paths: &[PathBuf]) -> Vec<Option<fs::Metadata>> {
    paths.iter().map(|path| fs::metadata(path).ok()).collect()
}

/// The build of this host that checks plugins of `I`: the build IDs of the
/// objects that hold the header checks and the layout the root module is
/// checked against (one object, unless dropin's host crate is a library of
/// its own).
fn host_build<I: Interface>() -> Option<String> {
    let checks = crate::inspect::build_id::of(crate::inspect::verify::verify_library as *const ())?;
    let layout = crate::inspect::build_id::of(load::open::<I> as *const ())?;
    Some(if checks == layout {
        checks
    } else {
        format!("{checks}-{layout}")
    })
}

/// `lockfile`'s entries by file name: one lookup per file, not a scan.
pub(crate) fn lock_index(lockfile: &Lockfile) -> LockIndex<'_> {
    lockfile
        .plugins
        .iter()
        .map(|entry| (entry.file.as_str(), entry))
        .collect()
}

/// The bytes a SHA-256 in hexadecimal names, if it is one.
fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let mut bytes = [0; 32];
    if text.len() != 64 {
        return None;
    }
    for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(bytes)
}

/// Whether `error` says nothing about the file itself (the process ran out
/// of room or mappings): a reload tries such a file again even unchanged.
pub(crate) fn is_passing(error: &LoadError) -> bool {
    matches!(
        error,
        LoadError::Snapshot { .. } | LoadError::TooMany { .. } | LoadError::Unreadable { .. }
    )
}

/// What [`Loader::record`] found: the entries of a lock file for the files
/// that passed, and why the others did not.
#[derive(Debug)]
#[non_exhaustive]
pub struct Recording {
    /// One entry per file that passed, in the folder's order.
    pub entries: Vec<LockEntry>,
    /// The files that did not pass, each with its reason.
    pub refused: Vec<LoadError>,
}

impl Recording {
    /// The lock file that approves exactly the recorded files.
    pub fn lockfile(&self) -> Lockfile {
        Lockfile::new(self.entries.clone())
    }
}

/// Where the snapshot folder goes by default, in order of preference: the
/// user's own runtime folder when there is one; on Linux, the shared-memory
/// folder (a memory file system, like the runtime folder: copies cost no
/// disk writes); the system's temporary folder.
fn default_snapshot_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute() && dir.is_dir())
        .into_iter()
        .collect();
    if let Some(shm) = sys::target::SHARED_MEMORY.map(Path::new)
        && shm.is_dir()
    {
        roots.push(shm.to_owned());
    }
    roots.push(std::env::temp_dir());
    roots
}

/// Options for a [`Loader`].
pub struct LoaderBuilder<I: Interface> {
    dir: PathBuf,
    accepted: Option<VersionReq>,
    host_version: Option<Version>,
    lock: LockMode,
    snapshot_root: Option<PathBuf>,
    snapshot_cache: Option<PathBuf>,
    check_permissions: bool,
    allow_panic_abort: bool,
    allow_executable_stack: bool,
    max_file_size: u64,
    max_mapped: usize,
    max_retained: usize,
    services: Option<dropin::Services>,
    probe: Option<Probe>,
    isolation: isolation::Settings,
    config: HashMap<String, String>,
    interface: PhantomData<fn() -> I>,
}

impl<I: Interface> fmt::Debug for LoaderBuilder<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoaderBuilder")
            .field("dir", &self.dir)
            .field("accepted", &self.accepted)
            .field("host_version", &self.host_version)
            .field("lock", &self.lock)
            .field("snapshot_root", &self.snapshot_root)
            .field("check_permissions", &self.check_permissions)
            .field("allow_panic_abort", &self.allow_panic_abort)
            .field("configured", &self.config.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<I: Interface> LoaderBuilder<I> {
    /// The plugins folder (default: `plugins`, relative to the working
    /// directory).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    /// The interface versions to accept (default: the host's own major,
    /// see [`default_interface_req`]). It can only narrow that: plugins of
    /// another major (for a 0.x interface, another minor) are refused
    /// regardless, with [`LoadError::AnotherMajor`].
    pub fn accept_interface(mut self, req: VersionReq) -> Self {
        self.accepted = Some(req);
        self
    }

    /// The version of the host application, matched against the host
    /// requirement a plugin may declare (default: `0.0.0`; set it to your
    /// application's version).
    pub fn host_version(mut self, version: Version) -> Self {
        self.host_version = Some(version);
        self
    }

    /// Whether `plugins.lock` restricts what loads (default:
    /// [`LockMode::IfPresent`]).
    pub fn lock(mut self, mode: LockMode) -> Self {
        self.lock = mode;
        self
    }

    /// Where the private per-process folder of plugin copies is created. By
    /// default, the first of these that can hold it: `$XDG_RUNTIME_DIR`, the
    /// user's own runtime folder, when it is set and exists; on Linux,
    /// `/dev/shm`; the system's temporary folder. A folder chosen here is
    /// the only one tried: it must allow executing mapped files (no
    /// `noexec`) and have room for the copies, or [`Loader::load`] fails
    /// with [`LoaderError::SnapshotNoexec`] or [`LoaderError::SnapshotFull`].
    pub fn snapshot_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.snapshot_root = Some(root.into());
        self
    }

    /// Keeps the private copies that matched the lock file in `dir`, across
    /// runs, so that a later [`load`](Loader::load) of an unchanged, locked
    /// file maps the copy it already verified instead of copying and hashing
    /// the file again (by default nothing is kept). An unchanged file is one
    /// with the same device, inode, size and modification and change times,
    /// to the nanosecond: the change time is set by the kernel on every
    /// change and cannot be set back by anyone but root. A kept copy is
    /// mapped without being hashed again, so the folder and every copy in
    /// it must belong to the lock file's owner and be writable by nobody
    /// else (the folder is made private if it does not exist), and the
    /// folders above it writable by nobody but this user or root (or sticky,
    /// as `/tmp` is); otherwise it is not used, with a warning. Best on the
    /// snapshot folder's file system: copies are then kept as second names
    /// of the private copies, not copied again. What this build of the host
    /// proved about a kept copy (that its object headers and its root
    /// module's layout pass) is kept beside it, in a list per host build
    /// (named by the build IDs of the code that checks): the same build maps
    /// a proven copy without those two checks; every other check runs as
    /// always. A load that keeps a new copy removes the cache's copies and
    /// lists that no load used for 30 days (a load marks each copy it uses,
    /// at most once a day). Only locked files use it; a reload always
    /// copies afresh. Unix only.
    #[must_use]
    pub fn snapshot_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.snapshot_cache = Some(dir.into());
        self
    }

    /// Whether to refuse files and folders that the group or others may
    /// write, or that another user owns (default: `true`; Unix only).
    pub fn check_permissions(mut self, check: bool) -> Self {
        self.check_permissions = check;
        self
    }

    /// The largest plugin file the loader copies (default:
    /// [`DEFAULT_MAX_FILE_SIZE`], 256 MiB); a larger one is refused before a
    /// byte is copied.
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// The most libraries the process may map through loaders (default:
    /// [`DEFAULT_MAX_MAPPED`]); past it, files are refused with
    /// [`LoadError::TooMany`] instead of opened.
    pub fn max_mapped(mut self, libraries: usize) -> Self {
        self.max_mapped = libraries;
        self
    }

    /// The most earlier generations of one plugin that reloads may leave
    /// mapped in this process (by default [`DEFAULT_MAX_RETAINED`]): a
    /// library is never unloaded, so each in-process reload keeps the
    /// replaced one. Past it, [`Loader::reload`] refuses with
    /// [`LoadError::Retained`] and the current generation keeps serving.
    /// Isolated plugins do not count: their earlier processes end.
    #[must_use]
    pub fn max_retained(mut self, generations: usize) -> Self {
        self.max_retained = generations;
        self
    }

    /// The services the application offers its plugins, declared beside
    /// the interface with `#[dropin::services]` and made with the
    /// generated handle's `provided_by`: every plugin's `init` finds a
    /// handle to them in its context. Calls from a plugin run on the
    /// plugin's thread; a panic in the application's code reaches the
    /// plugin as an error; once a plugin is disabled, its calls are refused.
    #[must_use]
    pub fn services(mut self, services: dropin::Services) -> Self {
        self.services = Some(services);
        self
    }

    /// Whether a library that asks for an executable stack may load
    /// (default: `false`: loading it would make every stack of the host
    /// executable).
    pub fn allow_executable_stack(mut self, allow: bool) -> Self {
        self.allow_executable_stack = allow;
        self
    }

    /// Runs the plugins a rule matches in processes of their own, each
    /// through the same handle as in-process plugins (see
    /// [`isolation`](crate::child::isolation)). Rules add up: a plugin any of them
    /// matches is isolated. Needs a [`probe`](Self::probe): the isolated
    /// process is the probe's program, which must also call
    /// [`isolation::serve_if_requested`](crate::child::isolation::serve_if_requested)
    /// first thing.
    pub fn isolate(mut self, rule: Isolate) -> Self {
        self.isolation.rules.push(rule);
        self
    }

    /// How long an isolated plugin may take to answer one call (default:
    /// [`DEFAULT_CALL_TIMEOUT`](crate::child::isolation::DEFAULT_CALL_TIMEOUT));
    /// past it, its process is killed and the call fails with
    /// `CallErrorKind::TimedOut`.
    pub fn call_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.isolation.call_timeout = timeout;
        self
    }

    /// Confines isolated plugins' processes (Linux; default: `false`): no
    /// new privileges (`PR_SET_NO_NEW_PRIVS`: a setuid program it runs
    /// gains nothing), no network (a network namespace of its own, with
    /// only a loopback interface that is down) and a read-only view of every
    /// file system (a mount namespace of its own where every mount is made
    /// read-only with `mount_setattr`, Linux 5.12 or later). Unprivileged
    /// hosts use a user namespace that maps their user to itself. The
    /// process can still read what the host can read. Where the kernel
    /// refuses any of these, the plugin is refused, never run unconfined.
    pub fn confine_isolated(mut self, confine: bool) -> Self {
        self.isolation.confined = confine;
        self
    }

    /// What happens to an isolated plugin whose process crashed or timed
    /// out (default: [`Recovery::Disable`](crate::child::isolation::Recovery)).
    pub fn isolation_recovery(mut self, recovery: crate::child::isolation::Recovery) -> Self {
        self.isolation.recovery = recovery;
        self
    }

    /// How long the isolated plugin `name` may take to answer one call, in
    /// place of [`call_timeout`](Self::call_timeout) for it.
    pub fn call_timeout_for(
        mut self,
        name: impl Into<String>,
        timeout: std::time::Duration,
    ) -> Self {
        self.isolation.call_timeouts.insert(name.into(), timeout);
        self
    }

    /// The most memory (address space, bytes) an isolated plugin's process
    /// may use (`RLIMIT_AS`, Linux; default: no limit). Past it, the
    /// plugin's allocations fail, which ends its process, and the call
    /// fails with `CallErrorKind::Crashed`.
    pub fn isolation_memory_limit(mut self, bytes: u64) -> Self {
        self.isolation.memory_limit = Some(bytes);
        self
    }

    /// Open every library that the lock file does not approve in a probe
    /// process first (see [`crate::child::probe`]): a library that makes the
    /// dynamic loader crash, exit or hang is refused, and the host survives.
    /// Default: no probe. The probe program must call
    /// [`serve_if_requested`](crate::child::probe::serve_if_requested) first thing
    /// in `main`.
    pub fn probe(mut self, probe: Probe) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Whether a plugin built with `panic = "abort"` may load (default:
    /// `false`: its first panic would kill the host instead of coming back
    /// as an error).
    pub fn allow_panic_abort(mut self, allow: bool) -> Self {
        self.allow_panic_abort = allow;
        self
    }

    /// The configuration handed to the plugin called `plugin` when it
    /// initialises ([`dropin::Context::config`]); the format is the
    /// application's (`greeter-host` passes a TOML table). Plugins without
    /// one get an empty string.
    pub fn config(mut self, plugin: impl Into<String>, config: impl Into<String>) -> Self {
        self.config.insert(plugin.into(), config.into());
        self
    }

    /// The configured loader.
    pub fn build(self) -> Loader<I> {
        let accepted = self.accepted.unwrap_or_else(|| {
            let own = Version::parse(I::VERSION).expect("the interface crate's version is semver");
            default_interface_req(&own)
        });
        let host_version = self.host_version.unwrap_or(Version::new(0, 0, 0));
        Loader {
            dir: self.dir,
            policy: Policy {
                accepted,
                host_version,
                allow_panic_abort: self.allow_panic_abort,
                allow_executable_stack: self.allow_executable_stack,
            },
            lock: self.lock,
            snapshot_root: self.snapshot_root,
            snapshot_cache: self.snapshot_cache,
            check_permissions: self.check_permissions,
            max_file_size: self.max_file_size,
            max_mapped: self.max_mapped,
            max_retained: self.max_retained,
            services: self.services,
            probe: self.probe,
            isolation: self.isolation,
            config: self.config,
            interface: PhantomData,
        }
    }
}
