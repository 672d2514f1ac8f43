//! Loader layer: watching the plugins folder: what changes there is reloaded.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    path::PathBuf,
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    time::{Duration, Instant},
};

use dropin::Interface;
use notify::{
    EventKind, RecursiveMode, Watcher as _,
    event::{AccessKind, AccessMode, ModifyKind},
};

use crate::{
    LOCKFILE_NAME, Loader, LoaderError, Registry, ReloadError, Reloaded,
    trust::discover::is_candidate_name,
};

/// How long the folder must stay quiet before what changed is reloaded: a
/// deployment that renames several files in place lands as one batch.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(200);

/// How long a file written in place may go without a write before it counts
/// as finished even though its writer never closed it.
const WRITER_GONE: Duration = Duration::from_secs(5);

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {}", dir.display())]
pub struct WatchError {
    dir: PathBuf,
    #[source]
    source: notify::Error,
}

/// What a [`Watch`] reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum WatchEvent {
    /// A plugin switched to a new generation, or a new one loaded.
    Reloaded(Reloaded),
    /// A changed or new file failed a check; a plugin it would have
    /// replaced keeps serving.
    Refused(ReloadError),
    /// The folder or its lock file failed a check: nothing was reloaded.
    Failed(LoaderError),
}

impl fmt::Display for WatchEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reloaded(reloaded) => match &reloaded.previous {
                Some(previous) => write!(
                    f,
                    "reloaded '{}' {} (was {previous}) from {}: generation {}{}",
                    reloaded.name,
                    reloaded.version,
                    reloaded.path.display(),
                    reloaded.generation,
                    if reloaded.handed_over {
                        ", state handed over"
                    } else {
                        ""
                    }
                ),
                None => write!(
                    f,
                    "loaded '{}' {} from {}: new in the folder",
                    reloaded.name,
                    reloaded.version,
                    reloaded.path.display()
                ),
            },
            Self::Refused(error) => write!(f, "{}", crate::ErrorChain(error)),
            Self::Failed(error) => write!(f, "{}", crate::ErrorChain(error)),
        }
    }
}

/// The plugins folder of a [`Loader`], watched for changes, each reloaded
/// into a [`Registry`]: see [`Loader::watch`].
///
/// It is an iterator of [`WatchEvent`]s: `next` waits for the next one;
/// [`next_within`](Self::next_within) waits at most a while. The reloads run
/// on the thread that asks, so that thread decides when they happen; other
/// threads keep calling plugins meanwhile. Dropping it stops watching.
pub struct Watch<'a, I: Interface> {
    loader: &'a Loader<I>,
    registry: &'a Registry<I>,
    changes: Receiver<notify::Result<notify::Event>>,
    _watcher: notify::RecommendedWatcher,
    settle: Duration,
    /// Files written in place and not yet closed, with their last write.
    writing: HashMap<PathBuf, Instant>,
    /// When the last change arrived, if one is waiting to be reloaded.
    pending: Option<Instant>,
    lockfile_changed: bool,
    ready: VecDeque<WatchEvent>,
}

impl<I: Interface> fmt::Debug for Watch<'_, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("dir", &self.loader.dir())
            .field("settle", &self.settle)
            .field("writing", &self.writing.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<I: Interface> Loader<I> {
    /// Watches the plugins folder and reloads into `registry` whatever
    /// changes there, as [`reload_changed`](Self::reload_changed) does: a
    /// plugin whose file was replaced or rewritten, a plugin new in the
    /// folder; every file after every check of a first load.
    ///
    /// Changes are batched until the folder has been quiet for
    /// [`DEFAULT_SETTLE`]; a file being written in place waits until its
    /// writer closes it (or stops writing for 5 s), so it is never read
    /// half-written. A change of the lock file retries every file it
    /// refused.
    ///
    /// # Example
    ///
    /// One thread reloads what changes while others call the plugins; a
    /// [`Live`](crate::Live) reference follows the reloads:
    ///
    /// ```no_run
    /// # mod transform_interface {
    /// #     #[dropin::interface]
    /// #     pub trait Transform: Send + Sync {
    /// #         fn apply(&self, text: &str) -> String;
    /// #     }
    /// # }
    /// use dropin_host::{Loader, WatchEvent};
    /// use transform_interface::TransformPlugin;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let builder = Loader::<TransformPlugin>::builder().dir("plugins");
    /// // SAFETY: the plugins in `plugins/`, now and as they change, are our
    /// // own builds, which we trust to run in this process as our own code.
    /// let loader = unsafe { builder.build() };
    /// let report = loader.load()?;
    /// let registry = &report.registry;
    /// std::thread::scope(|scope| {
    ///     scope.spawn(|| {
    ///         let upper = registry.live("upper").expect("loaded");
    ///         loop {
    ///             // Each call reaches the generation current at that moment.
    ///             println!("{}", upper.apply("text").unwrap_or_default());
    ///             std::thread::sleep(std::time::Duration::from_secs(1));
    ///         }
    ///     });
    ///     for event in loader.watch(registry).expect("the folder can be watched") {
    ///         match event {
    ///             WatchEvent::Reloaded(reloaded) => println!("now at generation {}", reloaded.generation),
    ///             refused => eprintln!("{refused}"),
    ///         }
    ///     }
    /// });
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`WatchError`] if the operating system refuses to watch the folder.
    pub fn watch<'a>(&'a self, registry: &'a Registry<I>) -> Result<Watch<'a, I>, WatchError> {
        let (send, changes) = mpsc::channel();
        let failed = |source| WatchError {
            dir: self.dir().to_owned(),
            source,
        };
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = send.send(event);
        })
        .map_err(failed)?;
        watcher
            .watch(self.dir(), RecursiveMode::NonRecursive)
            .map_err(failed)?;
        Ok(Watch {
            loader: self,
            registry,
            changes,
            _watcher: watcher,
            settle: DEFAULT_SETTLE,
            writing: HashMap::new(),
            pending: None,
            lockfile_changed: false,
            ready: VecDeque::new(),
        })
    }
}

