//! One file's way through the checks, in order: open, copy, lock file,
//! headers, probe, then mapping and the policy (`Loader::stage`,
//! `Loader::admit`), and the private snapshot folder and copies.

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::atomic::Ordering,
};

use dropin::{Interface, description::Description};

use crate::{
    child::isolation::{self},
    child::probe::{Prober, Report},
    digest::hex,
    error::{LoadError, LoadErrorKind},
    inspect::description::read_description_bytes,
    load::{self, Plugin, Saved},
    registry::Registry,
    sys,
    trust::cache::Cache,
    trust::lockfile::LockEntry,
    trust::snapshot::{Copied, SnapshotDir},
    trust::source,
};

use super::{builder::default_snapshot_roots, *};

/// Steps 1 to 3 done (ARCHITECTURE.md): a file opened once, its lock-file
/// entry found, and a private copy made; nothing of it has run.
pub(super) struct Staged<'l> {
    pub(super) path: PathBuf,
    pub(super) copied: Copied,
    pub(super) locked: Option<&'l LockEntry>,
    /// The file as it was copied.
    pub(super) stamp: source::Stamp,
    pub(super) headers: Headers<'l>,
    /// The description's bytes, as the snapshot cache recorded them when
    /// this build proved the kept copy.
    pub(super) cached_description: Option<Vec<u8>>,
}

/// What is known of a staged copy's object headers (step 5).
pub(super) enum Headers<'l> {
    /// Not read yet: bytes the lock file has yet to approve are read in
    /// `approve`, after the hash and before the description.
    Later,
    /// Read ahead, which runs nothing: bytes the lock file approves, or,
    /// without a lock entry, bytes no probe opens first. `prove` names the
    /// kept copy to record as proven once its root module passes the layout
    /// check, when its headers passed without the policy's help.
    Read {
        verdict: Result<(), LoadError>,
        prove: Option<(&'l Cache, String)>,
    },
    /// Proven by this host build in an earlier run (a kept copy of the
    /// snapshot cache): neither they nor the root module's layout are
    /// checked again.
    Proven,
}

/// Steps 4 to 6 done: the copy's hash matches its lock entry, its headers
/// and its description pass the host's policy, and, without a lock entry,
/// a probe survived opening it. Nothing of it has run in this process.
pub(super) struct Approved<'l> {
    pub(super) path: PathBuf,
    pub(super) copy: PathBuf,
    pub(super) digest: Option<[u8; 32]>,
    stamp: source::Stamp,
    headers: Headers<'l>,
    /// Whether the lock file approved it.
    pub(super) locked: bool,
    /// Its name, as its description says.
    pub(super) name: String,
    /// What the file says of itself, as data: once its library is mapped,
    /// its root module must say the same.
    pub(super) description: Description,
    /// The bytes it was decoded from.
    description_bytes: Vec<u8>,
}

