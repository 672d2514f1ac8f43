//! `LoaderBuilder`: the options of a `Loader`.

use std::{
    collections::HashMap,
    fmt,
    marker::PhantomData,
    path::{Path, PathBuf},
};

use dropin::Interface;
use semver::{Version, VersionReq};

use crate::{
    child::isolation::{self, Isolate},
    child::probe::Probe,
    load::{Policy, default_interface_req},
    sys,
};

use super::*;

/// Where the snapshot folder goes by default, in order of preference: the
/// user's own runtime folder when there is one; on Linux, the shared-memory
/// folder (a memory file system, like the runtime folder: copies cost no
/// disk writes); the system's temporary folder.
pub(super) fn default_snapshot_roots() -> Vec<PathBuf> {
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
    pub(super) dir: PathBuf,
    pub(super) accepted: Option<VersionReq>,
    pub(super) host_version: Option<Version>,
    pub(super) lock: LockMode,
    pub(super) snapshot_root: Option<PathBuf>,
    pub(super) snapshot_cache: Option<PathBuf>,
    pub(super) check_permissions: bool,
    pub(super) allow_panic_abort: bool,
    pub(super) allow_executable_stack: bool,
    pub(super) max_file_size: u64,
    pub(super) max_mapped: usize,
    pub(super) max_retained: usize,
    pub(super) services: Option<dropin::Services>,
    pub(super) probe: Option<Probe>,
    pub(super) isolation: isolation::Settings,
    pub(super) config: HashMap<String, String>,
    pub(super) config_source: config::Source,
    pub(super) chosen: config::Chosen,
    pub(super) interface: PhantomData<fn() -> I>,
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
            .field("config_file", &self.config_source)
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

    /// The interface versions to accept (default: the host's own version
    /// and any later minor or patch of its major; for a 0.x interface, of
    /// its minor). It can only narrow that: plugins of
    /// another major (for a 0.x interface, another minor) are refused
    /// regardless, with [`LoadErrorKind::AnotherMajor`].
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
    /// [`LoadErrorKind::TooMany`] instead of opened.
    pub fn max_mapped(mut self, libraries: usize) -> Self {
        self.max_mapped = libraries;
        self
    }

    /// The most earlier generations of one plugin that reloads may leave
    /// mapped in this process (by default [`DEFAULT_MAX_RETAINED`]): a
    /// library is never unloaded, so each in-process reload keeps the
    /// replaced one. Past it, [`Loader::reload`] refuses with
    /// [`LoadErrorKind::Retained`] and the current generation keeps serving.
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
        self.chosen.call_timeout = Some(timeout);
        self
    }

    /// How long an isolated plugin's process may take to start, open its
    /// library and run the plugin's `init` (default:
    /// [`DEFAULT_START_TIMEOUT`](crate::child::isolation::DEFAULT_START_TIMEOUT));
    /// past it, its process is killed and the plugin is rejected with
    /// `LoadErrorKind::Isolated`, or, when its process is started again
    /// after a crash, the call that started it fails saying so. A call that
    /// starts the process again waits for that start, within this timeout
    /// and not its call timeout, and so do the calls that wait for it.
    pub fn start_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.chosen.start_timeout = Some(timeout);
        self
    }

    /// Confines isolated plugins' processes, and the probe's (Linux;
    /// default: `false`): a user namespace of its own (mapping the host's
    /// user to itself), whatever the host's user, root included, with every
    /// capability dropped for good; no new privileges
    /// (`PR_SET_NO_NEW_PRIVS`: a setuid program it runs gains nothing); no
    /// network (a network namespace of its own, with only a loopback
    /// interface that is down); a read-only view of every file system (a
    /// mount namespace of its own where every mount is made read-only with
    /// `mount_setattr`, Linux 5.12 or later); a Landlock domain of its own
    /// scoping signals, `ptrace` and abstract Unix sockets to it (Linux
    /// 6.12); and a seccomp filter refusing new Unix sockets and new
    /// namespaces (x86-64 and AArch64). The process can still read what
    /// the host can read. Where the kernel refuses any of these, the plugin
    /// is refused, never run unconfined.
    pub fn confine_isolated(mut self, confine: bool) -> Self {
        self.chosen.confined = Some(confine);
        self
    }

    /// What happens to an isolated plugin whose process crashed or timed
    /// out (default: [`Recovery::Disable`](crate::child::isolation::Recovery)).
    pub fn isolation_recovery(mut self, recovery: crate::child::isolation::Recovery) -> Self {
        self.chosen.recovery = Some(recovery);
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
        self.chosen.memory_limit = Some(bytes);
        self
    }

    /// The most processes and threads an isolated plugin's process, and
    /// everything it starts, may run at once (default: no limit), the
    /// process's own included: about a dozen run before the plugin starts
    /// anything (two waiting processes, the process, and the threads that
    /// serve calls), so a limit is at least
    /// [`MIN_PROCESS_LIMIT`](crate::child::isolation::MIN_PROCESS_LIMIT).
    /// Each `async fn` call in flight runs on a thread of its own there, and
    /// counts too. Past the limit, the plugin's `fork` and thread creation
    /// fail (an `async fn` call is answered with an error); a fork bomb
    /// stays within it, and the host and the machine carry on. A probe runs
    /// within it too.
    ///
    /// Linux counts them in the user namespace each isolated process gets
    /// (`RLIMIT_NPROC`, Linux 5.14 or later) when the host does not run as
    /// root. Unconfined, the plugin may still have another program start
    /// processes for it (a service manager, through a socket), which are not
    /// counted: [`confine_isolated`](Self::confine_isolated) closes that. The
    /// kernel never counts root's processes: a host that runs as root, on
    /// an older kernel or on another platform refuses a plugin with a limit
    /// rather than run it without, and so refuses every file it would probe.
    pub fn isolation_process_limit(mut self, processes: u32) -> Self {
        self.chosen.process_limit = Some(processes);
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
    /// initialises, in place of its table of the configuration file
    /// ([`dropin::Context::config_text`]; [`dropin::Context::config`] reads
    /// it typed when it is TOML, as a table's text is).
    pub fn config(mut self, plugin: impl Into<String>, config: impl Into<String>) -> Self {
        self.config.insert(plugin.into(), config.into());
        self
    }

    /// The configuration file to read in place of the plugins folder's
    /// [`plugins.toml`](crate::CONFIG_FILE_NAME), which says what the file
    /// holds: this one must exist. It is read when the loader is built, by
    /// the lock file's rules; what is wrong with it fails every load with
    /// [`LoaderError::Config`].
    #[must_use]
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_source = config::Source::File(path.into());
        self
    }

    /// Reads no configuration file: every setting is the application's, and
    /// a plugin's configuration only what [`config`](Self::config) gives.
    #[must_use]
    pub fn without_config_file(mut self) -> Self {
        self.config_source = config::Source::Off;
        self
    }

    /// The configured loader, whose plugins all run in processes of their
    /// own: no plugin's code ever runs in this process, so this needs no
    /// `unsafe`. Every plugin is isolated, whatever [`isolate`](Self::isolate)
    /// rules were given. The loader needs a [`probe`](Self::probe), whose
    /// program runs them: without one, loading and reloading
    /// fail with [`LoaderError::NoProbe`], and nothing is opened.
    pub fn build_isolated(mut self) -> Loader<I> {
        self.isolation.rules = vec![Isolate::All];
        let mut loader = self.assemble();
        loader.in_process = false;
        loader
    }

    /// The configured loader, which runs in this process every plugin no
    /// [`isolate`](Self::isolate) rule matches: such a plugin's library is
    /// mapped here, its constructors and its `init` run here when it loads,
    /// and its methods run here at every call. Calls through its handle are
    /// safe functions: the trust is granted here, once.
    ///
    /// # Safety
    ///
    /// A plugin's machine code that runs in this process can do anything the
    /// process can: read or write any of its memory, by a bug or on purpose.
    /// dropin's checks (the permissions, the lock file, the headers, the
    /// probe, the versions and signatures) narrow which files get that far
    /// and turn many faults into errors; none of them can make that code
    /// memory-safe. So the caller vouches for every plugin file this loader
    /// will run in this process, in its folder now and whenever it loads,
    /// reloads or watches it: each is a build the application trusts as it
    /// trusts its own code. For example: files that a lock file under the
    /// application's control approves ([`LockMode::Required`]), in a folder
    /// that only the application's user can write. Plugins it does not
    /// vouch for belong in processes of their own: an
    /// [`isolate`](Self::isolate) rule that matches them, or
    /// [`build_isolated`](Self::build_isolated), which needs no `unsafe`.
    pub unsafe fn build(self) -> Loader<I> {
        self.assemble()
    }

    fn assemble(self) -> Loader<I> {
        let accepted = self.accepted.unwrap_or_else(|| {
            let own = Version::parse(I::VERSION).expect("the interface crate's version is semver");
            default_interface_req(&own)
        });
        let host_version = self.host_version.unwrap_or(Version::new(0, 0, 0));
        let mut isolation = self.isolation;
        let mut configs = config::PluginConfigs {
            given: self.config,
            ..Default::default()
        };
        // Read now, so that the loader's settings never change; an error
        // is what every load, reload and survey returns.
        let config_error = config::apply(
            &self.config_source,
            &self.dir,
            self.check_permissions,
            self.chosen,
            &mut isolation,
            &mut configs,
        )
        .err()
        .map(std::sync::Arc::new);
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
            isolation,
            configs,
            config_error,
            in_process: true,
            interface: PhantomData,
        }
    }
}
