//! Child-process layer, step 8 isolated: a plugin that runs in a process of
//! its own.
//!
//! The same plugin file, the same checks, the same handle: an isolated
//! plugin's library is opened, checked and initialised in a child process
//! (the application's own executable started again, like the probe), and
//! each call through its handle is encoded ([`dropin::wire`]), handed to
//! that process through memory the two share (`slots`), served there, and
//! answered the same way. A plugin that crashes, aborts, exits or
//! hangs ends its own process, not the host: the call fails with
//! [`CallErrorKind::Crashed`](dropin::CallErrorKind::Crashed) or [`CallErrorKind::TimedOut`](dropin::CallErrorKind::TimedOut) naming how, and
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
//!     let builder = Loader::<GreeterPlugin>::builder()
//!         .dir("plugins")
//!         .probe(Probe::current_exe()?)
//!         .isolate(Isolate::Unlocked);
//!     // SAFETY: only files our lock file approves run in this process, and
//!     // the lock file lists our own builds; every other plugin is isolated.
//!     let report = unsafe { builder.build() }.load()?;
//!     // An application that isolates every plugin needs no `unsafe`:
//!     // `builder.build_isolated()` gives that loader.
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
    io::{self, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use dropin::Interface;

use super::frame::{
    MAX_FRAME, TooLong, Wait, message, read_frame, read_frame_until, write_frame, write_frame_until,
};
use super::not_loaded::NotLoaded;

/// The target of this module's log records: its path before the modules
/// moved into layers, which `RUST_LOG` filters name.
const LOG_TARGET: &str = "dropin_host::isolation";

/// The environment variable that makes a process started by the loader
/// serve an isolated plugin of the interface it names.
pub const ISOLATED_ENV: &str = "DROPIN_ISOLATED";

/// The default time an isolated plugin may take to answer one call; a
/// plugin that takes longer is killed and the call fails.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The default time an isolated plugin's process may take to start, open
/// its library and run `init`; a process that takes longer is killed and
/// the plugin is rejected (or, when it restarts, its call fails).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

pub use crate::sys::MIN_PROCESS_LIMIT;

/// The longest line of an isolated process's standard error that is
/// logged; the rest of a longer line is dropped.
const MAX_LINE: usize = 64 * 1024;

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
    pub(crate) start_timeout: Duration,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) process_limit: Option<u32>,
    pub(crate) recovery: Recovery,
    pub(crate) confined: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            call_timeouts: std::collections::HashMap::new(),
            start_timeout: DEFAULT_START_TIMEOUT,
            memory_limit: None,
            process_limit: None,
            recovery: Recovery::default(),
            confined: false,
        }
    }
}

impl Settings {
    /// The limits an isolated plugin's process, or a probe's, runs within.
    pub(crate) fn limits(&self) -> crate::sys::Limits {
        crate::sys::Limits {
            memory: self.memory_limit,
            processes: self.process_limit,
        }
    }

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
///
/// A safe function, though it runs a plugin's code in this process when it
/// serves, for the reasons [`probe::serve_if_requested`](crate::probe::serve_if_requested)
/// gives: call it first thing in `main`.
pub fn serve_if_requested<I: Interface>() {
    // `<interface>:<nonce>`: this call serves only its own interface's
    // plugins; a value no call serves makes `Loader::load` refuse to run.
    let Some(value) = std::env::var_os(ISOLATED_ENV) else {
        return;
    };
    let value = value.to_string_lossy();
    let Some(nonce) = value
        .strip_prefix(I::NAME)
        .and_then(|rest| rest.strip_prefix(':').or(rest.is_empty().then_some(rest)))
    else {
        return;
    };
    // The plugin and all it starts end together.
    let nonce = crate::child::role::enter(ISOLATED_ENV, nonce, "isolated plugin process");
    let code = match serve::<I>(&nonce) {
        Ok(()) => 0,
        Err(error) => {
            let _ = writeln!(io::stderr(), "isolated plugin process: {error}");
            1
        }
    };
    std::process::exit(code);
}

mod callbacks;
mod calls;
mod protocol;
mod remote;
mod serve;
mod slots;
mod spawn;

use callbacks::*;
use protocol::*;
use remote::*;
use serve::*;
use spawn::*;
pub(crate) use spawn::{Launcher, UNCONFINABLE, start};
