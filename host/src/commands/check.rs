//! `check`: each file's verdict, expected against found, from the files'
//! descriptions: no plugin code runs.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;
use dropin_host::{Loader, Survey};
use greeter_interface::GreeterPlugin;
use serde::Serialize;

use crate::{
    cli::Format,
    output::{Status, lossy_path, rejection, shown, shown_path},
};

/// `check --format json`: what the host accepts, and each file's verdict.
#[derive(Debug, Serialize)]
pub(crate) struct CheckReport {
    /// The interface versions the host accepts.
    accepts: String,
    /// The host's version, matched against plugins' host requirements.
    host_version: String,
    files: Vec<CheckEntry>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CheckEntry {
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

pub(crate) fn check(
    out: &mut impl Write,
    survey: &Survey,
    loader: &Loader<GreeterPlugin>,
    format: Format,
) -> anyhow::Result<bool> {
    if format == Format::Json {
        let mut files: Vec<CheckEntry> = survey
            .plugins
            .iter()
            .map(|plugin| CheckEntry {
                path: plugin.path().to_owned(),
                path_lossy: plugin.path().to_str().is_none(),
                status: Status::Accepted,
                name: Some(plugin.name().to_owned()),
                version: Some(plugin.version().to_owned()),
                interface_version: Some(plugin.interface_version().to_owned()),
                host_requirement: plugin.host_requirement().map(str::to_owned),
                missing_capabilities: Some(
                    plugin
                        .missing_capabilities()
                        .iter()
                        .map(|(name, since)| format!("{name} (since {since})"))
                        .collect(),
                ),
                error: None,
            })
            .chain(survey.refused.iter().map(|error| CheckEntry {
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
        return Ok(survey.refused.is_empty());
    }
    let mut entries: Vec<(&Path, String)> = Vec::new();
    for plugin in &survey.plugins {
        let missing: Vec<String> = plugin
            .missing_capabilities()
            .iter()
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
            shown(plugin.host_requirement().unwrap_or("any")),
            loader.host_version(),
            if missing.is_empty() {
                "none".to_owned()
            } else {
                missing.join(", ")
            }
        );
        entries.push((plugin.path(), verdict));
    }
    for error in &survey.refused {
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
        "{}: {} of {} plugin files accepted",
        loader.dir().display(),
        survey.plugins.len(),
        entries.len()
    )?;
    Ok(survey.refused.is_empty())
}
