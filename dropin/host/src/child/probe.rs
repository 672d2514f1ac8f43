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
//! only maps what a probe survived.
//!
//! The probe is the application's own executable started again: the
//! application calls [`serve_if_requested`] first thing in `main`, and asks
//! the loader to probe with [`LoaderBuilder::probe`](crate::LoaderBuilder::probe).

use std::{
    ffi::OsString,
    fmt,
    io::{self, BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread,
    time::Duration,
};

use abi_stable::library::{LibraryError, lib_header_from_path};
use dropin::abi::ModuleRef;

pub use crate::ended::ProbeFailure;
use crate::inspect::verify::verify_library;

/// The target of this module's log records: its path before the modules
/// moved into layers, which `RUST_LOG` filters name.
const LOG_TARGET: &str = "dropin_host::probe";

/// The environment variable that makes a process started by the loader
/// serve as a probe: [`serve_if_requested`] checks it.
pub const PROBE_ENV: &str = "DROPIN_PROBE";

/// What the probe answers for a library it survived.
const SURVIVED: &str = "survived";

/// The default time a probe may take for one library.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves as a probe and exits, if the loader started this process as one;
/// otherwise returns at once. Call it first thing in `main`, before anything
/// else reads the arguments or starts threads.
pub fn serve_if_requested() {
    if std::env::var_os(PROBE_ENV).is_some_and(|value| value == "1") {
        let code = match serve(io::stdin().lock(), io::stdout().lock()) {
            Ok(()) => 0,
            Err(_) => 1,
        };
        std::process::exit(code);
    }
}

/// Reads one path, probes it, answers one line, and returns: the process
/// then exits normally, which runs the library's destructors too (a
/// corrupted one would crash the host when it exits).
fn serve(input: impl BufRead, mut output: impl Write) -> io::Result<()> {
    if let Some(line) = input.lines().next() {
        let path = PathBuf::from(line?);
        let mut report = Report::default();
        // Whatever the outcome of the checks, surviving them is the answer,
        // with what the probe read: the host applies its own rules to it.
        if let Err(refusal) = probe_one(&path, &mut report) {
            report.set(REFUSAL, refusal.as_bytes());
        }
        log::debug!(target: LOG_TARGET, "probe {}: {report:?}", path.display());
        writeln!(output, "{SURVIVED}{}", report.encode())?;
        output.flush()?;
    }
    Ok(())
}

/// The keys of a probe's report: what the root module says, for a library
/// that has one; why the probe stopped, if it did.
const ROOT_NAME: &str = "root_name";
const ROOT_VERSION: &str = "root_version";
const HAS_LAYOUT: &str = "has_layout";
const PLUGIN_NAME: &str = "plugin_name";
const PLUGIN_VERSION: &str = "plugin_version";
const INTERFACE_NAME: &str = "interface_name";
const INTERFACE_VERSION: &str = "interface_version";
const HOST_REQUIREMENT: &str = "host_requirement";
const PANIC_ABORT: &str = "panic_abort";
const REFUSAL: &str = "refusal";
const NO_ROOT: &str = "no_root";

/// Everything loading does with a library before the plugin's `init`,
/// recording what it reads in `report`; the reason it stopped early, if it
/// did.
fn probe_one(path: &Path, report: &mut Report) -> Result<(), String> {
    verify_library(path).map_err(|error| error.to_string())?;
    let reason = |error| {
        // The host's wording for the error, without the path it starts with.
        let message = crate::load::classify(path, path, None, error, ("", "")).to_string();
        let prefix = format!("{}: ", path.display());
        message
            .strip_prefix(&prefix)
            .map_or_else(|| message.clone(), str::to_owned)
    };
    let header = match lib_header_from_path(path) {
        Ok(header) => header,
        // Not a plugin at all: the host names its own interface's export.
        Err(LibraryError::GetSymbolError { .. }) => {
            report.set(NO_ROOT, b"1");
            return Ok(());
        }
        Err(error) => return Err(reason(error)),
    };
    let consts = header.root_mod_consts();
    let root_version = consts.version_strings().version;
    report.set(ROOT_NAME, consts.name().as_rslice().as_slice());
    report.set(ROOT_VERSION, root_version.as_rslice().as_slice());
    report.set(HAS_LAYOUT, flag(header.layout().is_some()));
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
    let module = header.init_root_module::<ModuleRef>().map_err(reason)?;
    // Read everything the host reads before the plugin's `init`, the way it
    // reads it: a corrupted relocation can leave any of these pointing
    // anywhere, and the probe, not the host, must be the one to find out.
    report.set(PLUGIN_NAME, module.plugin_name().as_rslice().as_slice());
    report.set(
        PLUGIN_VERSION,
        module.plugin_version().as_rslice().as_slice(),
    );
    report.set(
        INTERFACE_NAME,
        module.interface_name().as_rslice().as_slice(),
    );
    report.set(
        INTERFACE_VERSION,
        module.interface_version().as_rslice().as_slice(),
    );
    report.set(
        HOST_REQUIREMENT,
        module.host_requirement().as_rslice().as_slice(),
    );
    report.set(PANIC_ABORT, flag(module.build().panic_abort));
    let mut seen = module.build().dropin_version.len();
    for entry in dropin::abi::items(module.methods()) {
        // Every descriptor, recursively, as the comparison may read it.
        seen += entry.desc.walk();
    }
    log::trace!(target: LOG_TARGET, "probe read {seen} bytes of metadata");
    Ok(())
}

fn flag(value: bool) -> &'static [u8] {
    if value { b"1" } else { b"0" }
}

