//! Surveying a folder and recording a lock file: each file judged from its
//! description, read as data; no plugin code runs, in this process or in
//! any other.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use dropin::{Interface, description::Description};

use crate::{
    digest::hex,
    error::{LoadError, LoadErrorKind},
    trust::lockfile::{LockEntry, Lockfile},
    trust::snapshot::SnapshotDir,
};

use super::*;

impl<I: Interface> Loader<I> {
    /// What [`load`](Self::load) would find in the folder, up to the point
    /// where a plugin's code would first run, without running any: each file
    /// goes through the checks that read it as data (permissions, a private
    /// copy, hashed; the lock file in force; its object headers; its
    /// description and the host's rules on it: interface, versions, method
    /// signatures, host requirement, how it was built, the name the lock
    /// file recorded, a unique name). No probe opens it and nothing maps it.
    ///
    /// What only running a plugin can show is not found: whether its
    /// constructors survive being opened, whether its root module agrees
    /// with its description, whether its `init` succeeds.
    ///
    /// # Errors
    ///
    /// The folder-level errors of [`load`](Self::load).
    pub fn survey(&self) -> Result<Survey, LoaderError> {
        let lockfile = self.lockfile()?;
        self.survey_under(lockfile.as_ref())
    }

    /// Records the folder's plugin files for a lock file: a
    /// [`survey`](Self::survey) that ignores any lock file in force, so no
    /// plugin code runs anywhere. What is recorded is what each description
    /// says. Whether the constructors survive being opened, and whether the
    /// root module agrees with the description, are found when a file is
    /// loaded: a lock entry is its reviewer's approval to open it. Nothing
    /// is written: [`Recording::lockfile`] is what to write.
    ///
    /// # Errors
    ///
    /// The folder-level errors of [`load`](Self::load).
    pub fn record(&self) -> Result<Recording, LoaderError> {
        let survey = self.survey_under(None)?;
        Ok(Recording {
            entries: survey.plugins.iter().map(Described::lock_entry).collect(),
            refused: survey.refused,
        })
    }

    fn survey_under(&self, lockfile: Option<&Lockfile>) -> Result<Survey, LoaderError> {
        let candidates = self.candidates()?;
        self.check_config()?;
        let index = lockfile.map(lock_index);
        let snapshots = self.snapshot_dir(&metadata_of(&candidates))?;
        let mut survey = Survey {
            plugins: Vec::new(),
            refused: Vec::new(),
        };
        let mut names: HashMap<String, PathBuf> = HashMap::new();
        for path in candidates {
            let snapshots = snapshots
                .as_ref()
                .expect("made for a folder with candidates");
            match self.describe_file(snapshots, index.as_ref(), &names, &path) {
                Ok(described) => {
                    names.insert(described.description.plugin_name.clone(), path);
                    survey.plugins.push(described);
                }
                Err(error) => {
                    log::debug!(target: LOG_TARGET, "refused: {error}");
                    survey.refused.push(error);
                }
            }
        }
        Ok(survey)
    }

    /// One file through the stages of a load that read it as data; its
    /// private copy goes either way.
    fn describe_file(
        &self,
        snapshots: &SnapshotDir,
        lockfile: Option<&LockIndex<'_>>,
        names: &HashMap<String, PathBuf>,
        path: &Path,
    ) -> Result<Described, LoadError> {
        let staged = self.stage(snapshots, lockfile, path, true, None)?;
        let copy = staged.copied.path.clone();
        let judged = self.judge(staged);
        let _ = fs::remove_file(&copy);
        let judged = judged?;
        if let Some(first) = names.get(&judged.name) {
            return Err(LoadErrorKind::DuplicateName {
                name: judged.name,
                first: first.clone(),
            }
            .at(path.to_owned()));
        }
        // As a loaded plugin's: the interface's later methods, by whether the
        // plugin's table reaches them (the signatures matched).
        let provided = judged.description.methods.len();
        let (mut capabilities, mut missing) = (Vec::new(), Vec::new());
        for (i, method) in I::METHODS.iter().enumerate().skip(I::REQUIRED) {
            let pair = (method.name.as_str(), method.since.as_str());
            if i < provided {
                capabilities.push(pair);
            } else {
                missing.push(pair);
            }
        }
        Ok(Described {
            isolated: self.probe.is_some()
                && self
                    .isolation
                    .applies(Some(&judged.name), &judged.path, judged.locked),
            sha256: hex(&judged.digest.expect("hashed when asked")),
            locked: judged.locked,
            path: judged.path,
            description: judged.description,
            capabilities,
            missing,
        })
    }
}

