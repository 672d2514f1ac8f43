//! The command line: options, commands and their values.

use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};
use dropin_host::{parse_duration, parse_size};
use semver::VersionReq;

pub(crate) const AFTER_HELP: &str = "\
Exit status:
  0  every candidate file was accepted (list, check, lock) or loaded (and, for
     greet, every greeting succeeded)
  1  some file was rejected, a greeting failed, or a named plugin is not loaded
  2  usage error; the plugins folder is missing, unreadable or writable by
     others; plugins.toml is unsafe, does not parse or has a setting it may not;
     the lock file is required and missing, or does not parse; or the snapshot
     folder cannot be made, is noexec or has no room for the copies
  3  standard output was closed before everything was written
  4  a plugin's code called exit while it was being loaded (the file is named
     on stderr)

Configuration: plugins.toml in the plugins folder: isolate, call_timeout,
start_timeout, memory_limit, process_limit, restarts and confine (the options
above win over them), and a table [plugin.<name>] that plugin reads.

Logging: RUST_LOG (default: warn). Plugin records use the target plugin::<name>.";

/// Loads greeter plugins (dynamic libraries) from a folder and calls them
/// in-process.
#[derive(Debug, Parser)]
#[command(version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// The plugins folder [default: $GREETER_PLUGINS_DIR if set and not
    /// empty, else ./plugins]
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) plugins_dir: Option<PathBuf>,

    /// Interface versions to accept, a semver requirement [default: the
    /// host's interface major]. Can only narrow it: another major never loads.
    #[arg(long, global = true, value_name = "REQ")]
    pub(crate) accept_interface: Option<VersionReq>,

    /// Require plugins.lock in the plugins folder: without it nothing loads.
    /// (A lock file that exists is always enforced.)
    #[arg(long, global = true, conflicts_with = "update_lock")]
    pub(crate) locked: bool,

    /// Record the current plugin files in plugins.lock before running the
    /// command (list or check: nothing that runs a plugin before the lock
    /// file is reviewed).
    #[arg(long, global = true)]
    pub(crate) update_lock: bool,

    /// Load files and folders that the group or others may write, or that
    /// another user owns.
    #[arg(long, global = true)]
    pub(crate) allow_insecure_permissions: bool,

    /// Load plugins built with panic = "abort", whose first panic kills the
    /// host instead of coming back as an error.
    #[arg(long, global = true)]
    pub(crate) allow_panic_abort: bool,

    /// Where to make the private folder of plugin copies [default: the first
    /// of $XDG_RUNTIME_DIR, /dev/shm and the system's temporary folder that
    /// can hold them]. It must allow executing mapped files.
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) snapshot_dir: Option<PathBuf>,

    /// Keep the verified copies of locked plugin files in DIR across runs:
    /// a later run maps the copy of an unchanged file instead of copying and
    /// hashing it again [default: nothing kept]. Best on the snapshot
    /// folder's file system; copies no run used for 30 days are removed.
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) snapshot_cache: Option<PathBuf>,

    /// Run plugins in processes of their own: all of them, or with
    /// `--isolate=NAME,...` the named ones. A plugin that crashes, exits or
    /// hangs then fails its call instead of ending the host.
    #[arg(
        long,
        global = true,
        value_name = "NAME,...",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = ""
    )]
    pub(crate) isolate: Option<String>,

    /// How long an isolated plugin may take to answer one call, such as
    /// `500ms` or `30s` [default: 30s]; past it, its process is killed.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) call_timeout: Option<Duration>,

    /// How long an isolated plugin's process may take to start and run the
    /// plugin's init, such as `10s` [default: 30s]; past it, the process is
    /// killed and the plugin rejected.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) start_timeout: Option<Duration>,

    /// The most memory an isolated plugin's process may use, such as `512M`
    /// or `2G` (its address space, RLIMIT_AS; Linux) [default: no limit].
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) memory_limit: Option<u64>,

    /// The most processes and threads an isolated plugin's process and all
    /// it starts may run at once, its own included, 32 or more (Linux 5.14
    /// or later; a host running as root refuses such plugins) [default: no
    /// limit].
    #[arg(long, global = true, value_name = "N", value_parser = parse_process_limit)]
    pub(crate) process_limit: Option<u32>,

    /// Keep what plugins store through the host's services (the `counter`
    /// plugin's count) in FILE, across runs [default: in memory, for this
    /// run only].
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) store: Option<PathBuf>,

    /// Confine isolated plugins' processes (Linux): no new privileges, no
    /// network, every file system read-only (reading is not confined).
    #[arg(long, global = true)]
    pub(crate) confine: bool,

    /// How many times an isolated plugin whose process crashed or timed out
    /// is started again (its init runs again), the first after 100ms, then
    /// twice as long each time [default: 0: it stays failed].
    #[arg(long, global = true, value_name = "N")]
    pub(crate) restarts: Option<u32>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// A process limit as `--process-limit` takes it: a number, at least
/// [`MIN_PROCESS_LIMIT`](dropin_host::isolation::MIN_PROCESS_LIMIT).
fn parse_process_limit(text: &str) -> Result<u32, String> {
    let min = dropin_host::isolation::MIN_PROCESS_LIMIT;
    text.parse::<u32>()
        .ok()
        .filter(|&n| n >= min)
        .ok_or_else(|| format!("expected a number of processes and threads, {min} or more"))
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List every candidate file: name, versions, path, accepted or rejected
    /// and why, from the files' descriptions (no plugin code runs).
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Greet from every loaded plugin, or from the named ones: `name: greeting`.
    Greet {
        /// Plugins to greet from (default: all).
        names: Vec<String>,
        /// Greet this person by name (interface 2.1). Plugins built against
        /// 2.0 give their plain greeting instead, with a note on stderr.
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print each file's compatibility verdict, expected vs found, from the
    /// files' descriptions (no plugin code runs); exit 0 only if every file
    /// is accepted.
    Check {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Write plugins.lock: the SHA-256 of every plugin file whose description
    /// is accepted (no plugin code runs). From then on, only those exact
    /// files load from this folder.
    Lock,
    /// Greet, then keep running: reload every plugin whose file changes (and
    /// load new ones) after the checks of a first load, and greet again
    /// after each reload; until interrupted (Ctrl-C).
    Watch {
        /// Plugins to greet from (default: all).
        names: Vec<String>,
        /// Greet every DURATION too (such as `500ms` or `2s`).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        every: Option<Duration>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}
