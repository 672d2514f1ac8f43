//! Recording a lock file: each file through the checks that run no plugin
//! code in the host, then opened by the probe.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use dropin::Interface;

use crate::{
    child::probe::Prober,
    digest::hex,
    error::{LoadError, LoadErrorKind},
    trust::lockfile::{LockEntry, Lockfile},
    trust::snapshot::SnapshotDir,
};

use super::*;

/// The target of this module's log records: the module it was split from,
/// which `RUST_LOG` filters name.
const LOG_TARGET: &str = "dropin_host::loader";

impl<I: Interface> Loader<I> {
    /// Records the folder's plugin files for a lock file, without running
    /// any of their code in this process: each file goes through the checks
    /// of [`load`](Self::load) up to the probe (permissions, a private copy,
    /// hashed, its object headers, its description and the host's rules on
    /// it: interface, versions, host requirement, how it was built, a unique
    /// name), then the probe process opens it and says whether it survived.
    /// What is recorded is what the description says. Method signatures, and
    /// the root module's agreement with the description, are checked when
    /// the file is loaded, since that needs the library mapped. Any existing lock file is
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
                    log::debug!(target: LOG_TARGET, "not recorded: {error}");
                    recording.refused.push(error);
                }
            }
        }
        Ok(recording)
    }

    pub(super) fn record_file(
        &self,
        snapshots: &SnapshotDir,
        prober: &mut Prober,
        names: &HashMap<String, PathBuf>,
        path: &Path,
    ) -> Result<LockEntry, LoadError> {
        // The stages of a load, to the probe's verdict: this file is not
        // locked, and nothing else will open it.
        let Staged {
            copied, headers, ..
        } = self.stage(snapshots, None, path, true, None)?;
        let sha256 = hex(&copied.sha256.expect("hashed when asked"));
        // Headers first, under the host's policy, then the description:
        // no probe for bytes the host refuses from these alone. The copy
        // goes either way.
        let judged = self
            .judge_headers(headers, path, &copied.path)
            .and_then(|_| self.described(path, &copied.path))
            .and_then(|(description, name)| {
                if let Some(first) = names.get(&name) {
                    return Err(LoadErrorKind::DuplicateName {
                        name,
                        first: first.clone(),
                    }
                    .at(path.to_owned()));
                }
                let report = prober
                    .check(path, &copied.path)
                    .map_err(|how| LoadErrorKind::Probe { how }.at(path.to_owned()))?;
                self.judge_probe(path, &report, false)?;
                Ok((description, name))
            });
        let _ = fs::remove_file(&copied.path);
        let (description, name) = judged?;
        Ok(LockEntry {
            file: path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            sha256,
            name,
            version: description.plugin_version,
            interface_version: description.interface_version,
        })
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
