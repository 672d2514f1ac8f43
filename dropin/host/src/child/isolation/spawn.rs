//! The host's side of starting an isolated process: the launcher, the
//! spawner that starts (and restarts) it, the thread that serves its
//! service calls, and the one that forwards its standard error.

use std::{
    ffi::OsString,
    io::{self, BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock, atomic::AtomicBool, mpsc},
    thread,
};

use dropin::{Interface, abi::Remote, wire::Encode};

use crate::{
    error::{LoadError, LoadErrorKind},
    load::{Plugin, Policy},
    sys,
};

use super::*;

/// How to start isolated plugins' processes: the probe's program.
#[derive(Debug, Clone)]
pub(crate) struct Launcher {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
}

/// Starts the isolated process for the plugin file `path` (its private
/// copy at `copy`) and loads it there.
///
/// # Errors
///
/// Why its plugin did not load there, as the kind the host would have
/// found itself ([`NotLoaded`]); [`LoadErrorKind::Isolated`] saying why the
/// process did not start or could not be spoken to.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start<I: Interface>(
    launcher: &Launcher,
    settings: &Settings,
    path: &Path,
    copy: &Path,
    sha256: Option<[u8; 32]>,
    policy: &Policy,
    config: (&str, Option<&Path>),
    described: &dropin::description::Description,
    previous: Option<crate::load::Saved>,
    services: Option<&dropin::Services>,
) -> Result<Plugin<I>, LoadError> {
    let (previous_version, previous) = match previous {
        Some((version, bytes)) => (version, Some(bytes)),
        None => (0, None),
    };
    let setup = Setup {
        path: dropin::abi::path_bytes(path),
        copy: dropin::abi::path_bytes(copy),
        config: config.0.to_owned(),
        config_file: config.1.map(dropin::abi::path_bytes),
        accepted: policy.accepted.to_string(),
        host_version: policy.host_version.to_string(),
        allow_panic_abort: policy.allow_panic_abort,
        allow_executable_stack: policy.allow_executable_stack,
        previous,
        previous_version,
        services: services
            .filter(|_| sys::target::UNIX)
            .map(|services| services_identity(services.name(), services.version())),
        channel: sys::target::UNIX,
        described_name: described.plugin_name.clone(),
        described_version: described.plugin_version.clone(),
        described_interface_version: described.interface_version.clone(),
        slots: slots::SLOTS as u32,
        stride: slots::STRIDE as u32,
    };
    let expected = described.plugin_name.as_str();
    let mut bytes = Vec::new();
    setup.encode(&mut bytes);
    let call_timeout = settings
        .call_timeouts
        .get(expected)
        .copied()
        .unwrap_or(settings.call_timeout);
    let spawner = Spawner {
        name: expected.to_owned(),
        call_timeout,
        start_timeout: settings.start_timeout,
        launcher: launcher.clone(),
        interface: I::NAME,
        limits: settings.limits(),
        confined: settings.confined,
        setup: bytes,
        // The name its description gives, which its process must load:
        // from the first record on, `init`'s included.
        target: dropin::log_target(expected),
        // Its service calls say they come from the plugin its description
        // names, which its process must then load.
        services: services.map(|services| {
            let (caller, refusal) = services.caller_for(expected);
            (services.clone(), caller, refusal)
        }),
        callbacks: Arc::new(Callbacks::new()),
        id: NEXT_SPAWNER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        not_loaded: {
            let policy = policy.clone();
            Box::new(move |not: NotLoaded| {
                not.into_kind::<I>(&policy, |reason| LoadErrorKind::Isolated { reason })
            })
        },
    };
    let (process, forwarder, ready) = spawner.spawn().map_err(|kind| kind.at(path))?;
    // The name the file's description gives: a process that names itself
    // otherwise is not the plugin that was checked, and is refused as a
    // description that disagrees with its root module is in the host.
    if ready.name != expected {
        return Err(LoadErrorKind::Disagrees {
            field: "plugin name",
            described: expected.to_owned(),
            found: ready.name,
        }
        .at(path.to_owned()));
    }
    let isolated = Isolated {
        gate: std::sync::RwLock::new(()),
        link: Mutex::new(process.link.clone()),
        successor: OnceLock::new(),
        ending: AtomicBool::new(false),
        failure: OnceLock::new(),
        state: Mutex::new(State {
            process,
            forwarders: vec![forwarder],
            restarts: 0,
            failed_at: None,
            retired: false,
        }),
        timeout: settings
            .call_timeouts
            .get(&ready.name)
            .copied()
            .unwrap_or(settings.call_timeout),
        recovery: settings.recovery,
        name: ready.name.clone(),
        spawner,
    };
    let refusal = isolated
        .spawner
        .services
        .as_ref()
        .map(|(_, _, refusal)| refusal.clone());
    let plugin = Plugin::<I>::isolated(path, copy, sha256, ready, Arc::new(isolated))
        .map_err(|reason| LoadErrorKind::Isolated { reason }.at(path.to_owned()))?;
    if let Some(refusal) = refusal {
        plugin.core().set_refusal(refusal);
    }
    Ok(plugin)
}

