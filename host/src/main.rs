//! `greeter-host`: lists, checks and calls the greeter plugins of a folder.
//!
//! A thin command line on `dropin-host`: the loader does the work, this
//! program turns its report into text, JSON and exit codes.

use std::{
    io::{self, Write},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context;
use clap::Parser;
use dropin_host::{
    Loader, LoaderError, LockMode, LockfileError, RESTART_BACKOFF,
    isolation::{Isolate, Recovery},
    probe::Probe,
};
use greeter_interface::{GreeterHostHandle, GreeterPlugin};
use semver::Version;

use crate::{
    cli::{Cli, Command, Format},
    commands::{check::check, greet::greet, list::list, lock::write_lock, watch::watch},
    output::{permission_hint, shown},
};

/// Writes a line to standard error. Unlike `eprintln!`, never panics: a
/// closed standard error must not turn into exit status 101.
macro_rules! say {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = writeln!(::std::io::stderr(), $($arg)*);
    }};
}

mod cli;
mod commands;
mod output;
mod store;

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
    let isolate_all = cli.isolate.as_deref() == Some("");
    if let Some(names) = cli.isolate.as_deref().filter(|names| !names.is_empty()) {
        let names = names.split(',').map(|name| name.trim().to_owned());
        builder = builder.isolate(Isolate::Plugins(names.collect()));
    }
    if let Some(timeout) = cli.call_timeout {
        builder = builder.call_timeout(timeout);
    }
    // Given here, a setting wins over the folder's plugins.toml.
    if cli.confine {
        builder = builder.confine_isolated(true);
    }
    if let Some(timeout) = cli.start_timeout {
        builder = builder.start_timeout(timeout);
    }
    if let Some(bytes) = cli.memory_limit {
        builder = builder.isolation_memory_limit(bytes);
    }
    if let Some(processes) = cli.process_limit {
        builder = builder.isolation_process_limit(processes);
    }
    if let Some(attempts) = cli.restarts {
        builder = builder.isolation_recovery(Recovery::Restart {
            attempts,
            backoff: RESTART_BACKOFF,
        });
    }
    let store = match &cli.store {
        Some(file) => store::Store::open(file)?,
        None => store::Store::in_memory(),
    };
    builder = builder.services(GreeterHostHandle::provided_by(store));
    if let Some(req) = cli.accept_interface {
        builder = builder.accept_interface(req);
    }
    if cli.update_lock && matches!(cli.command, Command::Greet { .. } | Command::Watch { .. }) {
        // Recording runs nothing, so that its lock file can be reviewed
        // before anything it approves runs in this process.
        say!(
            "greeter-host: --update-lock records plugins.lock for review and cannot be combined \
             with greet or watch, which would run what nobody reviewed: run `greeter-host lock`, \
             review plugins.lock, then greet"
        );
        return Ok(ExitCode::from(2));
    }
    let relock = cli.update_lock || matches!(cli.command, Command::Lock);
    // A lock file just recorded is the one in force.
    let lock_mode = if cli.locked || relock {
        LockMode::Required
    } else {
        LockMode::IfPresent
    };
    let builder = builder
        .lock(lock_mode)
        .check_permissions(!cli.allow_insecure_permissions);
    let loader = if isolate_all {
        builder.build_isolated()
    } else {
        // SAFETY: the plugins this runs in its own process are those of the
        // folder its user names, but those `--isolate` or the folder's
        // plugins.toml isolate: running greeter-host on a folder without
        // `--isolate` is the user vouching for its plugins, as the README
        // says. What it can check it does:
        // the folder and files only the user can write, the lock file in
        // force, a probe for what the lock file does not approve.
        unsafe { builder.build() }
    };
    let mut out = io::stdout().lock();
    if relock {
        // Recording runs no plugin code, here or anywhere: it reads each
        // file's description.
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
    // `main`: exit 2, nothing loaded. Listing and checking read the files'
    // descriptions and run no plugin code.
    let ok = match cli.command {
        Command::Lock => unreachable!("handled above"),
        Command::List { format } => list(&mut out, &loader.survey()?, format)?,
        Command::Check { format } => check(&mut out, &loader.survey()?, &loader, format)?,
        Command::Greet { names, to, format } => {
            let report = loader.load()?;
            greet(&mut out, &report, &names, to.as_deref(), format)?
        }
        Command::Watch { names, every } => {
            let report = loader.load()?;
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
