//! Child-process layer, step 8 isolated: a plugin that runs in a process of
//! its own.
//!
//! The same plugin file, the same checks, the same handle: an isolated
//! plugin's library is opened, checked and initialised in a child process
//! (the application's own executable started again, like the probe), and
//! each call through its handle is encoded ([`dropin::wire`]), sent over a
//! pipe, served there, and answered. A plugin that crashes, aborts, exits or
//! hangs ends its own process, not the host: the call fails with
//! [`CallErrorKind::Crashed`] or [`CallErrorKind::TimedOut`] naming how, and
//! the plugin is disabled.
//!
//! The child dies with the host (`PR_SET_PDEATHSIG` on Linux, checked
//! against the race with the host's own death), its log records reach the
//! host's logger under `plugin::<name>`, and what it writes to its standard
//! output or error is logged there too, never mixed into the host's output.
//!
//! ```no_run
//! # mod greeter_interface {
//! #     #[dropin::interface(name = "greeter")]
//! #     pub trait Greeter: Send + Sync {
//! #         fn greet(&self) -> String;
//! #     }
//! # }
//! use dropin_host::{
//!     Loader,
//!     isolation::{self, Isolate},
//!     probe::{self, Probe},
//! };
//! use greeter_interface::GreeterPlugin;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // This program, started again by the loader, is the probe and the
//!     // isolated plugins' process: serve, and exit, when asked to.
//!     probe::serve_if_requested();
//!     isolation::serve_if_requested::<GreeterPlugin>();
//!     let report = Loader::<GreeterPlugin>::builder()
//!         .dir("plugins")
//!         .probe(Probe::current_exe()?)
//!         .isolate(Isolate::Unlocked)
//!         .build()
//!         .load()?;
//!     for plugin in report.registry.iter() {
//!         match plugin.greet() {
//!             Ok(greeting) => println!("{}: {greeting}", plugin.name()),
//!             // Failed, Panicked, Crashed, TimedOut...: the others carry on.
//!             Err(error) => eprintln!("{error}"),
//!         }
//!     }
//!     Ok(())
//! }
//! ```

use std::{
    ffi::OsString,
    io::{self, BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, OnceLock, mpsc},
    thread,
    time::{Duration, Instant},
};

use dropin::{
    __private::Remote,
    CallError, CallErrorKind, Interface,
    wire::{Decode, Encode, WireError},
};

use crate::{
    error::LoadError,
    load::{self, Plugin, Policy},
    sys,
};

/// The target of this module's log records: its path before the modules
/// moved into layers, which `RUST_LOG` filters name.
const LOG_TARGET: &str = "dropin_host::isolation";

/// The environment variable that makes a process started by the loader
/// serve an isolated plugin of the interface it names.
pub const ISOLATED_ENV: &str = "DROPIN_ISOLATED";

/// The default time an isolated plugin may take to answer one call; a
/// plugin that takes longer is killed and the call fails.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The time an isolated plugin's process may take to start, open its
/// library and run `init`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest line of an isolated process's standard error that is
/// logged; the rest of a longer line is dropped.
const MAX_LINE: usize = 64 * 1024;

/// The largest answer an isolated process may send: more is a failure
/// (the process is killed), not an allocation.
const MAX_FRAME: usize = 256 << 20;

/// The first bytes of a line on an isolated plugin's standard error that
/// carries a log record: `\u{1}dropin-log\t<level>\t<message>`.
const LOG_MARK: &str = "\u{1}dropin-log\t";

/// Which plugins run isolated: any plugin a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isolate {
    /// Every plugin.
    All,
    /// The plugins with these names.
    Plugins(Vec<String>),
    /// The plugins loaded from these files (paths as the loader finds them:
    /// the plugins folder joined with the file name).
    Files(Vec<PathBuf>),
    /// Every plugin whose file the lock file does not approve.
    Unlocked,
}

/// What happens to an isolated plugin whose process crashed or timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Recovery {
    /// It stays failed for the rest of the process: every later call fails
    /// saying how its process ended (the default: a plugin that crashed
    /// once is not trusted to run again without the application asking).
    #[default]
    Disable,
    /// The call that failed still fails; the next call starts a new
    /// process, whose plugin runs `init` again (its state starts afresh),
    /// after `backoff`, doubled at each restart, at most `attempts` times
    /// in all. Then it stays failed.
    Restart {
        /// The most restarts.
        attempts: u32,
        /// The wait before the first restart.
        backoff: Duration,
    },
}