/// Numbers the spawners, so that a thread serving one plugin's service
/// calls can tell that plugin's calls.
pub(super) static NEXT_SPAWNER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Numbers the processes of every plugin: what a call gives is released
/// with the process it was sent to.
static NEXT_PROCESS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

thread_local! {
    /// On a thread that serves an isolated plugin's service calls: which
    /// spawner's plugin.
    pub(super) static SERVING: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// The application's objects this thread kept for a call it is about
    /// to send, as (spawner, object number): the call, once sent, tells
    /// which process got them.
    pub(super) static GIVEN: std::cell::RefCell<Vec<(u64, u64)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Why a confined plugin is refused where the kernel cannot confine it.
pub(crate) const UNCONFINABLE: &str =
    "confinement is built for Linux only: the plugin is refused, not run unconfined";

/// The most bytes one service call from an isolated process may carry.
pub(super) const MAX_SERVICE_FRAME: usize = 16 << 20;

/// Serves an isolated process's calls to the host on a thread of their
/// own until the process closes its end: reads a call, runs the
/// application's service or object, answers. A thread per process: a call
/// from the plugin while the host waits on that plugin's own call is
/// served meanwhile.
pub(super) fn serve_services(
    stream: sys::Channel,
    services: Option<(dropin::Services, dropin::abi::Caller)>,
    callbacks: Arc<Callbacks>,
    id: u64,
) {
    let spawned = thread::Builder::new()
        .name("dropin-services".to_owned())
        .spawn(move || {
            SERVING.with(|serving| serving.set(id));
            let mut input = &stream;
            let mut output = &stream;
            let mut out = Vec::new();
            loop {
                let frame = match read_frame(&mut input, MAX_SERVICE_FRAME) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(error) => {
                        if let Some(len) = TooLong::in_error(&error) {
                            log::warn!(target: LOG_TARGET, "an isolated process sent a service call of {len} bytes: closed");
                        }
                        break;
                    }
                };
                out.clear();
                let served = message::<Back>(&frame).and_then(|back| match back {
                    Back::Service { method, args } => match &services {
                        Some((services, caller)) => {
                            services.serve(caller, method as usize, &args, &mut out)
                        }
                        None => Err(dropin::wire::WireError(
                            "the host offers no services".to_owned(),
                        )),
                    },
                    Back::Callback { id, method, args } => {
                        callbacks.serve(id, method as usize, &args, &mut out);
                        Ok(())
                    }
                    Back::DropCallback { id } => {
                        callbacks.release(id);
                        dropin::abi::encode_service(
                            &dropin::abi::RResult::<(), dropin::abi::RawError>::ROk(()),
                            &mut out,
                        );
                        Ok(())
                    }
                });
                if let Err(error) = served {
                    out.clear();
                    let outcome: dropin::abi::RResult<(), dropin::abi::RawError> =
                        dropin::abi::RResult::RErr(dropin::abi::RawError::new(
                            dropin::abi::RawErrorKind::Failed,
                            format!("the host could not read the call: {error}"),
                            None,
                        ));
                    dropin::abi::encode_service(&outcome, &mut out);
                }
                if write_frame(&mut output, &out).is_err() {
                    break;
                }
            }
        });
    if let Err(error) = spawned {
        log::warn!(target: LOG_TARGET, "cannot serve an isolated plugin's service calls: {error}");
    }
}

/// Everything needed to start, and start again, an isolated plugin's
/// process.
pub(super) struct Spawner {
    /// Tells the threads that serve this plugin's service calls.
    pub(super) id: u64,
    /// The application's objects kept for this plugin's processes.
    pub(super) callbacks: Arc<Callbacks>,
    /// The name the plugin's description gives.
    pub(super) name: String,
    /// How long a write to its process may wait.
    pub(super) call_timeout: std::time::Duration,
    /// How long its process may take to start and load its plugin.
    pub(super) start_timeout: std::time::Duration,
    /// The application's services, the caller this plugin's calls are
    /// served as, and what turns them off.
    pub(super) services: Option<(dropin::Services, dropin::abi::Caller, dropin::abi::Refusal)>,
    pub(super) launcher: Launcher,
    pub(super) interface: &'static str,
    pub(super) limits: sys::Limits,
    pub(super) confined: bool,
    /// The encoded [`Setup`].
    pub(super) setup: Vec<u8>,
    /// The log target its output goes to.
    pub(super) target: String,
    /// The kind of error for what the process says kept its plugin from
    /// loading.
    pub(super) not_loaded: Box<dyn Fn(NotLoaded) -> LoadErrorKind + Send + Sync>,
}

