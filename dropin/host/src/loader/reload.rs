//! Loader layer: reloads, a plugin's new build becomes a new generation beside the old
//! one, after every check a first load makes.

use std::{
    fs,
    path::{Path, PathBuf},
};

use dropin::Interface;
use semver::Version;

use super::{Loader, LoaderError, LockIndex, Staged};
use crate::{
    child::probe::Prober,
    error::{LoadError, LoadErrorKind},
    load::{Plugin, Saved},
    registry::{Registry, Slot},
    trust::snapshot::SnapshotDir,
    trust::source::Stamp,
};

/// Why a reload did not happen. Whatever the reason, the plugin's current
/// generation keeps serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// No plugin of that name is loaded.
    #[error("no plugin named '{name}' is loaded")]
    NotLoaded {
        /// The name asked for.
        name: String,
    },
    /// The folder or its lock file failed a check: nothing was reloaded.
    #[error(transparent)]
    Folder(#[from] LoaderError),
    /// The plugin's new file failed a check.
    #[error("'{name}' not reloaded; generation {serving} keeps serving")]
    Refused {
        /// The plugin.
        name: String,
        /// The generation that keeps serving.
        serving: u32,
        /// The check that failed, naming the file.
        #[source]
        source: Box<LoadError>,
    },
    /// A file new in the folder failed a check.
    #[error(transparent)]
    Rejected(Box<LoadError>),
}

/// A plugin that a reload switched to a new generation, or that appeared in
/// the folder and loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloaded {
    /// The plugin.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    /// The generation now serving (1 for a plugin new in the folder).
    pub generation: u32,
    /// The version of the generation now serving.
    pub version: Version,
    /// The version of the generation it replaced; `None` for a plugin new in
    /// the folder.
    pub previous: Option<Version>,
    /// Whether the earlier generation handed its state over.
    pub handed_over: bool,
}

/// What [`Loader::reload_changed`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ReloadReport {
    /// The plugins reloaded or added, in path order.
    pub reloaded: Vec<Reloaded>,
    /// The files that failed a check, in path order.
    pub refused: Vec<ReloadError>,
}

impl ReloadReport {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.reloaded.is_empty() && self.refused.is_empty()
    }
}

impl<I: Interface> Loader<I> {
    /// Replaces the plugin `name` of `registry` with what its file holds
    /// now, as a new generation.
    ///
    /// The file goes through every check of a first load (permissions, a
    /// private copy, the lock file as it reads now, the probe, the headers,
    /// the layouts, the versions and the policy), and must declare the same
    /// name. If it passes, the plugin's earlier generation hands over its
    /// state (if it saves one), the new one initialises with it, and the
    /// name points to the new generation with one atomic store: calls
    /// already running finish on the earlier generation, later ones reach
    /// the new one. The earlier generation stays mapped (libraries are never
    /// unloaded: see [`Registry::retained`]); an isolated plugin's earlier
    /// process ends once its running call returns.
    ///
    /// Reloads of one registry run one at a time; calls never wait for them.
    /// A reload may wait for an isolated plugin's running call (at most its
    /// call timeout) to save its state and end its process. Never reload a
    /// plugin from inside one of its own calls: saving its state runs its
    /// code again on the same thread.
    ///
    /// The state is saved once the new build passed its checks, just before
    /// its `init` (for an isolated plugin, before its process starts): calls
    /// that the earlier generation serves in between act on a state that
    /// is not handed over. State from an isolated process is never handed
    /// to a build that runs in the host.
    ///
    /// # Errors
    ///
    /// [`ReloadError`]; the current generation keeps serving.
    pub fn reload(&self, registry: &Registry<I>, name: &str) -> Result<Reloaded, ReloadError> {
        self.check_probe()?;
        self.check_config()?;
        let _one_at_a_time = registry.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let slot = registry.slot(name).ok_or_else(|| ReloadError::NotLoaded {
            name: name.to_owned(),
        })?;
        // The folder's own check, as for a first load.
        self.candidates()?;
        let lockfile = self.lockfile()?;
        let index = lockfile.as_ref().map(super::lock_index);
        let mut prober = self
            .probe
            .clone()
            .map(|probe| Prober::new(probe, self.isolation.confined, self.isolation.limits()));
        let reloaded = self.replace(registry, slot, index.as_ref(), prober.as_mut(), false)?;
        Ok(reloaded.expect("a reload by name never skips"))
    }

