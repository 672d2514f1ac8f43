//! Child-process layer, step 6: open a library first in a short-lived child
//! process.
//!
//! The dynamic loader trusts every byte of a library: a wrong value in its
//! dynamic section, relocations, hash or version tables makes it crash the
//! process, or end it with its own assertion (`_exit(127)`), and the
//! library's constructors run before any check can look inside. Checking
//! each table before `dlopen` would always leave one out. So, before the
//! host maps a library it has no lock-file approval for, a probe process
//! does everything loading does up to the plugin's `init`: the header
//! checks, `dlopen`, abi_stable's checks and the root module's constructor.
//! A probe that dies, exits or hangs is a rejection that says how; the host
//! only maps what a probe survived. The probe says nothing else: what the
//! plugin is (its name, versions, interface) comes from the file's
//! description, which the host reads itself.
//!
//! The probe is the application's own executable started again: the
//! application calls [`serve_if_requested`] first thing in `main`, and asks
//! the loader to probe with [`LoaderBuilder::probe`](crate::LoaderBuilder::probe).

use std::{
    ffi::OsString,
    fmt,
    io::{self, Read},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use abi_stable::library::{LibraryError, lib_header_from_path};
use dropin::{abi::ModuleRef, wire::Encode};

use super::{
    frame::{
        MAX_FRAME, Wait, message, read_frame, read_frame_until, write_frame, write_frame_until,
    },
    not_loaded::NotLoaded,
};
pub use crate::ended::ProbeFailure;
use crate::inspect::verify::{VerifyError, verify_library};

/// The target of this module's log records: its path before the modules
/// moved into layers, which `RUST_LOG` filters name.
const LOG_TARGET: &str = "dropin_host::probe";

/// The environment variable that makes a process started by the loader
/// serve as a probe: [`serve_if_requested`] checks it.
pub const PROBE_ENV: &str = "DROPIN_PROBE";

/// The longest report a probe may answer: a few names and versions.
const MAX_REPORT: usize = 1 << 20;

/// The default time a probe may take for one library.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves as a probe and exits, if the loader started this process as one;
/// otherwise returns at once. Call it first thing in `main`, before anything
/// else reads the arguments or starts threads.
///
/// A safe function, though it runs a library's code in this process when
/// it serves. It serves only when the environment says the loader started
/// this process for that purpose, and it is called first thing, so nothing
/// of the application has run in the process yet; whoever else starts the
/// program with that environment and input chooses what it runs, as they
/// could with `LD_PRELOAD`. So calling it vouches for nothing (unlike
/// [`LoaderBuilder::build`](crate::LoaderBuilder::build)). Called later in
/// `main`, that no longer holds.
pub fn serve_if_requested() {
    if let Some(value) = std::env::var_os(PROBE_ENV) {
        // Set, this process is its host's probe or nothing: it never goes
        // on as the program it is.
        let nonce = crate::child::role::enter(PROBE_ENV, &value.to_string_lossy(), "dropin probe");
        let code = match serve(&nonce) {
            Ok(()) => 0,
            Err(Served::NotStarted(not)) => crate::child::role::refuse(not),
            Err(Served::Failed(error)) => {
                let _ = io::Write::write_fmt(
                    &mut io::stderr(),
                    format_args!("dropin probe: {error}\n"),
                );
                1
            }
        };
        std::process::exit(code);
    }
}

/// Why a probe did not answer.
enum Served {
    /// Its host did not start it.
    NotStarted(crate::child::role::NotStarted),
    /// Its pipes failed.
    Failed(io::Error),
}

impl From<io::Error> for Served {
    fn from(error: io::Error) -> Self {
        Self::Failed(error)
    }
}

/// Reads one request, probes the library it names, answers with what it
/// read, and returns: the process then exits normally, which runs the
/// library's destructors too (a corrupted one would crash the host when it
/// exits).
fn serve(nonce: &str) -> Result<(), Served> {
    let not_started = |why: &str| {
        Served::NotStarted(crate::child::role::NotStarted(format!(
            "{PROBE_ENV} is set, but {why}"
        )))
    };
    let Some(request) = read_frame(&mut io::stdin().lock(), MAX_FRAME)? else {
        return Err(not_started(
            "standard input ended before the host's request",
        ));
    };
    let request = message::<Request>(&request)
        .map_err(|_| not_started("standard input does not start with a host's request"))?;
    crate::child::role::check(PROBE_ENV, nonce, &request.nonce).map_err(Served::NotStarted)?;
    // Frames go out on what was standard output; whatever the library
    // prints there goes to standard error instead.
    let mut output = crate::sys::protocol_output()?;
    let path = crate::sys::path_from_bytes(request.path);
    let copy = crate::sys::path_from_bytes(request.copy);
    let mut report = Report::default();
    // Whatever the outcome of the checks, surviving them is the answer,
    // with what the probe read: the host applies its own rules to it.
    if let Err(refusal) = probe_one(&path, &copy) {
        report.refusal = Some(refusal);
    }
    log::debug!(target: LOG_TARGET, "probe {}: {report:?}", path.display());
    let mut answer = Vec::new();
    report.encode(&mut answer);
    Ok(write_frame(&mut output, &answer)?)
}

/// What the host asks a probe: the library to open, `copy`, the private
/// copy of the plugin file `path` (which messages name).
#[derive(dropin::Stable)]
struct Request {
    /// The nonce in the probe's environment: proof that its host wrote
    /// this.
    nonce: Vec<u8>,
    path: Vec<u8>,
    copy: Vec<u8>,
}

/// Everything loading does with a library before the plugin's `init`, the
/// way it does it; the reason it stopped early, if it did.
fn probe_one(path: &Path, copy: &Path) -> Result<(), NotLoaded> {
    match verify_library(copy) {
        // The host allows an executable stack or not, under its policy,
        // from the headers it reads itself: the probe's process is no
        // host to protect.
        Ok(()) | Err(VerifyError::ExecutableStack) => {}
        Err(error) => {
            return Err(NotLoaded::Other {
                reason: error.to_string(),
            });
        }
    }
    // The host's kind of error, and its words.
    let refusal =
        |header, error| NotLoaded::of(&crate::load::classify(path, copy, header, error, ("", "")));
    let header = match lib_header_from_path(copy) {
        Ok(header) => header,
        // Not a plugin at all: the host finds that out itself.
        Err(LibraryError::GetSymbolError { .. }) => return Ok(()),
        Err(error) => return Err(refusal(None, error)),
    };
    let consts = header.root_mod_consts();
    let root_version = consts.version_strings().version;
    if consts.name().as_rslice().as_slice() != b"dropin"
        || header.layout().is_none()
        || !crate::load::same_minor(
            &dropin::abi::lossy(&root_version),
            dropin::abi::DROPIN_VERSION,
        )
    {
        // Not a module this dropin may initialise: the host refuses it from
        // the root module's name and version alone.
        return Ok(());
    }
    let module = header
        .init_root_module::<ModuleRef>()
        .map_err(|error| refusal(Some(header), error))?;
    // Read everything the host reads before the plugin's `init`, the way it
    // reads it: a corrupted relocation can leave any of these pointing
    // anywhere, and the probe, not the host, must be the one to find out.
    let mut seen = 0;
    for text in [
        module.plugin_name(),
        module.plugin_version(),
        module.interface_name(),
        module.interface_version(),
        module.host_requirement(),
    ] {
        seen += dropin::abi::lossy(&text).len();
    }
    seen += usize::from(module.build().panic_abort);
    seen += module.build().dropin_version.len();
    for entry in dropin::abi::items(module.methods()) {
        // Every descriptor, recursively, as the comparison may read it.
        seen += entry.desc.walk();
    }
    log::trace!(target: LOG_TARGET, "probe read {seen} bytes of metadata");
    Ok(())
}

/// A probe's answer for a library it survived: why it stopped before the
/// plugin's `init`, if it did. Nothing else: what a plugin is comes from
/// its description, never from a process the plugin controls.
#[derive(dropin::Stable, Debug, Default)]
pub(crate) struct Report {
    refusal: Option<NotLoaded>,
}

impl Report {
    /// Why the probe stopped before the plugin's `init`, if it did.
    pub(crate) fn refusal(&self) -> Option<&NotLoaded> {
        self.refusal.as_ref()
    }
}

/// How to start a probe process.
#[derive(Debug, Clone)]
pub struct Probe {
    program: PathBuf,
    args: Vec<OsString>,
    timeout: Duration,
}

impl Probe {
    /// How to start the program for an isolated plugin.
    pub(crate) fn launcher(&self) -> crate::child::isolation::Launcher {
        crate::child::isolation::Launcher {
            program: self.program.clone(),
            args: self.args.clone(),
        }
    }

    /// This process's own executable, which must call
    /// [`serve_if_requested`] first thing in `main`.
    ///
    /// # Errors
    ///
    /// The executable's path cannot be found.
    pub fn current_exe() -> io::Result<Self> {
        Ok(Self::command(std::env::current_exe()?))
    }

    /// Another program that calls [`serve_if_requested`] first thing.
    pub fn command(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            timeout: DEFAULT_PROBE_TIMEOUT,
        }
    }

    /// Arguments for the program.
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// How long one library may take (default: [`DEFAULT_PROBE_TIMEOUT`]);
    /// a probe that takes longer is killed and the library refused.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A probe process: one per library, so that each library's destructors
/// run, at the probe's exit, in a process of its own.
pub(crate) struct Prober {
    probe: Probe,
    /// Whether each probe process is confined as isolated plugins are,
    /// within their limits.
    confined: bool,
    limits: crate::sys::Limits,
    running: Option<Running>,
}

struct Running {
    child: Child,
    /// The nonce in its environment, which its request carries too.
    nonce: String,
    /// Open until the process has been asked its one question.
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    stderr: Arc<Mutex<Vec<u8>>>,
}

/// The most of a probe's standard error kept for a message.
const STDERR_TAIL: usize = 400;

impl Prober {
    /// A prober starting `probe`'s program, confined if `confined`, within
    /// `limits`: a probe runs a file's constructors, which a loader that
    /// confines and limits its plugins confines and limits too.
    pub(crate) fn new(probe: Probe, confined: bool, limits: crate::sys::Limits) -> Self {
        Self {
            probe,
            confined,
            limits,
            running: None,
        }
    }

    /// Probes the library at `path`, the private copy of the plugin file
    /// `original`; returns what the probe read.
    pub(crate) fn check(&mut self, original: &Path, path: &Path) -> Result<Report, ProbeFailure> {
        let running = match &mut self.running {
            Some(running) => running,
            empty => empty.insert(self.probe.start(self.confined, self.limits).map_err(
                |error| ProbeFailure::Unavailable {
                    message: error.to_string(),
                },
            )?),
        };
        running
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        // One deadline for the whole exchange, the exit included: a probe
        // that answers and then goes silent is as hung as one that never
        // answers.
        let deadline = crate::child::deadline_in(self.probe.timeout);
        let mut request = Vec::new();
        Request {
            nonce: running.nonce.clone().into_bytes(),
            path: dropin::abi::path_bytes(original),
            copy: dropin::abi::path_bytes(path),
        }
        .encode(&mut request);
        let stdin = running.stdin.as_mut().expect("open until the question");
        let answer = write_frame_until(stdin, &request, deadline)
            .and_then(|()| read_frame_until(&mut running.stdout, MAX_REPORT, deadline));
        let mut running = self.running.take().expect("started above");
        match answer {
            Ok(Some(frame)) => match message::<Report>(&frame) {
                // One library per process: wait for it to exit normally,
                // destructors included.
                Ok(report) => running
                    .finish(deadline, self.probe.timeout)
                    .map(|()| report),
                // Not a probe any more: nothing it says next counts.
                Err(error) => {
                    running.kill();
                    Err(ProbeFailure::Unavailable {
                        message: format!("answered with a {error}"),
                    })
                }
            },
            Ok(None) | Err(Wait::Failed | Wait::Broken(_)) => {
                Err(running.end(deadline, self.probe.timeout))
            }
            Err(Wait::TimedOut) => Err(running.hung(self.probe.timeout)),
        }
    }
}

impl Probe {
    fn start(&self, confined: bool, limits: crate::sys::Limits) -> io::Result<Running> {
        if confined && !crate::sys::target::CONFINES {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                crate::child::isolation::UNCONFINABLE,
            ));
        }
        if let Some(why) = limits.unenforceable() {
            return Err(io::Error::new(io::ErrorKind::Unsupported, why));
        }
        let nonce = crate::child::role::nonce();
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env(PROBE_ENV, &nonce)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // It dies with the host, and is confined as the plugins are.
        crate::sys::confine(&mut command, limits, confined);
        let mut child = command.spawn()?;
        let stdin = child.stdin.take().expect("piped");
        // Writes wait for the pipe within the deadline, never for ever.
        crate::sys::set_nonblocking(&stdin)?;
        let stdout = child.stdout.take().expect("piped");
        let mut stderr_pipe = child.stderr.take().expect("piped");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buffer = [0; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                let mut kept = sink.lock().unwrap_or_else(|e| e.into_inner());
                kept.extend_from_slice(&buffer[..n]);
                let excess = kept.len().saturating_sub(STDERR_TAIL);
                kept.drain(..excess);
            }
        });
        Ok(Running {
            child,
            nonce,
            stdin: Some(stdin),
            stdout,
            stderr,
        })
    }
}