/// What a probe read from a library it survived: byte strings by key, sent
/// as hexadecimal so that no byte of a library can break the line apart.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    fields: Vec<(String, Vec<u8>)>,
}

impl Report {
    fn set(&mut self, key: &str, value: &[u8]) {
        self.fields.push((key.to_owned(), value.to_vec()));
    }

    fn get(&self, key: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value.as_slice())
    }

    fn encode(&self) -> String {
        let mut line = String::new();
        for (key, value) in &self.fields {
            line.push('\t');
            line.push_str(key);
            line.push('=');
            for byte in value {
                line.push_str(&format!("{byte:02x}"));
            }
        }
        line
    }

    /// The fields of an answer's tail; `None` if it is not one `encode`
    /// wrote.
    fn decode(tail: &str) -> Option<Self> {
        let mut report = Self::default();
        for field in tail.split('\t').filter(|field| !field.is_empty()) {
            let (key, hex) = field.split_once('=')?;
            if hex.len() % 2 != 0 {
                return None;
            }
            let value = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            report.fields.push((key.to_owned(), value));
        }
        Some(report)
    }

    /// Why the probe stopped before reading the plugin's metadata, if it did.
    pub(crate) fn refusal(&self) -> Option<String> {
        self.get(REFUSAL)
            .map(|reason| String::from_utf8_lossy(reason).into_owned())
    }

    /// Whether the library exports no root module at all.
    pub(crate) fn no_root(&self) -> bool {
        self.get(NO_ROOT) == Some(b"1")
    }

    /// What the root module says of itself: its name, its version, and
    /// whether it carries a layout.
    pub(crate) fn root(&self) -> Option<(&[u8], &[u8], bool)> {
        Some((
            self.get(ROOT_NAME)?,
            self.get(ROOT_VERSION)?,
            self.get(HAS_LAYOUT)? == b"1",
        ))
    }

    /// What the plugin says of itself, if the probe got that far.
    pub(crate) fn facts(&self) -> Option<crate::load::Facts<'_>> {
        Some(crate::load::Facts {
            plugin_name: self.get(PLUGIN_NAME)?,
            plugin_version: self.get(PLUGIN_VERSION)?,
            interface_name: self.get(INTERFACE_NAME)?,
            interface_version: self.get(INTERFACE_VERSION)?,
            host_requirement: self.get(HOST_REQUIREMENT)?,
            panic_abort: self.get(PANIC_ABORT)? == b"1",
        })
    }

    /// The plugin's name, if the probe read one that is valid.
    pub(crate) fn plugin_name(&self) -> Option<&str> {
        let name = std::str::from_utf8(self.get(PLUGIN_NAME)?).ok()?;
        crate::load::check_name(name).ok().map(|()| name)
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
    running: Option<Running>,
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

/// The most of a probe's standard error kept for a message.
const STDERR_TAIL: usize = 400;

impl Prober {
    pub(crate) fn new(probe: Probe) -> Self {
        Self {
            probe,
            running: None,
        }
    }

    /// Probes the library at `path`; returns what the probe read.
    pub(crate) fn check(&mut self, path: &Path) -> Result<Report, ProbeFailure> {
        let running = match &mut self.running {
            Some(running) => running,
            empty => {
                empty.insert(
                    self.probe
                        .start()
                        .map_err(|error| ProbeFailure::Unavailable {
                            message: error.to_string(),
                        })?,
                )
            }
        };
        running
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let asked =
            writeln!(running.stdin, "{}", path.display()).and_then(|()| running.stdin.flush());
        let answer = match asked {
            Ok(()) => running.answers.recv_timeout(self.probe.timeout),
            Err(_) => Err(RecvTimeoutError::Disconnected),
        };
        match answer {
            Ok(line) if line.starts_with(SURVIVED) => {
                // One library per process: wait for it to exit normally,
                // destructors included.
                let running = self.running.take().expect("started above");
                running.finish(self.probe.timeout)?;
                Report::decode(&line[SURVIVED.len()..]).ok_or_else(|| ProbeFailure::Unavailable {
                    message: format!("answered {line:?}, which is not a report"),
                })
            }
            Ok(line) => {
                let running = self.running.take().expect("started above");
                Err(running.end(Some(line)))
            }
            Err(RecvTimeoutError::Timeout) => {
                let mut running = self.running.take().expect("started above");
                let _ = running.child.kill();
                let _ = running.child.wait();
                Err(ProbeFailure::Hung {
                    timeout: self.probe.timeout,
                })
            }
            Err(RecvTimeoutError::Disconnected) => {
                let running = self.running.take().expect("started above");
                Err(running.end(None))
            }
        }
    }
}

impl Probe {
    fn start(&self) -> io::Result<Running> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env(PROBE_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let mut stderr_pipe = child.stderr.take().expect("piped");
        let (send, answers) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
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
            stdin,
            answers,
            stderr,
        })
    }
}

