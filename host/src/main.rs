//! `greeter-host`: lists, checks and calls the greeter plugins of a folder.

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use greeter_host::{
    Capability, ErrorChain, GreeterInterface, GreeterPlugin, LoadError, LoadReport, Loader,
    LockEntry, LockMode, Lockfile,
};
use semver::VersionReq;
use serde::Serialize;

const AFTER_HELP: &str = "\
Exit status:
  0  every candidate file loaded (and, for greet, every greeting succeeded)
  1  some file was rejected, a greeting failed, or a named plugin is not loaded
  2  usage error; the plugins folder is missing, unreadable or writable by
     others; or the lock file is required and missing, or does not parse

Logging: RUST_LOG (default: warn). Plugin records use the target plugin::<name>.";

/// Loads greeter plugins (dynamic libraries) from a folder and calls them
/// in-process.
#[derive(Debug, Parser)]
#[command(version, after_help = AFTER_HELP)]
struct Cli {
    /// The plugins folder [default: $GREETER_PLUGINS_DIR, else ./plugins]
    #[arg(long, global = true, value_name = "DIR", env = "GREETER_PLUGINS_DIR")]
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

    #[command(subcommand)]
    command: Command,
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
        /// Greet this person by name (interface 1.1). Plugins built against
        /// 1.0 give their plain greeting instead, with a note on stderr.
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print each file's compatibility verdict, expected vs found; exit 0
    /// only if every file loads.
    Check,
    /// Write plugins.lock: the SHA-256 of every plugin file that loads. From
    /// then on, only those exact files load from this folder.
    Lock,
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
    path: PathBuf,
    status: Status,
    error: Option<String>,
    /// The interface capabilities after 1.0 the plugin has; null if rejected.
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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("greeter-host: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let dir = cli.plugins_dir.unwrap_or_else(|| PathBuf::from("plugins"));
    let mut builder = Loader::<GreeterInterface>::builder().dir(&dir);
    if let Some(req) = cli.accept_interface {
        builder = builder.accept_interface(req);
    }
    let relock = cli.update_lock || matches!(cli.command, Command::Lock);
    let lock_mode = if relock {
        LockMode::Ignore
    } else if cli.locked {
        LockMode::Required
    } else {
        LockMode::IfPresent
    };
    let loader = builder
        .lock(lock_mode)
        .check_permissions(!cli.allow_insecure_permissions)
        .build();
    // Folder-level failures (missing, unsafe, bad lock file) end up in
    // `main`: exit 2, nothing loaded.
    let report = loader.load()?;
    let mut out = io::stdout().lock();
    if relock {
        write_lock(&mut out, &report, &loader)?;
    }
    let ok = match cli.command {
        Command::Lock => report.rejected.is_empty(),
        Command::List { format } => list(&mut out, &report, format)?,
        Command::Greet { names, to, format } => {
            greet(&mut out, &report, &names, to.as_deref(), format)?
        }
        Command::Check => check(&mut out, &report, &loader)?,
    };
    out.flush().context("cannot write to standard output")?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Every candidate file, loaded or rejected, in path order.
fn entries(report: &LoadReport<GreeterInterface>) -> Vec<Entry> {
    let loaded = report.registry.iter().map(loaded_entry);
    let rejected = report.rejected.iter().map(rejected_entry);
    let mut entries: Vec<Entry> = loaded.chain(rejected).collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

fn loaded_entry(plugin: &GreeterPlugin) -> Entry {
    Entry {
        name: Some(plugin.name().to_owned()),
        version: Some(plugin.version().to_string()),
        interface_version: Some(plugin.interface_version().to_string()),
        path: plugin.path().to_owned(),
        status: if plugin.failure().is_some() {
            Status::Failed
        } else {
            Status::Loaded
        },
        error: plugin.failure().map(str::to_owned),
        capabilities: Some(capabilities(plugin, true)),
        greeting: None,
        note: None,
    }
}

/// The capabilities after 1.0 that `plugin` has (or lacks).
fn capabilities(plugin: &GreeterPlugin, has: bool) -> Vec<&'static str> {
    Capability::ALL
        .iter()
        .filter(|&&capability| plugin.has(capability) == has)
        .map(|capability| capability.name())
        .collect()
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
        status: Status::Rejected,
        error: Some(ErrorChain(error).to_string()),
        capabilities: None,
        greeting: None,
        note: None,
    }
}

fn list(
    out: &mut impl Write,
    report: &LoadReport<GreeterInterface>,
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
                let dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
                writeln!(
                    out,
                    "{:<16} {:<10} {:<10} {:<9} {}",
                    dash(&entry.name),
                    dash(&entry.version),
                    dash(&entry.interface_version),
                    match entry.status {
                        Status::Loaded => "loaded",
                        Status::Rejected => "rejected",
                        Status::Failed => "failed",
                    },
                    entry.path.display()
                )?;
                if let Some(error) = &entry.error {
                    writeln!(out, "    {error}")?;
                }
            }
        }
    }
    Ok(report.rejected.is_empty())
}

