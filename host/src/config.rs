//! `plugins.toml`: each plugin's table, which plugins run isolated, and
//! their call timeouts.

use std::path::Path;

use anyhow::{Context, bail};
use dropin_host::{LoaderBuilder, isolation::Isolate, read_trusted_text};
use greeter_interface::GreeterPlugin;

use crate::cli::parse_duration;

/// The per-plugin configuration file in the plugins folder.
pub(crate) const CONFIG_NAME: &str = "plugins.toml";

/// The largest configuration read: far more than a thousand plugins'
/// tables need.
const MAX_CONFIG: u64 = 1 << 20;

/// Hands each plugin its table of the folder's `plugins.toml`, if any.
pub(crate) fn configure(
    mut builder: LoaderBuilder<GreeterPlugin>,
    dir: &Path,
    secure: bool,
) -> anyhow::Result<LoaderBuilder<GreeterPlugin>> {
    let path = dir.join(CONFIG_NAME);
    // Read as the lock file is: a FIFO, a device or a link to one is
    // refused, never waited on.
    let Some(text) = read_trusted_text(&path, "configuration", secure, MAX_CONFIG)? else {
        return Ok(builder);
    };
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
