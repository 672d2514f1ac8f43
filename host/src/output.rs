//! What every command prints: one entry per file, rejections with their
//! fixes, JSON, and text made safe for a terminal.

use std::{
    borrow::Cow,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;
use dropin_host::{
    Described, ErrorChain, LoadError, LoadErrorKind, PermissionError, Plugin, Survey, is_deceptive,
};
use greeter_interface::GreeterPlugin;
use serde::Serialize;

/// One line of `list` or `greet` output; the JSON form is documented in the
/// README.
#[derive(Debug, Serialize)]
pub(crate) struct Entry {
    pub(crate) name: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) interface_version: Option<String>,
    /// The file; in JSON as text, with `path_lossy` set when it is not
    /// UTF-8 and could not be carried exactly.
    #[serde(serialize_with = "lossy_path")]
    pub(crate) path: PathBuf,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) path_lossy: bool,
    pub(crate) status: Status,
    /// Whether the plugin runs in a process of its own.
    pub(crate) isolated: bool,
    pub(crate) error: Option<String>,
    /// The interface methods after 2.0 the plugin has; null if rejected.
    pub(crate) capabilities: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) greeting: Option<Option<String>>,
    /// Why the greeting is not what was asked for (`greet --to` on a plugin
    /// that predates it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// Passes every check made without running it (`list`, `check`).
    Accepted,
    Loaded,
    Rejected,
    /// Loaded, then disabled after a panic in this process.
    Failed,
}

/// Every candidate file of a survey, accepted or refused, in path order.
pub(crate) fn entries(survey: &Survey) -> Vec<Entry> {
    let accepted = survey.plugins.iter().map(described_entry);
    let refused = survey.refused.iter().map(rejected_entry);
    let mut entries: Vec<Entry> = accepted.chain(refused).collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

/// A plugin as its description shows it.
fn described_entry(plugin: &Described) -> Entry {
    Entry {
        name: Some(plugin.name().to_owned()),
        version: Some(plugin.version().to_owned()),
        interface_version: Some(plugin.interface_version().to_owned()),
        path: plugin.path().to_owned(),
        path_lossy: plugin.path().to_str().is_none(),
        isolated: plugin.is_isolated(),
        status: Status::Accepted,
        error: None,
        capabilities: Some(
            plugin
                .capabilities()
                .iter()
                .map(|(name, _)| *name)
                .collect(),
        ),
        greeting: None,
        note: None,
    }
}

pub(crate) fn loaded_entry(plugin: &Plugin<GreeterPlugin>) -> Entry {
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

pub(crate) fn rejected_entry(error: &LoadError) -> Entry {
    let name = match error.kind() {
        LoadErrorKind::DuplicateName { name, .. } => Some(name.clone()),
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
pub(crate) fn rejection(error: &LoadError) -> String {
    let hint = match error.kind() {
        LoadErrorKind::NotLocked { .. } => " (record it with `greeter-host lock`)".to_owned(),
        LoadErrorKind::InsecurePermissions { source } => permission_hint(error.path(), source),
        _ => String::new(),
    };
    format!("{}{hint}", ErrorChain(error))
}

/// How to fix a permission refusal of `path`.
pub(crate) fn permission_hint(path: &Path, error: &PermissionError) -> String {
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

pub(crate) fn lossy_path<S: serde::Serializer>(
    path: &Path,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

/// Text from plugins and files, made safe for a terminal: control
/// characters (escape sequences included), bidirectional overrides and
/// zero-width characters are shown as `\u{..}` instead of acting.
pub(crate) fn shown(text: &str) -> Cow<'_, str> {
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
pub(crate) fn shown_path(path: &Path) -> String {
    shown(&path.to_string_lossy()).into_owned()
}

pub(crate) fn write_json(out: &mut impl Write, entries: &[Entry]) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, entries).context("cannot write JSON")?;
    writeln!(out)?;
    Ok(())
}
