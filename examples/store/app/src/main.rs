//! `store-app [--plugins-dir DIR] [--isolate] [--config NAME=TEXT]... REQUEST...`:
//! sends each request (`get:KEY`, `put:KEY=VALUE`, `list`, `list:PREFIX`,
//! `table:NAME:KEY` or `rows:NAME`) to every store plugin
//! of the folder (default `./plugins`), in this process or, with
//! `--isolate`, each plugin in a process of its own, and says what each
//! answered: the store's errors are matched one by one, apart from the
//! framework's own failures.

use std::process::ExitCode;

use dropin::CallError;
use dropin_host::{
    ErrorChain, Loader, isolation,
    probe::{self, Probe},
};
use store_interface::{StoreError, StorePlugin};

fn main() -> ExitCode {
    // Started again by the loader, this program is the isolated plugins'
    // process (and the probe's): it serves, and exits.
    probe::serve_if_requested();
    isolation::serve_if_requested::<StorePlugin>();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = "plugins".to_owned();
    let mut isolate = false;
    let mut configs = Vec::new();
    loop {
        match args.first().map(String::as_str) {
            Some("--plugins-dir") if args.len() > 1 => dir = args.remove(1),
            Some("--config") if args.len() > 1 => match args.remove(1).split_once('=') {
                Some((name, text)) => configs.push((name.to_owned(), text.to_owned())),
                None => return usage(),
            },
            Some("--isolate") => isolate = true,
            _ => break,
        }
        args.remove(0);
    }
    if args.is_empty() {
        return usage();
    }
    let mut builder = Loader::<StorePlugin>::builder().dir(&dir);
    for (name, text) in configs {
        builder = builder.config(name, text);
    }
    let loader = if isolate {
        match Probe::current_exe() {
            Ok(probe) => builder.probe(probe).build_isolated(),
            Err(error) => {
                eprintln!("store-app: cannot find this program to run plugins: {error}");
                return ExitCode::from(2);
            }
        }
    } else {
        // SAFETY: the plugins folder holds the stores built from this
        // repository (`examples/store/`), which run in this process as this
        // program's own code does.
        unsafe { builder.build() }
    };
    let report = match loader.load() {
        Ok(report) => report,
        Err(error) => {
            eprintln!("store-app: {}", ErrorChain(&error));
            return ExitCode::from(2);
        }
    };
    let mut ok = report.rejected.is_empty();
    for error in &report.rejected {
        eprintln!("store-app: rejected {}", ErrorChain(error));
    }
    for plugin in report.registry.iter() {
        for request in &args {
            match answer(plugin.handle(), request) {
                Ok(answer) => println!("{}: {request}: {answer}", plugin.name()),
                Err(error) => {
                    eprintln!("store-app: {request}: {error}");
                    ok = false;
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// What `store` answered `request`, in words; or how the call failed (the
/// plugin panicked, its process crashed, ...).
fn answer(store: &StorePlugin, request: &str) -> Result<String, CallError> {
    let answered = if let Some(key) = request.strip_prefix("get:") {
        store.get(key)?
    } else if let Some((key, value)) = request.strip_prefix("put:").and_then(|r| r.split_once('='))
    {
        store.put(key, value)?.map(|replaced| match replaced {
            Some(old) => format!("stored, replacing {old}"),
            None => "stored".to_owned(),
        })
    } else if let Some((name, key)) = request
        .strip_prefix("table:")
        .and_then(|rest| rest.split_once(':'))
    {
        // An object of the store's: opened, read, dropped (in the store).
        return Ok(match store.open(name)? {
            Ok(table) => {
                let value = table.get(key)?;
                format!("{value:?} ({} read)", table.reads()?)
            }
            Err(StoreError::NotFound { key }) => format!("no table {key:?}"),
            Err(StoreError::ReadOnly) => "refused: the store is read-only".to_owned(),
        });
    } else if let Some(name) = request.strip_prefix("rows:") {
        // Objects returned by an object: the table's rows, one by one.
        let table = match store.open(name)? {
            Ok(table) => table,
            Err(error) => return Ok(format!("no table: {error:?}")),
        };
        let rows = table.rows()?;
        let mut listed = Vec::new();
        while let Some((key, value)) = rows.next()? {
            listed.push(format!("{key}={value}"));
        }
        return Ok(listed.join(", "));
    } else if let Some(prefix) = request.strip_prefix("list") {
        let entries = store.entries(prefix.strip_prefix(':'))?;
        let listed: Vec<String> = entries
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        let noun = if listed.len() == 1 {
            "entry"
        } else {
            "entries"
        };
        return Ok(format!("{} {noun}: {}", listed.len(), listed.join(", ")));
    } else {
        return Ok("not a request: expected get:KEY, put:KEY=VALUE or list[:PREFIX]".to_owned());
    };
    // The store's own errors, matched as the values they are.
    Ok(match answered {
        Ok(text) => text,
        Err(StoreError::NotFound { key }) => format!("nothing stored under {key}"),
        Err(StoreError::ReadOnly) => "refused: the store is read-only".to_owned(),
    })
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: store-app [--plugins-dir DIR] [--isolate] [--config NAME=TEXT]... \
         get:KEY|put:KEY=VALUE|list[:PREFIX]..."
    );
    ExitCode::from(2)
}
