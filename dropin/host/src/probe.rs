//! Stage 3a: open a library first in a short-lived child process.
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

use abi_stable::library::lib_header_from_path;
use dropin::__private::ModuleRef;

use crate::verify::verify_library;

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
        // Whatever the outcome of the checks, surviving them is the answer:
        // the host repeats every check itself and reports them precisely.
        let outcome = probe_one(&path);
        log::debug!("probe {}: {outcome:?}", path.display());
        // The plugin's name, when it has a valid one: the host refuses a
        // duplicate before mapping it at all.
        let name = outcome.unwrap_or_default();
        writeln!(output, "{SURVIVED}\t{}", name.escape_default())?;
        output.flush()?;
    }
    Ok(())
}

/// Everything loading does with a library before the plugin's `init`;
/// the plugin's name if it has one.
fn probe_one(path: &Path) -> Result<String, String> {
    verify_library(path).map_err(|error| error.to_string())?;
    let header = lib_header_from_path(path).map_err(|error| error.to_string())?;
    let consts = header.root_mod_consts();
    if consts.name().as_str() != "dropin"
        || header.layout().is_none()
        || !crate::load::same_minor(
            consts.version_strings().version.as_ref(),
            dropin::__private::DROPIN_VERSION,
        )
    {
        return Err("not a dropin plugin of this version".to_owned());
    }
    let module = header
        .init_root_module::<ModuleRef>()
        .map_err(|error| error.to_string())?;
    // Read everything the host reads before the plugin's `init`, the way it
    // reads it: a corrupted relocation can leave any of these pointing
    // anywhere, and the probe, not the host, must be the one to find out.
    let strings = [
        module.plugin_name(),
        module.plugin_version(),
        module.interface_name(),
        module.interface_version(),
        module.host_requirement(),
        module.build().dropin_version,
    ];
    let mut seen = 0usize;
    for text in strings {
        seen += std::str::from_utf8(text.as_rslice().as_slice()).map_or(0, str::len);
    }
    for entry in dropin::__private::items(module.methods()) {
        // Every descriptor, recursively, as the comparison may read it.
        seen += entry.desc.walk();
    }
    log::trace!("probe read {seen} bytes of metadata");
    std::str::from_utf8(module.plugin_name().as_rslice().as_slice())
        .map(str::to_owned)
        .map_err(|error| error.to_string())
}

/// How to start a probe process.
#[derive(Debug, Clone)]
pub struct Probe {
    program: PathBuf,
    args: Vec<OsString>,
    timeout: Duration,
}

impl Probe {
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

/// How a probe ended on a library.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeFailure {
    /// The probe process was killed by a signal.
    Signal {
        /// The signal's number.
        signal: i32,
        /// The end of what the process wrote to its standard error.
        stderr: String,
    },
    /// The probe process exited (the dynamic loader's own assertions end it
    /// with status 127; a library's constructor may call `exit`).
    Exited {
        /// Its exit status.
        code: i32,
        /// The end of what the process wrote to its standard error.
        stderr: String,
    },
    /// The probe did not answer in time and was killed.
    Hung {
        /// How long it was given.
        timeout: Duration,
    },
    /// The probe process could not be started or spoken to.
    Unavailable {
        /// What the operating system said.
        message: String,
    },
}

impl fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail = |f: &mut fmt::Formatter<'_>, stderr: &str| {
            if stderr.is_empty() {
                Ok(())
            } else {
                write!(f, " ({stderr})")
            }
        };
        match self {
            Self::Signal { signal, stderr } => {
                write!(f, "was killed by signal {signal}{}", signal_name(*signal))?;
                tail(f, stderr)
            }
            Self::Exited { code, stderr } => {
                write!(f, "exited with status {code}")?;
                tail(f, stderr)
            }
            Self::Hung { timeout } => write!(f, "did not finish within {timeout:?} and was killed"),
            Self::Unavailable { message } => write!(f, "could not be run: {message}"),
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        4 => " (SIGILL)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        8 => " (SIGFPE)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        _ => "",
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

    /// Probes the library at `path`; returns the plugin name the probe read,
    /// if any.
    pub(crate) fn check(&mut self, path: &Path) -> Result<Option<String>, ProbeFailure> {
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
            Ok(line) if line.split('\t').next() == Some(SURVIVED) => {
                // One library per process: wait for it to exit normally,
                // destructors included.
                let running = self.running.take().expect("started above");
                running.finish(self.probe.timeout)?;
                // Plugin names are plain (no whitespace, no control
                // characters); one that needed escaping is not a valid name.
                Ok(line
                    .split_once('\t')
                    .map(|(_, name)| name.to_owned())
                    .filter(|name| !name.is_empty() && !name.contains('\\')))
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
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return ProbeFailure::Signal { signal, stderr };
        }
    }
    ProbeFailure::Exited {
        code: status.code().unwrap_or(-1),
        stderr,
    }
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