    /// Reloads every plugin of `registry` whose file changed since it was
    /// loaded (another file at its path, or other bytes), as
    /// [`reload`](Self::reload) does, and loads the files new in the folder.
    /// A file whose bytes are those of the generation serving (touched,
    /// `chmod`ed, copied over with the same build) is left alone; a file
    /// that failed is not tried again until it changes, unless it failed
    /// for want of room or mappings; a plugin whose file was removed keeps
    /// serving.
    ///
    /// # Errors
    ///
    /// [`LoaderError`] if the folder or its lock file fails its checks: then
    /// nothing is reloaded.
    pub fn reload_changed(&self, registry: &Registry<I>) -> Result<ReloadReport, LoaderError> {
        self.check_probe()?;
        self.check_config()?;
        let _one_at_a_time = registry.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let candidates = self.candidates()?;
        let mut report = ReloadReport::default();
        // Each loaded plugin's slot by its file, looked up once per file.
        let by_path: std::collections::HashMap<PathBuf, &Slot<I>> = registry
            .iter()
            .filter_map(|plugin| Some((plugin.path().to_owned(), registry.slot(plugin.name())?)))
            .collect();
        // Each file as it is before it is read: one that changes meanwhile
        // differs from what is recorded, and is looked at again.
        let changed: Vec<(PathBuf, Stamp)> = candidates
            .into_iter()
            .filter_map(|path| {
                let stamp = Stamp::of(&fs::metadata(&path).ok()?);
                let settled = registry.settled.lock().unwrap_or_else(|e| e.into_inner());
                if settled.get(&path) == Some(&stamp) {
                    return None;
                }
                match by_path.get(&path) {
                    Some(slot) if slot.current().stamp == Some(stamp) => None,
                    _ => Some((path, stamp)),
                }
            })
            .collect();
        if changed.is_empty() {
            return Ok(report);
        }
        let lockfile = self.lockfile()?;
        let index = lockfile.as_ref().map(super::lock_index);
        let mut prober = self
            .probe
            .clone()
            .map(|probe| Prober::new(probe, self.isolation.confined, self.isolation.limits()));
        for (path, stamp) in changed {
            let result = match by_path.get(&path) {
                Some(slot) => self.replace(registry, slot, index.as_ref(), prober.as_mut(), true),
                None => self
                    .add(registry, &path, index.as_ref(), prober.as_mut())
                    .map(Some),
            };
            let settle = match &result {
                Ok(_) => true,
                Err(ReloadError::Refused { source, .. } | ReloadError::Rejected(source)) => {
                    !super::is_passing(source)
                }
                Err(_) => false,
            };
            let mut settled = registry.settled.lock().unwrap_or_else(|e| e.into_inner());
            if settle {
                settled.insert(path.clone(), stamp);
            } else {
                settled.remove(&path);
            }
            drop(settled);
            match result {
                Ok(Some(reloaded)) => {
                    match reloaded.previous {
                        Some(_) => log::info!(
                            "reloaded '{}' from {}: generation {}",
                            reloaded.name,
                            path.display(),
                            reloaded.generation
                        ),
                        None => log::info!(
                            "loaded '{}' from {}, new in the folder",
                            reloaded.name,
                            path.display()
                        ),
                    }
                    report.reloaded.push(reloaded);
                }
                // The same bytes as the generation serving.
                Ok(None) => {}
                Err(error) => {
                    log::debug!("{}", crate::ErrorChain(&error));
                    report.refused.push(error);
                }
            }
        }
        Ok(report)
    }