/// Why a process did not start its plugin: what the process said, or
/// anything else in words (it could not be started or spoken to).
enum Failure {
    NotLoaded(NotLoaded),
    Other(String),
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Self::Other(reason)
    }
}

impl From<&str> for Failure {
    fn from(reason: &str) -> Self {
        Self::Other(reason.to_owned())
    }
}

impl Spawner {
    /// Starts a process and loads the plugin there.
    pub(super) fn spawn(&self) -> Result<(Process, thread::JoinHandle<()>, Ready), LoadErrorKind> {
        self.try_spawn().map_err(|failure| match failure {
            Failure::NotLoaded(not) => (self.not_loaded)(not),
            Failure::Other(reason) => LoadErrorKind::Isolated { reason },
        })
    }

    fn try_spawn(&self) -> Result<(Process, thread::JoinHandle<()>, Ready), Failure> {
        if self.confined && !sys::target::CONFINES {
            return Err(UNCONFINABLE.into());
        }
        if let Some(why) = self.limits.unenforceable() {
            return Err(why.into());
        }
        let nonce = crate::child::role::nonce();
        let mut command = Command::new(&self.launcher.program);
        command
            .args(&self.launcher.args)
            .env(ISOLATED_ENV, format!("{}:{nonce}", self.interface))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        sys::confine(&mut command, self.limits, self.confined);
        let calls = Arc::new(
            slots::Calls::new()
                .map_err(|e| format!("its shared memory could not be set up: {e}"))?,
        );
        // At descriptor 3, the process's calls to the host; at 4, the
        // host's `async fn` calls to the process; at 5, the memory shared
        // for the host's other calls.
        let channels = if sys::target::UNIX {
            Some(
                sys::child_channels::<2>(&mut command, calls.memory())
                    .map_err(|e| format!("its channels could not be set up: {e}"))?,
            )
        } else {
            None
        };
        let spawned = spawn_from_keeper(command);
        // The child's end is the child's alone now.
        let (host_end, async_end) = match channels {
            Some([(host_end, child_end), (async_end, async_child_end)]) => {
                drop((child_end, async_child_end));
                (Some(host_end), Some(async_end))
            }
            None => (None, None),
        };
        let mut child = spawned.map_err(|e| format!("its process could not be started: {e}"))?;
        if let Some(host_end) = host_end {
            let services = self
                .services
                .as_ref()
                .map(|(services, caller, _)| (services.clone(), caller.clone()));
            serve_services(host_end, services, Arc::clone(&self.callbacks), self.id);
        }
        let stdin = child.stdin.take().expect("piped");
        // Writes wait for the pipe within the call's deadline, never for
        // ever: a process that stops reading cannot block the host.
        sys::set_nonblocking(&stdin).map_err(|e| format!("its pipe could not be set up: {e}"))?;
        let mut stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let forwarder = forward_stderr(stderr, self.target.clone());
        let link = match async_end {
            Some(channel) => Some(
                calls::Link::start(channel, &self.name, self.call_timeout)
                    .map_err(|e| format!("its channel of async calls could not be set up: {e}"))?,
            ),
            None => None,
        };
        let mut process = Process {
            number: NEXT_PROCESS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            child,
            stdin,
            calls,
            ended: None,
            link,
        };
        // First the nonce in its environment, which proves to the process
        // that its host started it; then the setup.
        let deadline = crate::child::deadline_in(self.start_timeout);
        crate::child::frame::write_frame_until(&mut process.stdin, nonce.as_bytes(), deadline)
            .map_err(|_| format!("its process {}", ended(&mut process.child, deadline)))?;
        let answer = setup_round_trip(
            &mut process,
            &mut stdout,
            &self.setup,
            (deadline, self.start_timeout),
        )
        .map_err(|ended| format!("its process {ended}"))?;
        let answer = message::<Answer>(&answer)
            .map_err(|e| format!("its process answered the setup with a {e}"))?;
        let ready = match answer {
            Answer::Started(ready) => ready,
            Answer::NotLoaded(not) => return Err(Failure::NotLoaded(not)),
        };
        // The pipe the process answered the setup on, which it alone holds
        // (not the programs it starts), closes when it ends: then every
        // call waiting for it fails at once. Nothing more comes on it: a
        // process that writes there broke the protocol.
        let calls = Arc::clone(&process.calls);
        thread::Builder::new()
            .name("dropin-watch".to_owned())
            .spawn(move || match stdout.read(&mut [0; 1]) {
                Ok(1..) => calls.break_off("bytes on its pipe after the setup"),
                _ => calls.end(),
            })
            .map_err(|e| format!("cannot watch its process: {e}"))?;
        Ok((process, forwarder, ready))
    }
}

