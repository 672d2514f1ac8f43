//! `greet`: one line per plugin, `name: greeting`, and every rejection.

use std::io::Write;

use anyhow::Context;
use dropin::CallErrorKind;
use dropin_host::{LoadError, LoadErrorKind, LoadReport, Registry};
use greeter_interface::GreeterPlugin;

use crate::{
    cli::Format,
    output::{Entry, loaded_entry, rejected_entry, rejection, shown, write_json},
};

/// The interface version that added `greet_to`.
pub(crate) const GREET_TO_SINCE: &str = "2.1";

/// One line per plugin of `names` (every plugin if empty) that is loaded:
/// `name: greeting`; a failed call on standard error.
pub(crate) fn greet_loaded(
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

pub(crate) fn greet(
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
pub(crate) fn rejected_as<'a>(
    report: &'a LoadReport<GreeterPlugin>,
    name: &str,
) -> Option<&'a LoadError> {
    let declared = |error: &&LoadError| match error.kind() {
        LoadErrorKind::DuplicateName { name: n, .. }
        | LoadErrorKind::PanicAbort { name: n, .. }
        | LoadErrorKind::UnsupportedHost { name: n, .. } => n == name,
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
