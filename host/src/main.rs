//! `greeter-host`: lists, checks and calls the greeter plugins of a folder.
//!
//! A thin command line on `dropin-host`: the loader does the work, this
//! program turns its report into text, JSON and exit codes.

use std::{
    borrow::Cow,
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use dropin::CallErrorKind;
use dropin_host::{
    ErrorChain, LoadError, LoadReport, Loader, LoaderBuilder, LoaderError, LockMode, LockfileError,
    PermissionError, Plugin, Recording, Registry, WatchEvent, check_permissions, is_deceptive,
    isolation::{Isolate, Recovery},
    probe::Probe,
};
use greeter_interface::{GreeterHostHandle, GreeterPlugin};
use semver::{Version, VersionReq};
use serde::Serialize;

mod store;

/// Writes a line to standard error. Unlike `eprintln!`, never panics: a
/// closed standard error must not turn into exit status 101.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stderr(), $($arg)*);
    }};
}

/// The per-plugin configuration file in the plugins folder.
const CONFIG_NAME: &str = "plugins.toml";

/// The interface version that added `greet_to`.
const GREET_TO_SINCE: &str = "2.1";

const AFTER_HELP: &str = "\
Exit status:
  0  every candidate file loaded (and, for greet, every greeting succeeded)
  1  some file was rejected, a greeting failed, or a named plugin is not loaded
  2  usage error; the plugins folder is missing, unreadable or writable by
     others; the lock file is required and missing, or does not parse; or the
     snapshot folder cannot be made, is noexec or has no room for the copies
  3  standard output was closed before everything was written
  4  a plugin's code called exit while it was being loaded (the file is named
     on stderr)

Configuration: plugins.toml in the plugins folder; the table [plugin.<name>] is
handed to that plugin's init, as TOML text.

Logging: RUST_LOG (default: warn). Plugin records use the target plugin::<name>.";

/// Loads greeter plugins (dynamic libraries) from a folder and calls them
/// in-process.
#[derive(Debug, Parser)]
#[command(version, after_help = AFTER_HELP)]
struct Cli {
    /// The plugins folder [default: $GREETER_PLUGINS_DIR if set and not
    /// empty, else ./plugins]
    #[arg(long, global = true, value_name = "DIR")]
    plugins_dir: Option<PathBuf>,

    /// Interface versions to accept, a semver requirement [default: the
    /// host's interface major]. Can only narrow it: another major never loads.
    #[arg(long, global = true, value_name = "REQ")]
    accept_interface: Option<VersionReq>,

    /// Require plugins.lock in the plugins folder: without it nothing loads.
    /// (A lock file that exists is always enforced.)
    #[arg(long, global = true, conflicts_with = "update_lock")]
    locked: bool,

    /// Record the current plugin files in plugins.lock before running the
    /// command.
    #[arg(long, global = true)]
    update_lock: bool,

    /// Load files and folders that the group or others may write, or that
    /// another user owns.
    #[arg(long, global = true)]
    allow_insecure_permissions: bool,

    /// Load plugins built with panic = "abort", whose first panic kills the
    /// host instead of coming back as an error.
    #[arg(long, global = true)]
    allow_panic_abort: bool,

    /// Where to make the private folder of plugin copies [default: the first
    /// of $XDG_RUNTIME_DIR, /dev/shm and the system's temporary folder that
    /// can hold them]. It must allow executing mapped files.
    #[arg(long, global = true, value_name = "DIR")]
    snapshot_dir: Option<PathBuf>,

    /// Keep the verified copies of locked plugin files in DIR across runs:
    /// a later run maps the copy of an unchanged file instead of copying and
    /// hashing it again [default: nothing kept]. Best on the snapshot
    /// folder's file system; copies no run used for 30 days are removed.
    #[arg(long, global = true, value_name = "DIR")]
    snapshot_cache: Option<PathBuf>,

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
    isolate: Option<String>,

    /// How long an isolated plugin may take to answer one call, such as
    /// `500ms` or `30s` [default: 30s]; past it, its process is killed.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    call_timeout: Option<Duration>,

    /// The most memory an isolated plugin's process may use, such as `512M`
    /// or `2G` (its address space, RLIMIT_AS; Linux) [default: no limit].
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    memory_limit: Option<u64>,