    /// The snapshot folder of `registry`, made now if its first load had no
    /// file to copy.
    fn snapshots_of<'r>(
        &self,
        registry: &'r Registry<I>,
        path: &Path,
    ) -> Result<&'r SnapshotDir, LoaderError> {
        if let Some(snapshots) = registry.snapshots.get() {
            return Ok(snapshots);
        }
        let made = self
            .snapshot_dir(&[fs::metadata(path).ok()])?
            .expect("made for a candidate");
        // Reloads run one at a time: nobody set it meanwhile.
        let _ = registry.snapshots.set(made);
        Ok(registry.snapshots.get().expect("just set"))
    }

    /// Replaces the current generation of `slot` with its file's new build;
    /// `None` if `skip_same` and the file holds the bytes of the generation
    /// serving.
    fn replace(
        &self,
        registry: &Registry<I>,
        slot: &Slot<I>,
        lockfile: Option<&LockIndex<'_>>,
        prober: Option<&mut Prober>,
        skip_same: bool,
    ) -> Result<Option<Reloaded>, ReloadError> {
        let old = slot.current();
        let name = old.name();
        let path = old.path();
        let refused = |source| ReloadError::Refused {
            name: name.to_owned(),
            serving: old.generation(),
            source: Box::new(source),
        };
        // The generation being replaced stays mapped, as do builds that
        // failed after they were mapped: refuse before the new one costs
        // anything.
        if !old.is_isolated() && slot.retained() + slot.failed_mapped() >= self.max_retained {
            return Err(refused(
                LoadErrorKind::Retained {
                    name: name.to_owned(),
                    limit: self.max_retained,
                }
                .at(path.to_owned()),
            ));
        }
        let snapshots = self.snapshots_of(registry, path)?;
        let staged: Staged<'_> = self
            .stage(snapshots, lockfile, path, skip_same, None)
            .map_err(refused)?;
        let copy = staged.copied.path.clone();
        if skip_same
            && let (Some(new), Ok(serving)) = (staged.copied.sha256, old.sha256())
            && crate::digest::hex(&new).eq_ignore_ascii_case(&serving)
        {
            let _ = fs::remove_file(&copy);
            return Ok(None);
        }
        let claim = |found: &str| {
            if found == name {
                Ok(())
            } else {
                Err(LoadErrorKind::Renamed {
                    expected: name.to_owned(),
                    found: found.to_owned(),
                }
                .at(path.to_owned()))
            }
        };
        let previous = |isolated: bool| -> Option<Saved> {
            // What an isolated process sends is not trusted: it never
            // reaches plugin code in the host.
            if old.is_isolated() && !isolated {
                log::info!(
                    target: &dropin::log_target(name),
                    "the new build runs in the host: the isolated build's state is not handed over"
                );
                return None;
            }
            old.save_state()
        };
        let mapped = std::cell::Cell::new(false);
        let new = match self.admit(prober, staged, &claim, &previous, &mapped) {
            Ok(new) => new,
            Err(error) => {
                // The copy goes; a library mapped stays mapped, and counts.
                let _ = fs::remove_file(&copy);
                if mapped.get() {
                    slot.note_failed_mapped();
                }
                return Err(refused(error));
            }
        };
        let reloaded = Reloaded {
            name: name.to_owned(),
            path: path.to_owned(),
            generation: old.generation() + 1,
            version: new.version().clone(),
            previous: Some(old.version().clone()),
            handed_over: new.took_state,
        };
        let successor = new.core().shared_remote();
        let generation = slot.switch(new);
        debug_assert_eq!(generation, reloaded.generation);
        // An isolated generation is really unloaded: its process ends once
        // its running call returns; calls that still reach it go on to the
        // new one. Its private copy, never mapped here, goes too (not a
        // copy kept in a snapshot cache, which later runs may map).
        if let Some(remote) = old.core().remote() {
            remote.retire(successor);
            if old.loaded_from().starts_with(snapshots.path()) {
                let _ = fs::remove_file(old.loaded_from());
            }
        }
        Ok(Some(reloaded))
    }

    fn add(
        &self,
        registry: &Registry<I>,
        path: &Path,
        lockfile: Option<&LockIndex<'_>>,
        prober: Option<&mut Prober>,
    ) -> Result<Reloaded, ReloadError> {
        let rejected = |error| ReloadError::Rejected(Box::new(error));
        let snapshots = self.snapshots_of(registry, path)?;
        let staged = self
            .stage(snapshots, lockfile, path, false, None)
            .map_err(rejected)?;
        let copy = staged.copied.path.clone();
        let claim = super::unique_name(registry, path);
        let plugin = self
            .admit(prober, staged, &claim, &|_| None, &Default::default())
            .map_err(|error| {
                let _ = fs::remove_file(&copy);
                rejected(error)
            })?;
        let reloaded = Reloaded {
            name: plugin.name().to_owned(),
            path: path.to_owned(),
            generation: 1,
            version: plugin.version().clone(),
            previous: None,
            handed_over: false,
        };
        registry.add(plugin).map_err(|plugin| {
            let first = registry
                .get(plugin.name())
                .map_or_else(|| path.to_owned(), |first| first.path().to_owned());
            rejected(
                LoadErrorKind::DuplicateName {
                    name: plugin.name().to_owned(),
                    first,
                }
                .at(path.to_owned()),
            )
        })?;
        Ok(reloaded)
    }
}

/// The most bytes of state one generation may hand to the next.
const MAX_SAVED_STATE: usize = 64 << 20;

impl<I: Interface> Plugin<I> {
    /// What the plugin saves for its next generation, if it saves anything.
    /// A failure is logged: the next generation then starts afresh.
    pub(crate) fn save_state(&self) -> Option<Saved> {
        let saved = match (self.extensions, self.core().remote()) {
            (Some(handover), _) => {
                crate::exit_guard::guarded(self.path(), || dropin::abi::save_state(handover))
            }
            (_, Some(remote)) => remote
                .save_state()
                .map_err(|error| error.message().to_owned()),
            (None, None) => Ok(None),
        };
        let saved = saved.map(|state| {
            state.filter(|(_, bytes)| {
                let fits = bytes.len() <= MAX_SAVED_STATE;
                if !fits {
                    log::warn!(
                        target: &dropin::log_target(self.name()),
                        "saved {} bytes of state, more than the {MAX_SAVED_STATE} a reload hands \
                         over: the next generation starts afresh",
                        bytes.len()
                    );
                }
                fits
            })
        });
        saved.unwrap_or_else(|error| {
            log::warn!(
                target: &dropin::log_target(self.name()),
                "could not save its state for the next generation, which starts afresh: {error}"
            );
            None
        })
    }
}