impl Running {
    /// Waits for a probe that answered to exit; anything but a clean exit
    /// within `timeout` is a failure.
    fn finish(mut self, timeout: Duration) -> Result<(), ProbeFailure> {
        drop(self.stdin);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(_)) => return Err(ended(self.child, &self.stderr, None)),
                Ok(None) if std::time::Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(1));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(ProbeFailure::Hung { timeout });
                }
                Err(error) => {
                    return Err(ProbeFailure::Unavailable {
                        message: error.to_string(),
                    });
                }
            }
        }
    }

    /// Waits for the process that stopped answering and says how it ended.
    fn end(self, unexpected: Option<String>) -> ProbeFailure {
        drop(self.stdin);
        ended(self.child, &self.stderr, unexpected)
    }
}

/// How the probe process `child`, which has ended or is ending, ended.
fn ended(mut child: Child, stderr: &Mutex<Vec<u8>>, unexpected: Option<String>) -> ProbeFailure {
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
    let mut stderr = String::from_utf8_lossy(&stderr.lock().unwrap_or_else(|e| e.into_inner()))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(line) = unexpected {
        stderr = format!("answered {line:?}; {stderr}");
    }
    ProbeFailure::from_status(status, stderr)
}

impl Drop for Prober {
    fn drop(&mut self) {
        if let Some(mut running) = self.running.take() {
            // Closing its input ends the probe's loop.
            drop(running.stdin);
            let _ = running.child.wait();
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