/// A plugin file read once, with the loader's rules on opening it (a
/// regular file, writable by nobody else unless `check_permissions` is
/// off, at most [`DEFAULT_MAX_FILE_SIZE`] bytes) and on its object headers:
/// the SHA-256 of its bytes and the description read from those same
/// bytes. Nothing of it runs.
/// For tools that judge files for an [`Application`](crate::Application);
/// a [`Loader`] does the same through its private copies.
///
/// # Errors
///
/// The [`LoadError`] a loader gives for a file it cannot open or whose
/// headers it refuses, [`LoadErrorKind::Changing`] for a file written while
/// it is read, or [`LoadErrorKind::InvalidDescription`] for bytes without a
/// readable description.
pub fn describe_file(path: &Path, check_permissions: bool) -> Result<DescribedFile, LoadError> {
    use std::io::Read as _;
    let source = crate::trust::source::open(path, check_permissions, DEFAULT_MAX_FILE_SIZE)
        .map_err(|refused| LoadError::opening(path, refused))?;
    let unreadable = |source| LoadErrorKind::Unreadable { source }.at(path.to_owned());
    // The object headers first, as a loader judges them (no executable
    // stack), then the bytes; a file that changed in between is refused, as
    // a loader refuses one that changes while it is copied.
    crate::inspect::verify::verify_file(&source.file)
        .map_err(|source| LoadErrorKind::InvalidLibrary { source }.at(path.to_owned()))?;
    let mut bytes = Vec::new();
    (&source.file)
        .take(DEFAULT_MAX_FILE_SIZE)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    let after = source.file.metadata().map_err(unreadable)?;
    if !crate::trust::source::unchanged(&source.meta, &after) || bytes.len() as u64 != after.len() {
        return Err(LoadErrorKind::Changing.at(path.to_owned()));
    }
    let description = crate::inspect::description::description_of(&bytes)
        .map_err(|source| LoadErrorKind::InvalidDescription { source }.at(path.to_owned()))?;
    Ok(DescribedFile {
        sha256: hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
        description,
    })
}

/// What [`describe_file`] read.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DescribedFile {
    /// The SHA-256 of the bytes read, lowercase hexadecimal.
    pub sha256: String,
    /// The description read from those bytes.
    pub description: Description,
}

/// What [`Loader::survey`] found: the plugins that pass every check made
/// without running them, and why the others did not.
#[derive(Debug)]
#[non_exhaustive]
pub struct Survey {
    /// One per file that passed, in the folder's order.
    pub plugins: Vec<Described>,
    /// The files that did not pass, each with its reason.
    pub refused: Vec<LoadError>,
}

/// A plugin file as its description shows it, judged by a loader's rules;
/// nothing of it has run.
#[derive(Debug, Clone)]
pub struct Described {
    path: PathBuf,
    sha256: String,
    locked: bool,
    isolated: bool,
    description: Description,
    capabilities: Vec<(&'static str, &'static str)>,
    missing: Vec<(&'static str, &'static str)>,
}

impl Described {
    /// The file, in the plugins folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The SHA-256 of the bytes that were judged, lowercase hexadecimal.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// What the file says of itself.
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The plugin's name, as its description gives it.
    pub fn name(&self) -> &str {
        &self.description.plugin_name
    }

    /// The plugin's version (semver, checked).
    pub fn version(&self) -> &str {
        &self.description.plugin_version
    }

    /// The interface version it was built against (semver, checked).
    pub fn interface_version(&self) -> &str {
        &self.description.interface_version
    }

    /// The host versions it supports; `None` for any.
    pub fn host_requirement(&self) -> Option<&str> {
        // As the policy read it: whitespace around it is not part of it.
        Some(self.description.host_requirement.trim()).filter(|req| !req.is_empty())
    }

    /// Whether the lock file in force approves it.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// Whether the loader would run it in a process of its own.
    pub fn is_isolated(&self) -> bool {
        self.isolated
    }

    /// The methods of the loader's interface, added after its first
    /// release, that the plugin has, as `(name, since)`.
    pub fn capabilities(&self) -> &[(&'static str, &'static str)] {
        &self.capabilities
    }

    /// The methods of the loader's interface, added after its first
    /// release, that the plugin lacks, as `(name, since)`.
    pub fn missing_capabilities(&self) -> &[(&'static str, &'static str)] {
        &self.missing
    }

    /// Its entry in a lock file.
    pub fn lock_entry(&self) -> LockEntry {
        LockEntry {
            file: self
                .path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            sha256: self.sha256.clone(),
            name: self.description.plugin_name.clone(),
            version: self.description.plugin_version.clone(),
            interface_version: self.description.interface_version.clone(),
        }
    }
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