impl<I: Interface> Watch<'_, I> {
    /// How long the folder must stay quiet before changes are reloaded
    /// (default [`DEFAULT_SETTLE`]).
    #[must_use]
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// The next event, waiting at most `timeout` for it; `None` if nothing
    /// was reloaded or refused by then.
    pub fn next_within(&mut self, timeout: Duration) -> Option<WatchEvent> {
        let deadline = crate::child::deadline_in(timeout);
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let now = Instant::now();
            if self.is_settled(now) {
                self.reload();
                continue;
            }
            if deadline <= now {
                return None;
            }
            // Until the folder settles (and its writers close their files),
            // or the deadline.
            let wake = match self.pending {
                Some(last) => {
                    let writers = self.writing.values().map(|write| *write + WRITER_GONE);
                    writers.fold(last + self.settle, Instant::max).min(deadline)
                }
                None => deadline,
            };
            match self
                .changes
                .recv_timeout(wake.saturating_duration_since(now))
            {
                Ok(Ok(event)) => self.note(event),
                // The watcher lost events (a queue overflow): look at
                // everything.
                Ok(Err(error)) => {
                    log::debug!("watching {}: {error}", self.loader.dir().display());
                    self.pending = Some(Instant::now());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if deadline <= Instant::now() {
                        return None;
                    }
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                }
            }
        }
    }

    /// Whether changes are waiting and the folder has settled: quiet for
    /// the settle time, no file half-written.
    fn is_settled(&mut self, now: Instant) -> bool {
        self.writing.retain(|_, last| now < *last + WRITER_GONE);
        self.pending
            .is_some_and(|last| now >= last + self.settle && self.writing.is_empty())
    }

    fn note(&mut self, event: notify::Event) {
        let now = Instant::now();
        for path in &event.paths {
            let Some(name) = path.file_name() else {
                continue;
            };
            let lockfile = name == LOCKFILE_NAME;
            if !lockfile && !is_candidate_name(name) {
                continue;
            }
            match event.kind {
                // Written in place: wait for the writer to close it.
                EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => {
                    self.writing.insert(path.clone(), now);
                }
                EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Remove(_)
                | EventKind::Modify(ModifyKind::Name(_)) => {
                    self.writing.remove(path);
                }
                EventKind::Access(_) => continue,
                _ => {}
            }
            self.lockfile_changed |= lockfile;
            self.pending = Some(now);
        }
    }

    fn reload(&mut self) {
        self.pending = None;
        if std::mem::take(&mut self.lockfile_changed) {
            // Files the old lock file refused may pass the new one.
            self.registry
                .settled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        match self.loader.reload_changed(self.registry) {
            Ok(report) => {
                self.ready
                    .extend(report.reloaded.into_iter().map(WatchEvent::Reloaded));
                self.ready
                    .extend(report.refused.into_iter().map(WatchEvent::Refused));
            }
            Err(error) => self.ready.push_back(WatchEvent::Failed(error)),
        }
    }
}

impl<I: Interface> Iterator for Watch<'_, I> {
    type Item = WatchEvent;

    /// Waits for the next event.
    fn next(&mut self) -> Option<WatchEvent> {
        loop {
            if let Some(event) = self.next_within(Duration::from_secs(3600)) {
                return Some(event);
            }
        }
    }
}
