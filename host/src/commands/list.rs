//! `list`: every candidate file, accepted or refused, and why, from the
//! files' descriptions: no plugin code runs.

use std::io::Write;

use dropin_host::Survey;

use crate::{
    cli::Format,
    output::{Status, entries, shown, shown_path, write_json},
};

pub(crate) fn list(out: &mut impl Write, survey: &Survey, format: Format) -> anyhow::Result<bool> {
    let entries = entries(survey);
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
                        // Would load, in a process of its own.
                        (Status::Accepted, true) => "isolated",
                        (Status::Accepted, false) => "accepted",
                        (Status::Loaded, _) => "loaded",
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
    Ok(survey.refused.is_empty())
}