impl<I: Interface> Plugin<I> {
    /// The plugin an isolated process reported, reached through `remote`.
    fn isolated(
        path: &Path,
        copy: &Path,
        sha256: Option<[u8; 32]>,
        ready: Ready,
        remote: Arc<dyn Remote>,
    ) -> Result<Self, String> {
        let version = ready.version.parse().map_err(|e| format!("version: {e}"))?;
        let interface_version = ready
            .interface_version
            .parse()
            .map_err(|e| format!("interface version: {e}"))?;
        let host_requirement = match ready.host_requirement.as_str() {
            "" => None,
            req => Some(req.parse().map_err(|e| format!("host requirement: {e}"))?),
        };
        // Plugins live for the rest of the process, as their libraries do.
        let name: &'static str = Box::leak(ready.name.into_boxed_str());
        let declared: &'static str = Box::leak(ready.interface_version.into_boxed_str());
        let provided = usize::try_from(ready.provided).unwrap_or(usize::MAX);
        let took_state = ready.took_state;
        let core = dropin::PluginCore::new(name, declared, I::METHODS, I::REQUIRED, provided)
            .with_remote(remote);
        // SAFETY: `core` has its remote: every call goes there.
        let handle = unsafe { I::bind_remote(core, provided.min(I::METHODS.len())) };
        let mut plugin = Plugin::from_parts(
            name,
            version,
            interface_version,
            host_requirement,
            path.to_owned(),
            copy.to_owned(),
            sha256,
            None,
            handle,
        );
        plugin.took_state = took_state;
        Ok(plugin)
    }
}

/// Logs what an isolated process writes to its standard error: its
/// plugin's log records at their level, anything else at `info`, all under
/// `plugin::<name>`.
pub(super) fn forward_stderr(
    stderr: impl Read + Send + 'static,
    target: String,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut bytes = Vec::new();
        loop {
            // Lines of any bytes and any length: a line is cut at
            // `MAX_LINE` bytes (the rest is dropped), and the pipe is read
            // to its end whatever arrives, so the process never blocks on
            // a full pipe.
            bytes.clear();
            match (&mut reader)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut bytes)
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if bytes.len() == MAX_LINE && bytes.last() != Some(&b'\n') {
                // Skip the rest of the line, a buffer at a time.
                while let Ok(buffer) = reader.fill_buf() {
                    if buffer.is_empty() {
                        break;
                    }
                    match buffer.iter().position(|&b| b == b'\n') {
                        Some(end) => {
                            reader.consume(end + 1);
                            break;
                        }
                        None => {
                            let all = buffer.len();
                            reader.consume(all);
                        }
                    }
                }
            }
            let line = String::from_utf8_lossy(&bytes);
            let line = line.trim_end_matches(['\n', '\r']);
            let target = target.as_str();
            match line
                .strip_prefix(LOG_MARK)
                .and_then(|rest| rest.split_once('\t'))
            {
                Some((level, message)) => {
                    let level = level.parse().unwrap_or(log::Level::Info);
                    log::log!(target: target, level, "{message}");
                }
                None => log::info!(target: target, "{line}"),
            }
        }
    })
}

/// Spawns `command` from one thread that lives as long as the process: the
/// kernel sends `PR_SET_PDEATHSIG`'s signal when the *thread* that spawned
/// a child ends, so a child spawned from a short-lived thread (a worker that
/// loaded plugins, a caller that restarted one) would die with it.
pub(super) fn spawn_from_keeper(command: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static KEEPER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (send, requests) = mpsc::channel::<Request>();
        thread::Builder::new()
            .name("dropin-spawner".to_owned())
            .spawn(move || {
                for (mut command, reply) in requests {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("the spawning thread starts");
        send
    });
    let gone = || io::Error::other("the spawning thread ended");
    let (reply, answer) = mpsc::channel();
    keeper.send((command, reply)).map_err(|_| gone())?;
    answer.recv().map_err(|_| gone())?
}