    /// Keep what plugins store through the host's services (the `counter`
    /// plugin's count) in FILE, across runs [default: in memory, for this
    /// run only].
    #[arg(long, global = true, value_name = "FILE")]
    store: Option<PathBuf>,

    /// Confine isolated plugins' processes (Linux): no new privileges, no
    /// network, every file system read-only (reading is not confined).
    #[arg(long, global = true)]
    confine: bool,

    /// How many times an isolated plugin whose process crashed or timed out
    /// is started again (its init runs again), the first after 100ms, then
    /// twice as long each time [default: 0: it stays failed].
    #[arg(long, global = true, value_name = "N")]
    restarts: Option<u32>,

    #[command(subcommand)]
    command: Command,
}

/// `512M`, `2G`, `64K` or a number of bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = match text.chars().last() {
        Some('K' | 'k') => (&text[..text.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&text[..text.len() - 1], 1 << 20),
        Some('G' | 'g') => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(unit))
        .filter(|bytes| *bytes > 0)
        .ok_or_else(|| format!("expected a size such as 512M or 2G, found {text:?}"))
}

/// `500ms`, `2s`, `1.5s` or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.strip_suffix("ms") {
        Some(number) => (number, 0.001),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|value| value.is_finite() && *value > 0.0)
        .and_then(|value| Duration::try_from_secs_f64(value * unit).ok())
        .ok_or_else(|| format!("expected a duration such as 500ms or 30s, found {text:?}"))
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every candidate file: name, versions, path, loaded or rejected and why.
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
    /// Print each file's compatibility verdict, expected vs found; exit 0
    /// only if every file loads.
    Check {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Write plugins.lock: the SHA-256 of every plugin file that loads. From
    /// then on, only those exact files load from this folder.
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
enum Format {
    Text,
    Json,
}

/// One line of `list` or `greet` output; the JSON form is documented in the
/// README.
#[derive(Debug, Serialize)]
struct Entry {
    name: Option<String>,
    version: Option<String>,
    interface_version: Option<String>,
    /// The file; in JSON as text, with `path_lossy` set when it is not
    /// UTF-8 and could not be carried exactly.
    #[serde(serialize_with = "lossy_path")]
    path: PathBuf,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    path_lossy: bool,
    status: Status,
    /// Whether the plugin runs in a process of its own.
    isolated: bool,
    error: Option<String>,
    /// The interface methods after 2.0 the plugin has; null if rejected.
    capabilities: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    greeting: Option<Option<String>>,
    /// Why the greeting is not what was asked for (`greet --to` on a plugin
    /// that predates it).
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Loaded,
    Rejected,
    /// Loaded, then disabled after a panic in this process.
    Failed,
}

fn main() -> ExitCode {
    // Started by the loader as its probe: open the libraries it is asked to
    // and exit, before anything else runs.
    dropin_host::probe::serve_if_requested();
    // Started by the loader to run an isolated plugin: serve it and exit.
    dropin_host::isolation::serve_if_requested::<GreeterPlugin>();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // Whoever read our output stopped reading: nothing more to say.
        Err(error)
            if error.chain().any(|cause| {
                cause
                    .downcast_ref::<io::Error>()
                    .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::from(3)
        }
        Err(error) => {
            let hint = match error.downcast_ref::<LoaderError>() {
                Some(LoaderError::Lockfile(LockfileError::Missing { .. })) => {
                    " (create it with `greeter-host lock`)".to_owned()
                }
                Some(LoaderError::InsecureFolder { path, source }) => permission_hint(path, source),
                Some(
                    LoaderError::Snapshot { .. }
                    | LoaderError::SnapshotNoexec { .. }
                    | LoaderError::SnapshotFull { .. },
                ) => " (choose another folder with --snapshot-dir DIR)".to_owned(),
                _ => String::new(),
            };
            say!("greeter-host: {}{hint}", shown(&format!("{error:#}")));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let dir = cli
        .plugins_dir
        .or_else(|| {
            std::env::var_os("GREETER_PLUGINS_DIR")
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("plugins"));
    let version = Version::parse(env!("CARGO_PKG_VERSION")).expect("the package version is semver");
    let probe = Probe::current_exe().context("cannot find this program to run it as a probe")?;
    let mut builder = Loader::<GreeterPlugin>::builder()
        .dir(&dir)
        .host_version(version)
        .allow_panic_abort(cli.allow_panic_abort)
        .probe(probe);
    if let Some(snapshots) = &cli.snapshot_dir {
        builder = builder.snapshot_root(snapshots);
    }
    if let Some(cache) = &cli.snapshot_cache {
        builder = builder.snapshot_cache(cache);
    }
    match cli.isolate.as_deref() {
        None => {}
        Some("") => builder = builder.isolate(Isolate::All),
        Some(names) => {
            let names = names.split(',').map(|name| name.trim().to_owned());
            builder = builder.isolate(Isolate::Plugins(names.collect()));
        }
    }
    if let Some(timeout) = cli.call_timeout {
        builder = builder.call_timeout(timeout);
    }
    builder = builder.confine_isolated(cli.confine);
    if let Some(bytes) = cli.memory_limit {
        builder = builder.isolation_memory_limit(bytes);
    }
    if let Some(attempts) = cli.restarts {
        builder = builder.isolation_recovery(Recovery::Restart {
            attempts,
            backoff: Duration::from_millis(100),
        });
    }
    let store = match &cli.store {
        Some(file) => store::Store::open(file)?,
        None => store::Store::in_memory(),
    };
    builder = builder.services(GreeterHostHandle::provided_by(store));
    builder = configure(builder, &dir, !cli.allow_insecure_permissions)?;
    if let Some(req) = cli.accept_interface {
        builder = builder.accept_interface(req);
    }
    let relock = cli.update_lock || matches!(cli.command, Command::Lock);
    // A lock file just recorded is the one in force.
    let lock_mode = if cli.locked || relock {
        LockMode::Required
    } else {
        LockMode::IfPresent
    };
    let loader = builder
        .lock(lock_mode)
        .check_permissions(!cli.allow_insecure_permissions)
        .build();
    let mut out = io::stdout().lock();
    if relock {
        // Recording runs no plugin code in this process: the probe opens
        // each file and reports what it read.
        let recording = loader.record()?;
        write_lock(&mut out, &recording, &loader)?;
        if matches!(cli.command, Command::Lock) {
            out.flush().context("cannot write to standard output")?;
            return Ok(if recording.refused.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    }
    // Folder-level failures (missing, unsafe, bad lock file) end up in
    // `main`: exit 2, nothing loaded.
    let report = loader.load()?;
    let ok = match cli.command {
        Command::Lock => unreachable!("handled above"),
        Command::List { format } => list(&mut out, &report, format)?,
        Command::Greet { names, to, format } => {
            greet(&mut out, &report, &names, to.as_deref(), format)?
        }
        Command::Check { format } => check(&mut out, &report, &loader, format)?,
        Command::Watch { names, every } => {
            greet(&mut out, &report, &names, None, Format::Text)?;
            out.flush().context("cannot write to standard output")?;
            watch(&mut out, &loader, &report.registry, &names, every)?
        }
    };
    out.flush().context("cannot write to standard output")?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Hands each plugin its table of the folder's `plugins.toml`, if any.
fn configure(
    mut builder: LoaderBuilder<GreeterPlugin>,
    dir: &Path,
    secure: bool,
) -> anyhow::Result<LoaderBuilder<GreeterPlugin>> {
    let path = dir.join(CONFIG_NAME);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(builder),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    if secure {
        check_permissions(&path)
            .with_context(|| format!("configuration {} is not safe", path.display()))?;
    }
    let config: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?;
    for (key, value) in config {
        // `[call_timeout]` with `name = "2s"`: an isolated plugin's own
        // call timeout.
        if key == "call_timeout" {
            let toml::Value::Table(timeouts) = &value else {
                bail!(
                    "{}: expected a table [call_timeout] of plugin names and durations, found \
                     {value}",
                    path.display()
                );
            };
            for (name, timeout) in timeouts {
                let timeout = timeout
                    .as_str()
                    .ok_or_else(|| format!("found {timeout}"))
                    .and_then(parse_duration)
                    .map_err(|error| {
                        anyhow::anyhow!(
                            "{}: call_timeout.{name}: expected a duration such as \"2s\": {error}",
                            path.display()
                        )
                    })?;
                builder = builder.call_timeout_for(name, timeout);
            }
            continue;
        }
        // `isolate = true` or `isolate = ["name", ...]`: which plugins run
        // in processes of their own.
        if key == "isolate" {
            let names = match &value {
                toml::Value::Boolean(all) => all.then(Vec::new),
                toml::Value::Array(names) => Some(
                    names
                        .iter()
                        .map(|name| name.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .filter(|names| !names.is_empty())
                        .with_context(|| {
                            format!(
                                "{}: expected `isolate` to list plugin names, found {value}",
                                path.display()
                            )
                        })?,
                ),
                other => bail!(
                    "{}: expected `isolate = true` or a list of plugin names, found {other}",
                    path.display()
                ),
            };
            builder = match names {
                None => builder,
                Some(names) if names.is_empty() => builder.isolate(Isolate::All),
                Some(names) => builder.isolate(Isolate::Plugins(names)),
            };
            continue;
        }
        let toml::Value::Table(plugins) = value else {
            bail!(
                "{}: expected only [plugin.<name>] tables, `isolate` and [call_timeout], found \
                 `{key}`",
                path.display()
            );
        };
        if key != "plugin" {
            bail!(
                "{}: expected only [plugin.<name>] tables, `isolate` and [call_timeout], found \
                 [{key}]",
                path.display()
            );
        }
        for (name, table) in plugins {
            let toml::Value::Table(table) = table else {
                bail!(
                    "{}: expected a table [plugin.{name}], found a value",
                    path.display()
                );
            };
            builder = builder.config(name, toml::to_string(&table)?);
        }
    }
    Ok(builder)
}

/// Every candidate file, loaded or rejected, in path order.
fn entries(report: &LoadReport<GreeterPlugin>) -> Vec<Entry> {
    let loaded = report.registry.iter().map(loaded_entry);
    let rejected = report.rejected.iter().map(rejected_entry);
    let mut entries: Vec<Entry> = loaded.chain(rejected).collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

fn loaded_entry(plugin: &Plugin<GreeterPlugin>) -> Entry {
    Entry {
        name: Some(plugin.name().to_owned()),
        version: Some(plugin.version().to_string()),
        interface_version: Some(plugin.interface_version().to_string()),
        path: plugin.path().to_owned(),
        path_lossy: plugin.path().to_str().is_none(),
        isolated: plugin.is_isolated(),
        status: if plugin.failure().is_some() {
            Status::Failed
        } else {
            Status::Loaded
        },
        error: plugin.failure().map(str::to_owned),
        capabilities: Some(
            plugin
                .capabilities()
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
        ),
        greeting: None,
        note: None,
    }
}

fn rejected_entry(error: &LoadError) -> Entry {
    let name = match error {
        LoadError::DuplicateName { name, .. } => Some(name.clone()),
        _ => None,
    };
    Entry {
        name,
        version: None,
        interface_version: None,
        path: error.path().to_owned(),
        path_lossy: error.path().to_str().is_none(),
        status: Status::Rejected,
        isolated: false,
        error: Some(rejection(error)),
        capabilities: None,
        greeting: None,
        note: None,
    }
}

/// A rejection on one line, with what to do about a file the lock file does
/// not list.
fn rejection(error: &LoadError) -> String {
    let hint = match error {
        LoadError::NotLocked { .. } => " (record it with `greeter-host lock`)".to_owned(),
        LoadError::InsecurePermissions { path, source } => permission_hint(path, source),
        _ => String::new(),
    };
    format!("{}{hint}", ErrorChain(error))
}

/// How to fix a permission refusal of `path`.
fn permission_hint(path: &Path, error: &PermissionError) -> String {
    let fix = match error {
        PermissionError::Writable { .. } => format!("`chmod go-w {}`", shown_path(path)),
        PermissionError::Owner { .. } => format!(
            "have this user or root own it, as `sudo chown root {}` does",
            shown_path(path)
        ),
        _ => return String::new(),
    };
    format!(" (fix: {fix}; or, to load it anyway, --allow-insecure-permissions)")
}

fn list(
    out: &mut impl Write,
    report: &LoadReport<GreeterPlugin>,
    format: Format,
) -> anyhow::Result<bool> {
    let entries = entries(report);
    match format {
        Format::Json => write_json(out, &entries)?,
        Format::Text => {
            if entries.is_empty() {
                writeln!(out, "no plugin files found")?;
            }
            for entry in &entries {
                let dash = |value: &Option<String>| {
                    value
                        .as_deref()
                        .map_or_else(|| "-".to_owned(), |value| shown(value).into_owned())
                };
                writeln!(
                    out,
                    "{:<16} {:<10} {:<10} {:<9} {}",
                    dash(&entry.name),
                    dash(&entry.version),
                    dash(&entry.interface_version),
                    match (entry.status, entry.isolated) {
                        // Loaded, in a process of its own.
                        (Status::Loaded, true) => "isolated",
                        (Status::Loaded, false) => "loaded",
                        (Status::Rejected, _) => "rejected",
                        (Status::Failed, _) => "failed",
                    },
                    shown_path(&entry.path)
                )?;
                if let Some(error) = &entry.error {
                    writeln!(out, "    {}", shown(error))?;
                }
            }
        }
    }
    Ok(report.rejected.is_empty())
}

/// Set by SIGINT or SIGTERM: `watch` stops, and the registry is dropped
/// as on any exit (snapshot folder removed, isolated processes ended).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn interrupted(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn watch(
    out: &mut impl Write,
    loader: &Loader<GreeterPlugin>,
    registry: &Registry<GreeterPlugin>,
    names: &[String],
    every: Option<Duration>,
) -> anyhow::Result<bool> {
    #[cfg(unix)]
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let handler = interrupted as extern "C" fn(libc::c_int);
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
    let mut watch = loader.watch(registry)?;
    let mut next_greeting = every.map(|every| Instant::now() + every);
    let mut reloaded = false;
    while !INTERRUPTED.load(Ordering::Relaxed) {
        // Short waits: an interruption is noticed within 100ms.
        let mut wait = Duration::from_millis(100);
        if let Some(next) = next_greeting {
            wait = wait.min(next.saturating_duration_since(Instant::now()));
        }
        if let Some(event) = watch.next_within(wait) {
            // What the replaced generations keep mapped (never unloaded).
            let retained = match &event {
                WatchEvent::Reloaded(reloaded) => registry
                    .retained()
                    .into_iter()
                    .find(|retained| retained.name == reloaded.name)
                    .map(|retained| {
                        format!(
                            "; earlier generations: {}, {} KiB mapped",
                            retained.generations,
                            retained.bytes.div_ceil(1024)
                        )
                    }),
                _ => None,
            };
            say!(
                "greeter-host: {}{}",
                shown(&event.to_string()),
                retained.unwrap_or_default()
            );
            reloaded |= matches!(event, WatchEvent::Reloaded(_));
            continue;
        }
        let due = next_greeting.is_some_and(|next| next <= Instant::now());
        if reloaded || due {
            greet_loaded(out, registry, names)?;
            reloaded = false;
        }
        if let (true, Some(every)) = (due, every) {
            next_greeting = Some(Instant::now() + every);
        }
    }
    Ok(true)
}

/// One line per plugin of `names` (every plugin if empty) that is loaded:
/// `name: greeting`; a failed call on standard error.
fn greet_loaded(
    out: &mut impl Write,
    registry: &Registry<GreeterPlugin>,
    names: &[String],
) -> anyhow::Result<()> {
    let plugins: Vec<_> = if names.is_empty() {
        registry.iter().collect()
    } else {
        names.iter().filter_map(|name| registry.get(name)).collect()
    };
    for plugin in plugins {
        match plugin.greet() {
            Ok(greeting) => writeln!(out, "{}: {}", shown(plugin.name()), shown(&greeting))?,
            Err(error) => say!("greeter-host: {}", shown(&error.to_string())),
        }
    }
    out.flush().context("cannot write to standard output")?;
    Ok(())
}

fn greet(
    out: &mut impl Write,
    report: &LoadReport<GreeterPlugin>,
    names: &[String],
    to: Option<&str>,
    format: Format,
) -> anyhow::Result<bool> {
    let mut ok = true;
    let mut entries = Vec::new();
    let selected: Vec<_> = if names.is_empty() {
        report.registry.iter().collect()
    } else {
        names
            .iter()
            .filter_map(|name| {
                let plugin = report.registry.get(name);
                if plugin.is_none()
                    && let Some(error) = rejected_as(report, name)
                {
                    say!(
                        "greeter-host: no plugin named '{}' is loaded: rejected {}",
                        shown(name),
                        shown(&rejection(error))
                    );
                    ok = false;
                } else if plugin.is_none() {
                    let loaded: Vec<&str> = report.registry.iter().map(|p| p.name()).collect();
                    say!(
                        "greeter-host: no plugin named '{}' is loaded (loaded: {})",
                        shown(name),
                        if loaded.is_empty() {
                            "none".to_owned()
                        } else {
                            shown(&loaded.join(", ")).into_owned()
                        }
                    );
                    ok = false;
                }
                plugin
            })
            .collect()
    };
    for plugin in selected {
        let mut note = None;
        let result = match to.map(|name| plugin.greet_to(name)) {
            None => plugin.greet(),
            Some(Err(error)) if error.kind() == CallErrorKind::Missing => {
                note = Some(format!(
                    "'{}' predates interface {GREET_TO_SINCE} (built against {}): plain greeting instead",
                    plugin.name(),
                    plugin.interface_version()
                ));
                plugin.greet()
            }
            Some(result) => result,
        };
        let text = format == Format::Text;
        if let (true, Some(note)) = (text, &note) {
            say!("greeter-host: {}", shown(note));
        }
        let (greeting, error) = match result {
            Ok(greeting) => {
                if text {
                    writeln!(out, "{}: {}", shown(plugin.name()), shown(&greeting))?;
                }
                (Some(greeting.into_string()), None)
            }
            Err(error) => {
                ok = false;
                if text {
                    say!("greeter-host: {}", shown(&error.to_string()));
                }
                (None, Some(error.to_string()))
            }
        };
        // After the call: a panic has just disabled the plugin.
        entries.push(Entry {
            error,
            greeting: Some(greeting),
            note,
            ..loaded_entry(plugin)
        });
    }
    // Greeting everything means accounting for every file: rejected ones are
    // reported too, so a broken plugin does not go unnoticed.
    if names.is_empty() {
        for error in &report.rejected {
            ok = false;
            let mut entry = rejected_entry(error);
            if format == Format::Text {
                say!(
                    "greeter-host: rejected {}",
                    shown(entry.error.as_deref().unwrap_or_default())
                );
            }
            entry.greeting = Some(None);
            entries.push(entry);
        }
    }
    if format == Format::Json {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        write_json(out, &entries)?;
    }
    Ok(ok)
}

/// The rejection of the file that most likely holds the plugin `name`: one
/// that declared that name, else the one named after it as cargo names a
/// library (`hello-world` → `libhello_world.so`).
fn rejected_as<'a>(report: &'a LoadReport<GreeterPlugin>, name: &str) -> Option<&'a LoadError> {
    let declared = |error: &&LoadError| match error {
        LoadError::DuplicateName { name: n, .. }
        | LoadError::PanicAbort { name: n, .. }
        | LoadError::UnsupportedHost { name: n, .. } => n == name,
        _ => false,
    };
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    let named = |error: &&LoadError| error.path().file_name() == Some(file.as_ref());
    let rejected = &report.rejected;
    rejected
        .iter()
        .find(declared)
        .or_else(|| rejected.iter().find(named))
}

/// `check --format json`: what the host accepts, and each file's verdict.
#[derive(Debug, Serialize)]
struct CheckReport {
    /// The interface versions the host accepts.
    accepts: String,
    /// The host's version, matched against plugins' host requirements.
    host_version: String,
    files: Vec<CheckEntry>,
}

#[derive(Debug, Serialize)]
struct CheckEntry {
    #[serde(serialize_with = "lossy_path")]
    path: PathBuf,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    path_lossy: bool,
    status: Status,
    name: Option<String>,
    version: Option<String>,
    interface_version: Option<String>,
    /// `null` for a file that was rejected, or a plugin that accepts any host.
    host_requirement: Option<String>,
    /// The interface methods the plugin lacks, each with the version that
    /// added it; `null` when rejected.
    missing_capabilities: Option<Vec<String>>,
    error: Option<String>,
}

fn check(
    out: &mut impl Write,
    report: &LoadReport<GreeterPlugin>,
    loader: &Loader<GreeterPlugin>,
    format: Format,
) -> anyhow::Result<bool> {
    if format == Format::Json {
        let mut files: Vec<CheckEntry> = report
            .registry
            .iter()
            .map(|plugin| CheckEntry {
                path: plugin.path().to_owned(),
                path_lossy: plugin.path().to_str().is_none(),
                status: Status::Loaded,
                name: Some(plugin.name().to_owned()),
                version: Some(plugin.version().to_string()),
                interface_version: Some(plugin.interface_version().to_string()),
                host_requirement: plugin.host_requirement().map(ToString::to_string),
                missing_capabilities: Some(
                    plugin
                        .missing_capabilities()
                        .into_iter()
                        .map(|(name, since)| format!("{name} (since {since})"))
                        .collect(),
                ),
                error: None,
            })
            .chain(report.rejected.iter().map(|error| CheckEntry {
                path: error.path().to_owned(),
                path_lossy: error.path().to_str().is_none(),
                status: Status::Rejected,
                name: None,
                version: None,
                interface_version: None,
                host_requirement: None,
                missing_capabilities: None,
                error: Some(rejection(error)),
            }))
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let check = CheckReport {
            accepts: loader.accepted_interface().to_string(),
            host_version: loader.host_version().to_string(),
            files,
        };
        serde_json::to_writer_pretty(&mut *out, &check).context("cannot write JSON")?;
        writeln!(out)?;
        return Ok(report.rejected.is_empty());
    }
    let mut entries: Vec<(&Path, String)> = Vec::new();
    for plugin in report.registry.iter() {
        let missing: Vec<String> = plugin
            .missing_capabilities()
            .into_iter()
            .map(|(name, since)| format!("{name} (since {since})"))
            .collect();
        let verdict = format!(
            "ok        {}\n          plugin {} {}; interface {} (host accepts {}); \
             host requirement {} (host is {}); missing capabilities: {}",
            shown_path(plugin.path()),
            shown(plugin.name()),
            plugin.version(),
            plugin.interface_version(),
            loader.accepted_interface(),
            plugin
                .host_requirement()
                .map_or_else(|| "any".to_owned(), ToString::to_string),
            loader.host_version(),
            if missing.is_empty() {
                "none".to_owned()
            } else {
                missing.join(", ")
            }
        );
        entries.push((plugin.path(), verdict));
    }
    for error in &report.rejected {
        entries.push((
            error.path(),
            format!(
                "rejected  {}\n          {}",
                shown_path(error.path()),
                shown(&rejection(error))
            ),
        ));
    }
    entries.sort();
    for (_, verdict) in &entries {
        writeln!(out, "{verdict}")?;
    }
    writeln!(
        out,
        "{}: {} of {} plugin files loaded",
        loader.dir().display(),
        report.registry.len(),
        entries.len()
    )?;
    Ok(report.rejected.is_empty())
}

/// Writes the folder's lock file from a recording, and says what it holds.
fn write_lock(
    out: &mut impl Write,
    recording: &Recording,
    loader: &Loader<GreeterPlugin>,
) -> anyhow::Result<()> {
    let path = loader.lockfile_path();
    recording.lockfile().write(&path)?;
    writeln!(
        out,
        "wrote {}: {} plugin files locked",
        path.display(),
        recording.entries.len()
    )?;
    for error in &recording.refused {
        writeln!(out, "not locked  {}", shown(&ErrorChain(error).to_string()))?;
    }
    Ok(())
}

fn lossy_path<S: serde::Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

/// Text from plugins and files, made safe for a terminal: control
/// characters (escape sequences included), bidirectional overrides and
/// zero-width characters are shown as `\u{..}` instead of acting.
fn shown(text: &str) -> Cow<'_, str> {
    let hidden = is_deceptive;
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if hidden(c) {
                    format!("\\u{{{:x}}}", u32::from(c))
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// A path made safe for a terminal.
fn shown_path(path: &Path) -> String {
    shown(&path.to_string_lossy()).into_owned()
}

fn write_json(out: &mut impl Write, entries: &[Entry]) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, entries).context("cannot write JSON")?;
    writeln!(out)?;
    Ok(())
}