fn greet(
    out: &mut impl Write,
    report: &LoadReport<GreeterInterface>,
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
                if plugin.is_none() {
                    let loaded: Vec<&str> = report.registry.iter().map(|p| p.name()).collect();
                    eprintln!(
                        "greeter-host: no plugin named '{name}' is loaded (loaded: {})",
                        if loaded.is_empty() {
                            "none".to_owned()
                        } else {
                            loaded.join(", ")
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
            Some(Some(result)) => result,
            Some(None) => {
                note = Some(format!(
                    "'{}' predates interface {} (built against {}): plain greeting instead",
                    plugin.name(),
                    Capability::GreetTo.since(),
                    plugin.interface_version()
                ));
                plugin.greet()
            }
        };
        let text = format == Format::Text;
        if let (true, Some(note)) = (text, &note) {
            eprintln!("greeter-host: {note}");
        }
        let (greeting, error) = match result {
            Ok(greeting) => {
                if text {
                    writeln!(out, "{}: {greeting}", plugin.name())?;
                }
                (Some(greeting.into_string()), None)
            }
            Err(error) => {
                ok = false;
                if text {
                    eprintln!("greeter-host: {error}");
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
                eprintln!(
                    "greeter-host: rejected {}",
                    entry.error.as_deref().unwrap_or_default()
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

fn check(
    out: &mut impl Write,
    report: &LoadReport<GreeterInterface>,
    loader: &Loader<GreeterInterface>,
) -> anyhow::Result<bool> {
    let mut entries: Vec<(&Path, String)> = Vec::new();
    for plugin in report.registry.iter() {
        let missing: Vec<String> = Capability::ALL
            .iter()
            .filter(|&&capability| !plugin.has(capability))
            .map(|capability| format!("{} (since {})", capability.name(), capability.since()))
            .collect();
        let verdict = format!(
            "ok        {}\n          plugin {} {}; interface {} (host accepts {}); \
             host requirement {} (host is {}); missing capabilities: {}",
            plugin.path().display(),
            plugin.name(),
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
                error.path().display(),
                ErrorChain(error)
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

/// Records every loaded plugin's file and hash in the folder's lock file.
fn write_lock(
    out: &mut impl Write,
    report: &LoadReport<GreeterInterface>,
    loader: &Loader<GreeterInterface>,
) -> anyhow::Result<()> {
    let entries = report
        .registry
        .iter()
        .map(|plugin| {
            Ok(LockEntry {
                file: plugin
                    .path()
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                sha256: plugin.sha256().with_context(|| {
                    format!("cannot hash the loaded copy of {}", plugin.path().display())
                })?,
                name: plugin.name().to_owned(),
                version: plugin.version().to_string(),
                interface_version: plugin.interface_version().to_string(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let path = loader.lockfile_path();
    Lockfile::new(entries).write(&path)?;
    writeln!(
        out,
        "wrote {}: {} plugin files locked",
        path.display(),
        report.registry.len()
    )?;
    for error in &report.rejected {
        writeln!(out, "not locked  {}", ErrorChain(error))?;
    }
    Ok(())
}

fn write_json(out: &mut impl Write, entries: &[Entry]) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, entries).context("cannot write JSON")?;
    writeln!(out)?;
    Ok(())
}