impl Running {
    /// Waits for a probe that answered to exit; anything but a clean exit
    /// by `deadline` is a failure.
    fn finish(mut self, deadline: Instant, timeout: Duration) -> Result<(), ProbeFailure> {
        match self.exited(deadline) {
            Some(Ok(status)) if status.success() => Ok(()),
            Some(Ok(_)) => Err(ended(self.child, &self.stderr)),
            Some(Err(error)) => Err(ProbeFailure::Unavailable {
                message: error.to_string(),
            }),
            None => Err(self.hung(timeout)),
        }
    }

    /// Says how the process that stopped answering ended; one still
    /// running at `deadline` is killed as hung.
    fn end(mut self, deadline: Instant, timeout: Duration) -> ProbeFailure {
        match self.exited(deadline) {
            Some(Ok(_)) => ended(self.child, &self.stderr),
            Some(Err(error)) => ProbeFailure::Unavailable {
                message: error.to_string(),
            },
            None => self.hung(timeout),
        }
    }

    /// The process's exit status, once it exits by `deadline`; `None` if
    /// it is still running then. Its input is closed first.
    fn exited(&mut self, deadline: Instant) -> Option<io::Result<ExitStatus>> {
        // Closing its input ends a probe waiting for a request.
        self.stdin.take();
        match crate::child::exit_by(&mut self.child, deadline) {
            Ok(status) => status.map(Ok),
            Err(error) => {
                self.kill();
                Some(Err(error))
            }
        }
    }

    /// Kills a probe that took longer than `timeout`.
    fn hung(mut self, timeout: Duration) -> ProbeFailure {
        self.kill();
        ProbeFailure::Hung { timeout }
    }

    /// Kills the process and reaps it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the probe process `child`, which has ended or is ending, ended.
fn ended(mut child: Child, stderr: &Mutex<Vec<u8>>) -> ProbeFailure {
    let status = match child.wait() {
        Ok(status) => status,
        Err(error) => {
            return ProbeFailure::Unavailable {
                message: error.to_string(),
            };
        }
    };
    // Give the stderr reader the last bytes the process wrote.
    thread::sleep(Duration::from_millis(20));
    let stderr = String::from_utf8_lossy(&stderr.lock().unwrap_or_else(|e| e.into_inner()))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    ProbeFailure::from_status(status, stderr)
}

impl Drop for Prober {
    /// A probe started and never asked (a panic between the two) is
    /// killed: no probe outlives its prober.
    fn drop(&mut self) {
        if let Some(mut running) = self.running.take() {
            running.kill();
        }
    }
}

impl fmt::Debug for Prober {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prober")
            .field("probe", &self.probe)
            .field("running", &self.running.as_ref().map(|r| r.child.id()))
            .finish()
    }
}
