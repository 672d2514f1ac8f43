//! Second layer: how a child process (a probe, an isolated plugin's process) ended, in
//! the words the loader's messages use.

use std::{fmt, time::Duration};

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

impl ProbeFailure {
    /// How a process that ended with `status` ended: by a signal, or with
    /// an exit status. Isolated plugins' processes are described the same
    /// way.
    pub(crate) fn from_status(status: std::process::ExitStatus, stderr: String) -> Self {
        if let Some(signal) = crate::sys::signal_of(status) {
            return Self::Signal { signal, stderr };
        }
        Self::Exited {
            code: status.code().unwrap_or(-1),
            stderr,
        }
    }
}