/// The loader's isolation settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) rules: Vec<Isolate>,
    pub(crate) call_timeout: Duration,
    /// Call timeouts of particular plugins, by name.
    pub(crate) call_timeouts: std::collections::HashMap<String, Duration>,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) recovery: Recovery,
    pub(crate) confined: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            call_timeouts: std::collections::HashMap::new(),
            memory_limit: None,
            recovery: Recovery::default(),
            confined: false,
        }
    }
}

impl Settings {
    /// Whether the plugin `name` (if known) from `path` runs isolated.
    pub(crate) fn applies(&self, name: Option<&str>, path: &Path, locked: bool) -> bool {
        self.rules.iter().any(|rule| match rule {
            Isolate::All => true,
            Isolate::Plugins(names) => name.is_some_and(|name| names.iter().any(|n| n == name)),
            Isolate::Files(files) => files.iter().any(|file| file == path),
            Isolate::Unlocked => !locked,
        })
    }
}

/// Serves an isolated plugin of interface `I` and exits, if the loader
/// started this process as one; otherwise returns at once. Call it first
/// thing in `main`, once for each interface whose plugins may run isolated,
/// next to [`crate::child::probe::serve_if_requested`].
pub fn serve_if_requested<I: Interface>() {
    if std::env::var_os(ISOLATED_ENV).is_some_and(|name| name == I::NAME) {
        let code = match serve::<I>() {
            Ok(()) => 0,
            Err(error) => {
                let _ = writeln!(io::stderr(), "isolated plugin process: {error}");
                1
            }
        };
        std::process::exit(code);
    }
}

/// What the host tells the child before anything else.
struct Setup {
    path: Vec<u8>,
    copy: Vec<u8>,
    config: String,
    accepted: String,
    host_version: String,
    allow_panic_abort: bool,
    allow_executable_stack: bool,
    /// What the earlier generation saved, for the plugin's `init`.
    previous: Option<Vec<u8>>,
    previous_version: u32,
    /// The services the host serves on file descriptor 3, if any: their
    /// trait's name and the version of the interface crate, tab-separated.
    services: Option<String>,
}

impl Encode for Setup {
    fn encode(&self, out: &mut Vec<u8>) {
        self.path.encode(out);
        self.copy.encode(out);
        self.config.encode(out);
        self.accepted.encode(out);
        self.host_version.encode(out);
        self.allow_panic_abort.encode(out);
        self.allow_executable_stack.encode(out);
        self.previous.encode(out);
        self.previous_version.encode(out);
        self.services.encode(out);
    }
}

impl Decode for Setup {
    fn decode(input: &mut &[u8]) -> Result<Self, WireError> {
        Ok(Self {
            path: Decode::decode(input)?,
            copy: Decode::decode(input)?,
            config: Decode::decode(input)?,
            accepted: Decode::decode(input)?,
            host_version: Decode::decode(input)?,
            allow_panic_abort: Decode::decode(input)?,
            allow_executable_stack: Decode::decode(input)?,
            previous: Decode::decode(input)?,
            previous_version: Decode::decode(input)?,
            services: Decode::decode(input)?,
        })
    }
}

/// What the child answers once its plugin is loaded.
struct Ready {
    name: String,
    version: String,
    interface_version: String,
    host_requirement: String,
    provided: u64,
    /// Whether the plugin's `init` received the state it was handed.
    took_state: bool,
}

impl Encode for Ready {
    fn encode(&self, out: &mut Vec<u8>) {
        self.name.encode(out);
        self.version.encode(out);
        self.interface_version.encode(out);
        self.host_requirement.encode(out);
        self.provided.encode(out);
        self.took_state.encode(out);
    }
}

impl Decode for Ready {
    fn decode(input: &mut &[u8]) -> Result<Self, WireError> {
        Ok(Self {
            name: Decode::decode(input)?,
            version: Decode::decode(input)?,
            interface_version: Decode::decode(input)?,
            host_requirement: Decode::decode(input)?,
            provided: Decode::decode(input)?,
            took_state: Decode::decode(input)?,
        })
    }
}