impl<I: Interface> Loader<I> {
    /// A file's first stage, which runs none of its code: one open handle,
    /// its lock-file entry, and a private copy (hashed if the lock file needs
    /// the hash).
    pub(super) fn stage<'l>(
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
                Some(lockfile.get(&*file).copied().ok_or_else(|| {
                    LoadErrorKind::NotLocked {
                        lockfile: self.lockfile_path(),
                    }
                    .at(path.to_owned())
                })?)
            }
        };
        // A copy this user's earlier run verified against the same lock
        // entry, of the same unchanged file: mapped as it is.
        let stamp = source::Stamp::of(&source.meta);
        if let (Some(cache), Some(entry)) = (cache, locked)
            && let Some(sha256) = parse_hex(&entry.sha256)
            && let Some(kept) = cache.find(&stamp, &entry.sha256, source.meta.len())
        {
            log::debug!(target: LOG_TARGET,
                "{}: its verified copy {} is kept{}",
                path.display(),
                kept.path.display(),
                if kept.proven {
                    ", its headers and layout proven by this build"
                } else {
                    ""
                }
            );
            let headers = if kept.proven {
                Headers::Proven
            } else {
                let (verdict, strict) = self.check_headers(path, &kept.path);
                Headers::Read {
                    verdict,
                    prove: strict.then_some((cache, kept.name)),
                }
            };
            return Ok(Staged {
                path: path.to_owned(),
                headers,
                cached_description: kept.description,
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
        // in `approve`, after the hash and before the description.
        let approved = match (locked, copied.sha256) {
            (Some(entry), Some(sha256)) => hex(&sha256).eq_ignore_ascii_case(&entry.sha256),
            (Some(_), None) => false,
            (None, _) => self.probe.is_none(),
        };
        let headers = if approved {
            let (verdict, strict) = self.check_headers(path, &copied.path);
            let mut prove = None;
            if let (Some(cache), Some(entry), Ok(())) = (cache, locked, &verdict)
                && let Some(name) = cache.keep(&copied.path, &stamp, &entry.sha256)
                && strict
            {
                prove = Some((cache, name));
            }
            Headers::Read { verdict, prove }
        } else {
            Headers::Later
        };
        Ok(Staged {
            path: path.to_owned(),
            copied,
            locked,
            stamp,
            headers,
            cached_description: None,
        })
    }

    /// The object headers' check of `copy`, the private copy of `path`,
    /// under the host's policy, and whether they passed without the policy's
    /// help.
    pub(super) fn check_headers(&self, path: &Path, copy: &Path) -> (Result<(), LoadError>, bool) {
        let found = crate::inspect::verify::verify_library(copy);
        let strict = found.is_ok();
        (load::judge_headers(path, found, &self.policy), strict)
    }

    /// A staged file's checks, then the plugin into `registry`: its name
    /// must be free. The name, once its description gives it, goes into
    /// `named`, whether or not the plugin then loads.
    pub(super) fn finish(
        &self,
        registry: &mut Registry<I>,
        prober: Option<&mut Prober>,
        staged: Staged<'_>,
        named: &std::cell::RefCell<std::collections::HashSet<String>>,
    ) -> Result<(), LoadError> {
        let path = staged.path.clone();
        let plugin = {
            let unique = unique_name(registry, &path);
            self.admit(
                prober,
                staged,
                &|name| {
                    named.borrow_mut().insert(name.to_owned());
                    unique(name)
                },
                &|_| None,
                &Default::default(),
            )?
        };
        registry.insert(plugin);
        Ok(())
    }

    /// A staged file's checks, in this thread, and then the plugin: it is
    /// approved (the lock file or the probe, and the policy on what the
    /// probe read), then started in a process of its own or mapped here and
    /// initialised. `claim` is asked for its name as soon as the name is
    /// known, before the plugin's own code runs; its `init` receives what
    /// `previous` gives (told whether the plugin will run isolated).
    /// `mapped` is set once the file is mapped in this process, where it
    /// stays whatever happens next.
    pub(super) fn admit(
        &self,
        prober: Option<&mut Prober>,
        staged: Staged<'_>,
        claim: &dyn Fn(&str) -> Result<(), LoadError>,
        previous: &dyn Fn(bool) -> Option<Saved>,
        mapped: &std::cell::Cell<bool>,
    ) -> Result<Plugin<I>, LoadError> {
        let approved = self.approve(prober, staged, claim)?;
        if self
            .isolation
            .applies(Some(&approved.name), &approved.path, approved.locked)
            && let Some(probe) = &self.probe
        {
            return self.start_isolated(probe, approved, claim, previous);
        }
        let (plugin, path) = self.map(approved, mapped)?;
        self.initialize(plugin, &path, claim, previous)
    }

    /// Steps 4 to 6, none of which runs the file's code here: what
    /// [`judge`](Self::judge) finds, the name claimed, and, for bytes the
    /// lock file did not approve, the probe, which says only whether
    /// opening the file is survived.
    fn approve<'l>(
        &self,
        prober: Option<&mut Prober>,
        staged: Staged<'l>,
        claim: &dyn Fn(&str) -> Result<(), LoadError>,
    ) -> Result<Approved<'l>, LoadError> {
        let approved = self.judge(staged)?;
        claim(&approved.name)?;
        // Bytes the lock file approved were approved by someone; any others
        // are opened in a probe process first, when the loader has one.
        if let (false, Some(prober)) = (approved.locked, prober) {
            let report = prober
                .check(&approved.path, &approved.copy)
                .map_err(|how| LoadErrorKind::Probe { how }.at(approved.path.clone()))?;
            let opened_here = !self
                .isolation
                .applies(Some(&approved.name), &approved.path, false);
            self.judge_probe(&approved.path, &report, opened_here)?;
        }
        Ok(approved)
    }

    /// Steps 4 to 6 as data, which run nothing of the file anywhere: the
    /// hash against the lock entry; the headers; the file's description,
    /// which the host's policy judges (interface, versions, signatures, host
    /// requirement, how it was built); and the name the lock entry recorded,
    /// which must be the one the description gives.
    pub(super) fn judge<'l>(&self, staged: Staged<'l>) -> Result<Approved<'l>, LoadError> {
        let Staged {
            path,
            copied,
            locked,
            stamp,
            headers,
            cached_description,
        } = staged;
        let (copy, digest) = (copied.path, copied.sha256);
        if let Some(entry) = locked {
            entry.check_hash(
                &path,
                &hex(&digest.expect("hashed because a lock file is in force")),
            )?;
        }
        // The headers, under the host's policy, before anything reads the
        // bytes they describe.
        let headers = self.judge_headers(headers, &path, &copy)?;
        let (description, description_bytes, name) =
            self.described(&path, &copy, cached_description)?;
        // The name the lock file recorded is the one its reviewer saw.
        if let Some(entry) = locked {
            entry.check_name(&path, &name)?;
        }
        Ok(Approved {
            name,
            locked: locked.is_some(),
            description,
            description_bytes,
            path,
            copy,
            digest,
            stamp,
            headers,
        })
    }

    /// Step 5: the headers of `copy`, the private copy of `path`, judged
    /// now if they were left for later; an error if they fail. What is
    /// known of them, for the steps after.
    pub(super) fn judge_headers<'l>(
        &self,
        headers: Headers<'l>,
        path: &Path,
        copy: &Path,
    ) -> Result<Headers<'l>, LoadError> {
        match headers {
            Headers::Later => {
                self.check_headers(path, copy).0?;
                Ok(Headers::Read {
                    verdict: Ok(()),
                    prove: None,
                })
            }
            Headers::Read {
                verdict: Err(error),
                ..
            } => Err(error),
            judged => Ok(judged),
        }
    }

    /// Step 6: the description of `copy`, the private copy of `path`, read
    /// as data and judged by the host's policy (interface, versions, host
    /// requirement, how it was built); with the plugin's name.
    pub(super) fn described(
        &self,
        path: &Path,
        copy: &Path,
        cached: Option<Vec<u8>>,
    ) -> Result<(Description, Vec<u8>, String), LoadError> {
        let side = load::Side::of::<I>();
        // A kept copy this build proved: its description's bytes as the
        // cache recorded them from it (the copy never changes), else read
        // from the copy.
        let cached = cached.and_then(|bytes| {
            dropin::description::decode(&bytes)
                .ok()
                .map(|description| (description, bytes))
        });
        let (description, bytes) = match cached {
            Some(cached) => cached,
            None => read_description_bytes(copy)
                .map_err(|error| load::unreadable_description(&side, path, error))?,
        };
        // Every method's signature too: a plugin whose methods the host would
        // misread is refused before anything opens it (once mapped, its root
        // module must list the same methods).
        let checked = load::judge_description(&side, path, &description, &self.policy)?;
        let name = checked.name.to_owned();
        Ok((description, bytes, name))
    }

    /// Step 6: what a probe that survived the file says about it: only why
    /// it stopped, if it did, which is final unless the host opens the file
    /// itself afterwards (`opened_here`, in-process, where the host words
    /// it); then it is the kind the host would have found. Nothing else a
    /// probe says is taken: its process is the plugin's.
    pub(super) fn judge_probe(
        &self,
        path: &Path,
        report: &Report,
        opened_here: bool,
    ) -> Result<(), LoadError> {
        match report.refusal() {
            Some(refusal) if !opened_here => Err(refusal
                .clone()
                .into_kind::<I>(&self.policy, |reason| LoadErrorKind::ProbeRefused {
                    reason,
                })
                .at(path)),
            _ => Ok(()),
        }
    }

    /// Whether `plugin`, as its root module describes it, is the plugin its
    /// file's `description` describes.
    fn agrees(
        &self,
        plugin: &Plugin<I>,
        description: &Description,
        path: &Path,
    ) -> Result<(), LoadError> {
        if let Some(kind) = crate::child::not_loaded::agreement(
            [
                &description.plugin_name,
                &description.plugin_version,
                &description.interface_version,
            ],
            plugin,
        ) {
            return Err(kind.at(path));
        }
        // The methods, where the root module is mapped here (an isolated
        // plugin's are compared in its own process, against the host's).
        if let Some(module) = plugin.module {
            let found: Vec<dropin::description::Method> = dropin::abi::items(module.methods())
                .iter()
                .map(|entry| dropin::description::Method::of(&entry.desc))
                .collect();
            if found != description.methods {
                let list = |methods: &[dropin::description::Method]| {
                    methods
                        .iter()
                        .map(|method| format!("{method} (since {})", method.since))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(LoadErrorKind::Disagrees {
                    field: "methods",
                    described: list(&description.methods),
                    found: list(&found),
                }
                .at(path));
            }
        }
        Ok(())
    }

    /// Step 8, isolated: the plugin started, and initialised, in a process
    /// of its own; nothing of it is mapped here.
    fn start_isolated(
        &self,
        probe: &crate::child::probe::Probe,
        approved: Approved<'_>,
        claim: &dyn Fn(&str) -> Result<(), LoadError>,
        previous: &dyn Fn(bool) -> Option<Saved>,
    ) -> Result<Plugin<I>, LoadError> {
        let Approved {
            path,
            copy,
            digest,
            stamp,
            name,
            description,
            ..
        } = approved;
        let config = self.configs.of(&name);
        let mut plugin = isolation::start::<I>(
            &probe.launcher(),
            &self.isolation,
            &path,
            &copy,
            digest,
            &self.policy,
            config,
            &description,
            previous(true),
            self.services.as_ref(),
        )?;
        self.agrees(&plugin, &description, &path)?;
        claim(plugin.name())?;
        plugin.stamp = Some(stamp);
        log::info!(target: LOG_TARGET,
            "loaded {} plugin '{}' {} from {}, isolated in a process of its own",
            I::NAME,
            plugin.name(),
            plugin.version(),
            path.display()
        );
        Ok(plugin)
    }

    /// Step 7: the copy mapped in this process (its constructors run) and
    /// its root module, versions and signatures checked; a kept copy whose
    /// checks passed is recorded as proven. Returns the plugin, not yet
    /// initialised, and the file's path.
    fn map(
        &self,
        approved: Approved<'_>,
        mapped: &std::cell::Cell<bool>,
    ) -> Result<(Plugin<I>, PathBuf), LoadError> {
        let Approved {
            path,
            copy,
            digest,
            stamp,
            headers,
            description,
            description_bytes,
            ..
        } = approved;
        // The one place a plugin's library is mapped in this process: only
        // for a loader the application vouched for (`LoaderBuilder::build`,
        // an `unsafe fn`).
        if !self.in_process {
            return Err(LoadErrorKind::Isolated {
                reason: "the loader runs every plugin isolated, and has no probe to start its \
                         process with"
                    .to_owned(),
            }
            .at(path));
        }
        // Libraries are never unloaded: past a limit, refuse to map more
        // rather than let the process run out of memory mappings.
        if MAPPED.fetch_add(1, Ordering::Relaxed) >= self.max_mapped {
            MAPPED.fetch_sub(1, Ordering::Relaxed);
            return Err(LoadErrorKind::TooMany {
                limit: self.max_mapped,
            }
            .at(path));
        }
        mapped.set(true);
        let (verdict, proven, prove) = match headers {
            Headers::Later => (None, false, None),
            Headers::Read { verdict, prove } => (Some(verdict), false, prove),
            Headers::Proven => (Some(Ok(())), true, None),
        };
        // Opening runs the library's constructors: an `exit` there must not
        // end the host as a success.
        let mut plugin = crate::exit_guard::guarded(&path, || {
            load::open::<I>(&path, &copy, digest, &self.policy, verdict, proven)
        })?;
        self.agrees(&plugin, &description, &path)?;
        // Its bytes passed every check that reads nothing else.
        if let Some((cache, name)) = prove {
            cache.prove(name, &description_bytes);
        }
        plugin.stamp = Some(stamp);
        Ok((plugin, path))
    }

    /// Step 8, in this process: the plugin's name claimed, then its `init`
    /// run with its configuration, its services and what `previous` gives.
    fn initialize(
        &self,
        mut plugin: Plugin<I>,
        path: &Path,
        claim: &dyn Fn(&str) -> Result<(), LoadError>,
        previous: &dyn Fn(bool) -> Option<Saved>,
    ) -> Result<Plugin<I>, LoadError> {
        // Checked before the plugin's own initialisation runs: a duplicate
        // never gets to set anything up.
        claim(plugin.name())?;
        let config = self.configs.of(plugin.name());
        let previous = previous(false);
        // The plugin's own table: its calls say who they come from, and are
        // refused once it is disabled.
        let services = self.services.as_ref().map(|services| {
            let (table, refusal) = services.table_for(plugin.name());
            plugin.core().set_refusal(refusal);
            table
        });
        // `init` runs the plugin's code: an `exit` there must not end the
        // host as a success either.
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
        log::info!(target: LOG_TARGET,
            "loaded {} plugin '{}' {} from {}",
            I::NAME,
            plugin.name(),
            plugin.version(),
            path.display()
        );
        Ok(plugin)
    }

    /// The private snapshot folder for `candidates` (none if there are
    /// none), checked once for the whole folder: a folder that cannot be
    /// made, whose file system is mounted `noexec`, or that has no room for
    /// the copies would otherwise fail every plugin with the dynamic
    /// loader's or the file system's message.
    pub(super) fn snapshot_dir(
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
                    log::debug!(target: LOG_TARGET, "{}; trying the next default", crate::ErrorChain(&error));
                }
                Err(error) => return Err(error),
            }
        }
    }

    pub(super) fn snapshot_dir_in(
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
    pub(super) fn copy(
        &self,
        snapshots: &SnapshotDir,
        source: &mut source::Source,
        path: &Path,
        hash: bool,
    ) -> Result<Copied, LoadError> {
        let failed = |source: io::Error| match source.kind() {
            io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::FileTooLarge => LoadErrorKind::Snapshot {
                root: snapshots.root().to_owned(),
                source,
            }
            .at(path.to_owned()),
            _ => LoadErrorKind::Unreadable { source }.at(path.to_owned()),
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
                return Err(LoadErrorKind::NotAFile {
                    found: "a virtual file whose size reads as 0 (as in /proc or /sys)",
                }
                .at(path.to_owned()));
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
                return Err(LoadErrorKind::Changing.at(path.to_owned()));
            }
            source.meta = after;
        }
    }
}
