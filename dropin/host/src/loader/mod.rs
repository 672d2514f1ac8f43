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
    child::isolation::{self},
    child::probe::{Probe, Prober},
    error::{LoadError, LoadErrorKind},
    load::{self, Policy},
    registry::{LoadReport, Registry},
    sys,
    trust::cache::Cache,
    trust::discover::{DiscoverError, discover},
    trust::lockfile::{LOCKFILE_NAME, LockEntry, Lockfile, LockfileError},
    trust::permissions::{PermissionError, check_permissions},
    trust::source,
};

mod builder;
mod config;
mod reload;
mod stage;
mod survey;

pub use builder::LoaderBuilder;
pub use config::{
    CONFIG_FILE_NAME, ConfigFileError, MAX_CONFIG_SIZE, RESTART_BACKOFF, parse_duration, parse_size,
};
use stage::*;
pub use survey::{Described, DescribedFile, Recording, Survey, describe_file};

pub use reload::{ReloadError, ReloadReport, Reloaded};

/// The target of the loader's log records.
const LOG_TARGET: &str = "dropin_host::loader";

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
    /// The configuration file is unsafe, does not parse, or holds a setting
    /// it may not.
    #[error(transparent)]
    Config(std::sync::Arc<ConfigFileError>),
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
    /// A loader without a probe was asked to isolate a plugin.
    #[error(
        "isolating a plugin starts this program again: expected a loader with a probe \
         (LoaderBuilder::probe), found none"
    )]
    NoProbe,
    /// This process was started by a loader as its child, and went on to
    /// load plugins itself: the application does not call the child's entry
    /// point first thing in `main` (or the variable was set by hand).
    #[error(
        "this process was started as a dropin loader's child ({variable} is set) but went on to \
         load plugins itself; expected {call} first thing in main (or, if the variable was set \
         by hand, unset it)"
    )]
    StartedAsChild {
        /// The variable that is set.
        variable: &'static str,
        /// The call to add.
        call: &'static str,
    },
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
/// let builder = Loader::<TransformPlugin>::builder().dir("plugins");
/// // SAFETY: the plugins in `plugins/` are our own builds, which we trust
/// // to run in this process as our own code.
/// let report = unsafe { builder.build() }.load()?;
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
    configs: config::PluginConfigs,
    /// Why the configuration file could not be used, if it could not:
    /// every load, reload and survey fails with it.
    config_error: Option<std::sync::Arc<ConfigFileError>>,
    /// Whether the application vouched for the plugins that run in this
    /// process ([`LoaderBuilder::build`]); a loader built isolated maps
    /// nothing here, whatever happens.
    in_process: bool,
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
            .field("in_process", &self.in_process)
            .finish()
    }
}

impl<I: Interface> Loader<I> {
    /// Starts configuring a loader.
    pub fn builder() -> LoaderBuilder<I> {
        // The application's description of `I`, for tools that read the
        // executable (`dropin check --host`): referred to here, so that the
        // linker keeps it in every program that loads plugins of `I`.
        std::hint::black_box(I::application_description());
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
            config_source: config::Source::InFolder,
            chosen: config::Chosen::default(),
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
        // After the folder's own errors, which say more.
        self.check_config()?;
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
        // Every name a file's description gave, loaded or not.
        let named = std::cell::RefCell::new(std::collections::HashSet::new());
        let mut prober = self
            .probe
            .clone()
            .map(|probe| Prober::new(probe, self.isolation.confined, self.isolation.limits()));
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
                            self.finish(&mut report.registry, prober.as_mut(), staged, &named)
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
        self.warn_unmatched(&named.into_inner());
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

    /// Isolation needs a probe: its program runs isolated plugins. And a
    /// process its loader started as a child never loads plugins itself:
    /// it would start children of its own, and they theirs.
    fn check_probe(&self) -> Result<(), LoaderError> {
        for (variable, call) in [
            (
                crate::child::probe::PROBE_ENV,
                "dropin_host::probe::serve_if_requested()",
            ),
            (
                crate::child::isolation::ISOLATED_ENV,
                "dropin_host::isolation::serve_if_requested::<YourPlugin>() for each interface",
            ),
        ] {
            if std::env::var_os(variable).is_some() {
                return Err(LoaderError::StartedAsChild { variable, call });
            }
        }
        if !self.isolation.rules.is_empty() && self.probe.is_none() {
            return Err(LoaderError::NoProbe);
        }
        Ok(())
    }

    /// Warns of each name the configuration gives that no file of the
    /// folder described as its plugin's (`named`): a misspelt `isolate`
    /// name leaves its plugin in this process, and a misspelt table leaves
    /// its plugin without its settings.
    fn warn_unmatched(&self, named: &std::collections::HashSet<String>) {
        // Each name once, in order, after what is asked for it.
        let warn = |asked: &str, names: &mut dyn Iterator<Item = &String>| {
            let unmatched: std::collections::BTreeSet<&String> =
                names.filter(|name| !named.contains(*name)).collect();
            for name in unmatched {
                log::warn!(target: LOG_TARGET,
                    "{asked} plugin '{name}', but no plugin in {} has that name: is it spelt as \
                     the plugin names itself?",
                    self.dir.display()
                );
            }
        };
        warn(
            "isolation is asked for",
            &mut self
                .isolation
                .rules
                .iter()
                .filter_map(|rule| match rule {
                    isolation::Isolate::Plugins(names) => Some(names),
                    _ => None,
                })
                .flatten(),
        );
        warn(
            "there is configuration for",
            &mut self.configs.tables.keys().chain(self.configs.given.keys()),
        );
        warn(
            "a call timeout is set for",
            &mut self.isolation.call_timeouts.keys(),
        );
    }

    /// The configuration file could be used.
    pub(super) fn check_config(&self) -> Result<(), LoaderError> {
        match &self.config_error {
            Some(error) => Err(LoaderError::Config(error.clone())),
            None => Ok(()),
        }
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
}

/// The check that the plugin of `path` takes a name no plugin of
/// `registry` has.
pub(crate) fn unique_name<'a, I: Interface>(
    registry: &'a Registry<I>,
    path: &'a Path,
) -> impl Fn(&str) -> Result<(), LoadError> + 'a {
    move |name| match registry.get(name) {
        Some(first) => Err(LoadErrorKind::DuplicateName {
            name: name.to_owned(),
            first: first.path().to_owned(),
        }
        .at(path.to_owned())),
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
    crate::digest::unhex(text)?.try_into().ok()
}

/// Whether `error` says nothing about the file itself (the process ran out
/// of room or mappings): a reload tries such a file again even unchanged.
pub(crate) fn is_passing(error: &LoadError) -> bool {
    matches!(
        error.kind(),
        LoadErrorKind::Snapshot { .. }
            | LoadErrorKind::TooMany { .. }
            | LoadErrorKind::Unreadable { .. }
    )
}