/// Writes one frame: a `u32` length, then the bytes.
fn write_frame(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a frame over 4 GiB"))?;
    // One write: one system call for a small frame.
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(bytes);
    out.write_all(&frame)?;
    out.flush()
}

/// Reads one frame; `None` at the end of the stream.
fn read_frame(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let mut bytes = vec![0; u32::from_le_bytes(len) as usize];
    input.read_exact(&mut bytes)?;
    Ok(Some(bytes))
}

/// The child's side: load the plugin the host names, then serve its calls
/// until the host closes the pipe.
fn serve<I: Interface>() -> Result<(), String> {
    // Frames go out on what was standard output; whatever the plugin
    // prints there goes to standard error instead, which the host logs.
    let mut output =
        sys::protocol_output().map_err(|e| format!("cannot set up its output: {e}"))?;
    static LOGGER: ToStderr = ToStderr;
    log::set_logger(&LOGGER).map_err(|e| e.to_string())?;
    log::set_max_level(log::LevelFilter::Trace);
    let mut input = io::stdin().lock();
    let setup = read_frame(&mut input)
        .map_err(|e| e.to_string())?
        .ok_or("the host closed the pipe before the setup")?;
    let setup = Setup::decode(&mut setup.as_slice()).map_err(|e| e.to_string())?;
    let path = sys::path_from_bytes(setup.path);
    let copy = sys::path_from_bytes(setup.copy);
    let policy = Policy {
        accepted: setup.accepted.parse().map_err(|e| format!("{e}"))?,
        host_version: setup.host_version.parse().map_err(|e| format!("{e}"))?,
        allow_panic_abort: setup.allow_panic_abort,
        allow_executable_stack: setup.allow_executable_stack,
    };
    let previous = setup.previous.map(|bytes| (setup.previous_version, bytes));
    let handed = previous.is_some();
    let services = match &setup.services {
        Some(identity) => child_services::<I>(identity)
            .map_err(|e| format!("cannot reach the host's services: {e}"))?,
        None => None,
    };
    let loaded = load::open::<I>(&path, &copy, None, &policy, None, false).and_then(|plugin| {
        load::initialize(&plugin, &setup.config, previous.as_ref(), services).map(|()| plugin)
    });
    let plugin = match loaded {
        Ok(plugin) => plugin,
        Err(error) => {
            let mut answer = vec![1];
            crate::ErrorChain(&error).to_string().encode(&mut answer);
            write_frame(&mut output, &answer).map_err(|e| e.to_string())?;
            return Ok(());
        }
    };
    let mut answer = vec![0];
    Ready {
        name: plugin.name().to_owned(),
        version: plugin.version().to_string(),
        interface_version: plugin.interface_version().to_string(),
        host_requirement: plugin
            .host_requirement()
            .map_or_else(String::new, ToString::to_string),
        provided: plugin.core().provided() as u64,
        took_state: handed && plugin.extensions.is_some(),
    }
    .encode(&mut answer);
    write_frame(&mut output, &answer).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(call) = read_frame(&mut input).map_err(|e| e.to_string())? {
        let mut call = call.as_slice();
        let method = u32::decode(&mut call).map_err(|e| e.to_string())?;
        out.clear();
        if method == SAVE_METHOD {
            let saved = plugin
                .extensions
                .map_or(Ok(None), dropin::__private::save_state)
                .map_err(|message| {
                    CallError::from_parts(CallErrorKind::Failed, plugin.name(), message, None)
                });
            dropin::__private::encode_outcome(&saved.map(|state| state.map(Saved)), &mut out);
            write_frame(&mut output, &out).map_err(|e| e.to_string())?;
            continue;
        }
        plugin
            .handle()
            .serve(method as usize, call, &mut out)
            .map_err(|e| e.to_string())?;
        write_frame(&mut output, &out).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The method number that asks an isolated process for its plugin's saved
/// state; no interface has that many methods.
const SAVE_METHOD: u32 = u32::MAX;

/// A saved state on the wire: the version, then the bytes.
struct Saved((u32, Vec<u8>));

impl Encode for Saved {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.0.encode(out);
        self.0.1.encode(out);
    }
}

impl Decode for Saved {
    fn decode(input: &mut &[u8]) -> Result<Self, WireError> {
        Ok(Self((Decode::decode(input)?, Decode::decode(input)?)))
    }
}

/// What an isolated plugin saves for its next generation.
///
/// # Errors
///
/// The plugin's error, or how its process failed.
pub(crate) fn save_state(
    remote: &dyn Remote,
    plugin: &str,
) -> Result<Option<crate::load::Saved>, CallError> {
    let answer = remote.call(SAVE_METHOD as usize, Vec::new())?;
    let mut input = answer.as_slice();
    let saved = <Option<Saved>>::decode(&mut input)
        .ok()
        .filter(|_| input.is_empty())
        .ok_or_else(|| {
            CallError::from_parts(
                CallErrorKind::Failed,
                plugin,
                "its process sent a saved state that does not decode".to_owned(),
                None,
            )
        })?;
    Ok(saved.map(|Saved(state)| state))
}

/// The child's logger: each record as one marked line on standard error.
struct ToStderr;

impl log::Log for ToStderr {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let message = record.args().to_string().replace('\n', " ");
        let _ = writeln!(io::stderr(), "{LOG_MARK}{}\t{message}", record.level());
    }

    fn flush(&self) {}
}

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
/// [`LoadError::Isolated`] saying why the process did not start or its
/// plugin did not load.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start<I: Interface>(
    launcher: &Launcher,
    settings: &Settings,
    path: &Path,
    copy: &Path,
    sha256: Option<[u8; 32]>,
    policy: &Policy,
    config: &str,
    expected_name: Option<&str>,
    previous: Option<crate::load::Saved>,
    services: Option<&dropin::Services>,
) -> Result<Plugin<I>, LoadError> {
    let (previous_version, previous) = match previous {
        Some((version, bytes)) => (version, Some(bytes)),
        None => (0, None),
    };
    let setup = Setup {
        path: dropin::__private::path_bytes(path),
        copy: dropin::__private::path_bytes(copy),
        config: config.to_owned(),
        accepted: policy.accepted.to_string(),
        host_version: policy.host_version.to_string(),
        allow_panic_abort: policy.allow_panic_abort,
        allow_executable_stack: policy.allow_executable_stack,
        previous,
        previous_version,
        services: services
            .filter(|_| cfg!(unix))
            .map(|services| services_identity(services.name(), services.version())),
    };
    let mut bytes = Vec::new();
    setup.encode(&mut bytes);
    let spawner = Spawner {
        launcher: launcher.clone(),
        interface: I::NAME,
        memory_limit: settings.memory_limit,
        confined: settings.confined,
        path: path.to_owned(),
        setup: bytes,
        // Until the plugin says its name, its output is logged under the
        // file's.
        target: Arc::new(OnceLock::new()),
        // Its service calls say they come from the plugin the lock file or
        // the probe named, which its process must then load.
        services: services.map(|services| {
            let (caller, refusal) =
                services.caller_for(expected_name.unwrap_or("(unnamed plugin)"));
            (services.clone(), caller, refusal)
        }),
        id: NEXT_SPAWNER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    };
    let (process, forwarder, ready) = spawner.spawn().map_err(|reason| LoadError::Isolated {
        path: path.to_owned(),
        reason,
    })?;
    // The name the lock file recorded or the probe read: a process that
    // names itself otherwise is not the plugin that was checked.
    if let Some(expected) = expected_name
        && ready.name != expected
    {
        return Err(LoadError::Isolated {
            path: path.to_owned(),
            reason: format!(
                "its process loaded a plugin named '{}'; expected '{expected}'",
                ready.name
            ),
        });
    }
    let _ = spawner.target.set(dropin::log_target(&ready.name));
    let isolated = Isolated {
        successor: OnceLock::new(),
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
    let plugin =
        Plugin::<I>::isolated(path, copy, sha256, ready, Arc::new(isolated)).map_err(|reason| {
            LoadError::Isolated {
                path: path.to_owned(),
                reason,
            }
        })?;
    if let Some(refusal) = refusal {
        plugin.core().set_refusal(refusal);
    }
    Ok(plugin)
}

/// Numbers the spawners, so that a thread serving one plugin's service
/// calls can tell that plugin's calls.
static NEXT_SPAWNER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

thread_local! {
    /// On a thread that serves an isolated plugin's service calls: which
    /// spawner's plugin.
    static SERVING: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The most bytes one service call from an isolated process may carry.
const MAX_SERVICE_FRAME: u64 = 16 << 20;

/// Serves an isolated process's service calls on a thread of their own
/// until the process closes its end: reads a call, runs the application's
/// service, answers. A thread per process: a call from the plugin while the
/// host waits on that plugin's own call is served meanwhile.
fn serve_services(
    stream: sys::Channel,
    services: dropin::Services,
    caller: dropin::__private::Caller,
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
                let mut len = [0; 4];
                if input.read_exact(&mut len).is_err() {
                    break;
                }
                let len = u64::from(u32::from_le_bytes(len));
                if len > MAX_SERVICE_FRAME {
                    log::warn!(target: LOG_TARGET, "an isolated process sent a service call of {len} bytes: closed");
                    break;
                }
                // Grows as the bytes arrive: a claimed length allocates
                // nothing.
                let mut frame = Vec::new();
                if (&mut input).take(len).read_to_end(&mut frame).is_err()
                    || frame.len() as u64 != len
                {
                    break;
                }
                let mut call = frame.as_slice();
                out.clear();
                let served = u32::decode(&mut call)
                    .and_then(|method| services.serve(&caller, method as usize, call, &mut out));
                if let Err(error) = served {
                    out.clear();
                    let outcome: dropin::__private::RResult<(), dropin::__private::RawError> =
                        dropin::__private::RResult::RErr(dropin::__private::RawError::new(
                            dropin::__private::RawErrorKind::Failed,
                            format!("the host could not read the call: {error}"),
                            None,
                        ));
                    dropin::__private::encode_service(&outcome, &mut out);
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

/// How the setup names the services a host offers, and how the isolated
/// process checks they are the ones it was built with: the trait's name
/// and the interface crate's version, tab-separated.
fn services_identity(name: &str, version: &str) -> String {
    format!("{name}\t{version}")
}

/// In an isolated process: the table of the host's services, reached over
/// file descriptor 3, if they are the services this program was built
/// with (`identity`: the host's trait name and interface version). A host
/// that offers other services, or another version of them, offers none to
/// this process: every call is `Missing`, never a call by number into
/// services of another signature.
fn child_services<I: Interface>(
    identity: &str,
) -> io::Result<Option<&'static dropin::__private::RawServices>> {
    let Some(stream) = sys::inherited_channel()? else {
        return Ok(None);
    };
    let table = I::remote_services(Box::new(ChildServices {
        stream: Mutex::new(stream),
    }));
    Ok(table.filter(|table| {
        let same = services_identity(table.name.as_str(), table.version.as_str()) == identity;
        if !same {
            log::warn!(target: LOG_TARGET,
                "the host offers the services {}, this program was built with {} {}: none are \
                 offered to the plugin",
                identity.replace('\t', " "),
                table.name.as_str(),
                table.version.as_str()
            );
        }
        same
    }))
}

/// An isolated process's way to the host's services: one call at a time.
struct ChildServices {
    stream: Mutex<sys::Channel>,
}

impl dropin::__private::ServiceClient for ChildServices {
    fn call(&self, service: usize, args: Vec<u8>) -> Result<Vec<u8>, String> {
        let gone = |e: io::Error| format!("the host's services cannot be reached: {e}");
        let stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        let mut frame = Vec::with_capacity(4 + args.len());
        u32::try_from(service)
            .unwrap_or(u32::MAX)
            .encode(&mut frame);
        frame.extend_from_slice(&args);
        write_frame(&mut &*stream, &frame).map_err(gone)?;
        read_frame(&mut &*stream)
            .map_err(gone)?
            .ok_or_else(|| "the host closed its services channel".to_owned())
    }
}

/// Everything needed to start, and start again, an isolated plugin's
/// process.
struct Spawner {
    /// Tells the threads that serve this plugin's service calls.
    id: u64,
    /// The application's services, the caller this plugin's calls are
    /// served as, and what turns them off.
    services: Option<(
        dropin::Services,
        dropin::__private::Caller,
        dropin::__private::Refusal,
    )>,
    launcher: Launcher,
    interface: &'static str,
    memory_limit: Option<u64>,
    confined: bool,
    path: PathBuf,
    /// The encoded [`Setup`].
    setup: Vec<u8>,
    /// The log target its output goes to.
    target: Arc<OnceLock<String>>,
}

impl Spawner {
    /// Starts a process and loads the plugin there.
    fn spawn(&self) -> Result<(Process, thread::JoinHandle<()>, Ready), String> {
        let mut command = Command::new(&self.launcher.program);
        command
            .args(&self.launcher.args)
            .env(ISOLATED_ENV, self.interface)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        sys::confine(&mut command, self.memory_limit, self.confined);
        let channel = match &self.services {
            Some(_) => Some(
                sys::services_channel(&mut command)
                    .map_err(|e| format!("its services channel could not be set up: {e}"))?,
            ),
            None => None,
        };
        let spawned = spawn_from_keeper(command);
        // The child's end is the child's alone now.
        let host_end = channel.map(|(host_end, child_end)| {
            drop(child_end);
            host_end
        });
        let mut child = spawned.map_err(|e| format!("its process could not be started: {e}"))?;
        if let (Some(host_end), Some((services, caller, _))) = (host_end, &self.services) {
            serve_services(host_end, services.clone(), caller.clone(), self.id);
        }
        let stdin = child.stdin.take().expect("piped");
        // Writes wait for the pipe within the call's deadline, never for
        // ever: a process that stops reading cannot block the host.
        sys::set_nonblocking(&stdin).map_err(|e| format!("its pipe could not be set up: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let forwarder = forward_stderr(stderr, Arc::clone(&self.target), self.path.clone());
        let mut process = Process {
            child,
            stdin,
            stdout,
            ended: None,
        };
        let answer = round_trip(&mut process, &self.setup, START_TIMEOUT)
            .map_err(|ended| format!("its process {ended}"))?;
        let mut answer = answer.as_slice();
        let malformed = |e: WireError| format!("its process answered {e}");
        if u8::decode(&mut answer).map_err(malformed)? != 0 {
            let message = String::decode(&mut answer).map_err(malformed)?;
            // The child's message names the file already.
            let prefix = format!("{}: ", self.path.display());
            return Err(message
                .strip_prefix(&prefix)
                .map_or(message.clone(), str::to_owned));
        }
        let ready = Ready::decode(&mut answer).map_err(malformed)?;
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
fn forward_stderr(
    stderr: impl Read + Send + 'static,
    target: Arc<OnceLock<String>>,
    path: PathBuf,
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
            let fallback;
            let target = match target.get() {
                Some(target) => target.as_str(),
                None => {
                    fallback = format!("plugin::{}", path.display());
                    fallback.as_str()
                }
            };
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

/// An isolated plugin's process, as its handle's [`Remote`].
struct Isolated {
    state: Mutex<State>,
    /// Set when a newer generation replaced this one: where calls go from
    /// then on (nowhere, if the newer generation runs in the host).
    successor: OnceLock<Option<Arc<dyn Remote>>>,
    timeout: Duration,
    recovery: Recovery,
    name: String,
    spawner: Spawner,
}

struct State {
    process: Process,
    /// Each log its process's standard error until it closes.
    forwarders: Vec<thread::JoinHandle<()>>,
    restarts: u32,
    failed_at: Option<Instant>,
    /// A newer generation replaced this one and its process ended.
    retired: bool,
}

struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// How the process ended, once it did.
    ended: Option<(CallErrorKind, String)>,
}

impl Drop for Process {
    /// A process no longer used is killed and reaped, whatever state it is
    /// in: no process outlives its handle, and none is left a zombie.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends one frame to `process` and waits for the answer; how the process
/// ended, if it did instead of answering (which `process` then records).
fn round_trip(process: &mut Process, frame: &[u8], timeout: Duration) -> Result<Vec<u8>, Ended> {
    let deadline = Instant::now() + timeout;
    let answer = write_frame_until(&mut process.stdin, frame, deadline)
        .and_then(|()| read_frame_until(&mut process.stdout, deadline));
    let (kind, how) = match answer {
        Ok(Some(bytes)) => return Ok(bytes),
        Ok(None) | Err(Wait::Failed) => (CallErrorKind::Crashed, ended(&mut process.child)),
        Err(Wait::TimedOut) => {
            let _ = process.child.kill();
            let _ = process.child.wait();
            (
                CallErrorKind::TimedOut,
                format!("did not answer within {timeout:?} and was killed"),
            )
        }
    };
    process.ended = Some((kind, how.clone()));
    Err(Ended { kind, how })
}

impl Isolated {
    /// Sends one call and waits for the answer, after restarting the
    /// process if it ended earlier and the recovery allows it; `None` if a
    /// newer generation replaced this one.
    fn exchange(&self, frame: &[u8]) -> Option<Result<Vec<u8>, Ended>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.retired {
            return None;
        }
        Some(self.exchange_locked(&mut state, frame))
    }

    fn exchange_locked(&self, state: &mut State, frame: &[u8]) -> Result<Vec<u8>, Ended> {
        if let Some((kind, how)) = state.process.ended.clone() {
            self.restart(state).map_err(|why| Ended {
                kind,
                how: format!("ended earlier ({how}){why}"),
            })?;
        }
        let answer = round_trip(&mut state.process, frame, self.timeout);
        if answer.is_err() {
            state.failed_at = Some(Instant::now());
        }
        answer
    }

    /// Starts a new process in place of the one that ended; why not, as
    /// the end of a sentence, if it does not.
    fn restart(&self, state: &mut State) -> Result<(), String> {
        let Recovery::Restart { attempts, backoff } = self.recovery else {
            return Err(String::new());
        };
        if state.restarts >= attempts {
            return Err(format!("; not restarted: {attempts} restarts already"));
        }
        // Never longer than a call may take.
        let wait = backoff
            .saturating_mul(1 << state.restarts.min(16))
            .min(self.timeout);
        if let Some(failed_at) = state.failed_at {
            thread::sleep(wait.saturating_sub(failed_at.elapsed()));
        }
        state.restarts += 1;
        let (process, forwarder, ready) = self
            .spawner
            .spawn()
            .map_err(|reason| format!("; restarting it failed: {reason}"))?;
        state.forwarders.push(forwarder);
        state.process = process;
        if ready.name != self.name {
            state.process.ended = Some((
                CallErrorKind::Crashed,
                format!("was restarted as '{}'", ready.name),
            ));
            return Err(format!("; restarted, it named itself '{}'", ready.name));
        }
        log::warn!(
            target: &dropin::log_target(&self.name),
            "its process was restarted ({} of {attempts})",
            state.restarts
        );
        Ok(())
    }
}

/// How an isolated process failed a call.
struct Ended {
    kind: CallErrorKind,
    how: String,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.how)
    }
}

impl Remote for Isolated {
    fn call(&self, method: usize, args: Vec<u8>) -> Result<Vec<u8>, CallError> {
        if SERVING.with(std::cell::Cell::get) == self.spawner.id {
            // This thread serves the plugin's service calls: the plugin may
            // be waiting for it right now, and would never answer.
            return Err(CallError::from_parts(
                CallErrorKind::Failed,
                &self.name,
                "refused: the host's service that serves this plugin called it back; the \
                 plugin may be waiting for that very service"
                    .to_owned(),
                None,
            ));
        }
        let mut frame = Vec::with_capacity(4 + args.len());
        u32::try_from(method).unwrap_or(u32::MAX).encode(&mut frame);
        frame.extend_from_slice(&args);
        let Some(answer) = self.exchange(&frame) else {
            return match self.successor.get() {
                Some(Some(successor)) => successor.call(method, frame.split_off(4)),
                _ => Err(CallError::from_parts(
                    CallErrorKind::Failed,
                    &self.name,
                    "its process ended: a newer generation replaced it in the host; call the \
                     plugin through the registry again"
                        .to_owned(),
                    None,
                )),
            };
        };
        let answer = answer.map_err(|ended| {
            CallError::from_parts(
                ended.kind,
                &self.name,
                format!("its process {}", ended.how),
                None,
            )
        })?;
        dropin::__private::decode_outcome(&self.name, &answer).map(<[u8]>::to_vec)
    }

    fn retire(&self, successor: Option<Arc<dyn Remote>>) {
        let _ = self.successor.set(successor);
        // Waits for the call being served, if any.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.retired = true;
        let _ = state.process.child.kill();
        let _ = state.process.child.wait();
        state.process.ended = Some((
            CallErrorKind::Failed,
            "was replaced by a newer generation".to_owned(),
        ));
        log::debug!(
            target: &dropin::log_target(&self.name),
            "its process ended: a newer generation replaced it"
        );
    }

    fn process_id(&self) -> Option<u32> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .process
            .ended
            .is_none()
            .then(|| state.process.child.id())
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = state.process.child.kill();
        let _ = state.process.child.wait();
        // What the processes wrote before they ended is still in the pipes:
        // log all of it before the handle goes. (A grandchild that kept a
        // pipe open would keep it open for ever: then the rest is left to
        // the thread, after a second.)
        let deadline = Instant::now() + Duration::from_secs(1);
        for forwarder in state.forwarders.drain(..) {
            while !forwarder.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            if forwarder.is_finished() {
                let _ = forwarder.join();
            }
        }
    }
}

enum Wait {
    TimedOut,
    /// The pipe failed or ended: the process is ending.
    Failed,
}

/// Spawns `command` from one thread that lives as long as the process: the
/// kernel sends `PR_SET_PDEATHSIG`'s signal when the *thread* that spawned
/// a child ends, so a child spawned from a short-lived thread (a worker that
/// loaded plugins, a caller that restarted one) would die with it.
fn spawn_from_keeper(command: Command) -> io::Result<Child> {
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

/// Writes one frame, waiting for room in the pipe at most until
/// `deadline`.
fn write_frame_until(stdin: &mut ChildStdin, bytes: &[u8], deadline: Instant) -> Result<(), Wait> {
    let len = u32::try_from(bytes.len()).map_err(|_| Wait::Failed)?;
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(bytes);
    let mut written = 0;
    while written < frame.len() {
        match stdin.write(&frame[written..]) {
            Ok(0) => return Err(Wait::Failed),
            Ok(n) => written += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                waited(sys::wait_writable(stdin, deadline))?;
            }
            Err(_) => return Err(Wait::Failed),
        }
    }
    Ok(())
}

/// Reads one frame, giving up at `deadline`. The process is not trusted:
/// the frame grows as its bytes arrive (a length it claims allocates
/// nothing), and bytes past the frame are a failure.
fn read_frame_until(stdout: &mut ChildStdout, deadline: Instant) -> Result<Option<Vec<u8>>, Wait> {
    let mut frame = Vec::new();
    let mut chunk = [0; 16 * 1024];
    let mut len = None;
    while len.is_none_or(|len| frame.len() < 4 + len) {
        waited(sys::wait_readable(stdout, deadline))?;
        let n = match stdout.read(&mut chunk) {
            Ok(0) if frame.is_empty() => return Ok(None),
            Ok(0) => return Err(Wait::Failed),
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(Wait::Failed),
        };
        frame.extend_from_slice(&chunk[..n]);
        if len.is_none() && frame.len() >= 4 {
            let header: [u8; 4] = frame[..4].try_into().expect("four bytes");
            let claimed = u32::from_le_bytes(header) as usize;
            if claimed > MAX_FRAME {
                return Err(Wait::Failed);
            }
            len = Some(claimed);
        }
    }
    if len.is_some_and(|len| frame.len() != 4 + len) {
        // Only one call is ever in flight: nothing may follow its answer.
        return Err(Wait::Failed);
    }
    frame.drain(..4);
    Ok(Some(frame))
}

/// A wait for a pipe, as a call's outcome: ready, past the deadline, or
/// failed.
fn waited(ready: io::Result<bool>) -> Result<(), Wait> {
    match ready {
        Ok(true) => Ok(()),
        Ok(false) => Err(Wait::TimedOut),
        Err(_) => Err(Wait::Failed),
    }
}

/// How a process that stopped answering ended.
fn ended(child: &mut Child) -> String {
    // It closed its output: it is ending, if it has not yet.
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(1)),
            _ => {
                let _ = child.kill();
                break child.wait().ok();
            }
        }
    };
    status.map_or_else(|| "ended".to_owned(), describe)
}

fn describe(status: ExitStatus) -> String {
    // In the probe's words, without its standard error (which is logged).
    crate::ended::ProbeFailure::from_status(status, String::new()).to_string()
}
