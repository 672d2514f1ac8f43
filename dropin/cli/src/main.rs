//! `dropin`: what a plugin file is, for any interface, compiled against
//! none. Everything it says comes from the file's description
//! ([`dropin::description`]), read as data: no plugin code runs, in this
//! process or any other.
//!
//! Exit status: 0 when every file passed, 1 when one was refused, 2 for a
//! usage or I/O error.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand, ValueEnum};
use dropin::description::Description;
use dropin_host::{DescriptionReadError, ErrorChain, read_description};
use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Parser, Debug)]
#[command(
    name = "dropin",
    version,
    about = "What a dropin plugin file is, read from the file"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A plugin file's description: its name and version, its interface,
    /// every method's signature, how it was built, its SHA-256.
    Inspect {
        /// The plugin file.
        file: PathBuf,
        /// The output's format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Every plugin file of a folder (named like a library of this
    /// platform): its name, version and interface, or why it has no
    /// description to read.
    List {
        /// The plugins folder.
        dir: PathBuf,
        /// The output's format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Whether a host built with NEW's interface would load OLD's plugin:
    /// compatible; compatible with methods missing (which, since which
    /// version); or incompatible (which method, which argument, expected vs
    /// found). For an interface's CI: diff a plugin of the previous release
    /// against one built with the new interface.
    Diff {
        /// The plugin file the host would load.
        old: PathBuf,
        /// A plugin file built with the host's interface.
        new: PathBuf,
        /// The output's format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect { file, format } => inspect(&file, format),
        Command::Diff { old, new, format } => diff(&old, &new, format),
        Command::List { dir, format } => list(&dir, format),
    }
}

/// One file of `dropin list`.
#[derive(Serialize)]
struct Listed {
    file: String,
    /// `described` or `refused`.
    status: &'static str,
    name: Option<String>,
    version: Option<String>,
    interface: Option<String>,
    interface_version: Option<String>,
    error: Option<String>,
}

/// `dropin list DIR`.
fn list(dir: &Path, format: Format) -> ExitCode {
    let files = match dropin_host::discover(dir) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("dropin: {}", ErrorChain(&error));
            return ExitCode::from(2);
        }
    };
    let listed: Vec<Listed> = files
        .iter()
        .map(|file| {
            let shown_file = file.display().to_string();
            match read_description(file) {
                Ok(description) => Listed {
                    file: shown_file,
                    status: "described",
                    name: Some(description.plugin_name),
                    version: Some(description.plugin_version),
                    interface: Some(description.interface_name),
                    interface_version: Some(description.interface_version),
                    error: None,
                },
                Err(error) => Listed {
                    file: shown_file,
                    status: "refused",
                    name: None,
                    version: None,
                    interface: None,
                    interface_version: None,
                    error: Some(ErrorChain(&error).to_string()),
                },
            }
        })
        .collect();
    let refused = listed.iter().any(|listed| listed.status == "refused");
    let mut out = io::stdout().lock();
    let written = match format {
        Format::Text => listed.iter().try_for_each(|listed| match listed.status {
            "described" => writeln!(
                out,
                "{:<9} {}\n          plugin {} {}; interface {} {}",
                listed.status,
                shown(&listed.file),
                shown(listed.name.as_deref().unwrap_or_default()),
                shown(listed.version.as_deref().unwrap_or_default()),
                shown(listed.interface.as_deref().unwrap_or_default()),
                shown(listed.interface_version.as_deref().unwrap_or_default()),
            ),
            _ => writeln!(
                out,
                "{:<9} {}\n          {}",
                listed.status,
                shown(&listed.file),
                shown(listed.error.as_deref().unwrap_or_default()),
            ),
        }),
        Format::Json => serde_json::to_writer_pretty(&mut out, &listed)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out)),
    };
    match written {
        Ok(()) if refused => ExitCode::from(1),
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dropin: cannot write the output: {error}");
            ExitCode::from(2)
        }
    }
}

/// The description of `file`, or the exit status for why not, said.
fn described(file: &Path) -> Result<Description, ExitCode> {
    match read_description(file) {
        Ok(description) => Ok(description),
        Err(DescriptionReadError::Io(error)) => {
            eprintln!("dropin: {}: cannot read the file: {error}", file.display());
            Err(ExitCode::from(2))
        }
        Err(error) => {
            eprintln!("dropin: {}: {}", file.display(), ErrorChain(&error));
            Err(ExitCode::from(1))
        }
    }
}

/// What `diff` found.
#[derive(Serialize)]
struct Verdict {
    /// `compatible`, `missing` (compatible, with methods missing) or
    /// `incompatible`.
    verdict: &'static str,
    /// The methods OLD lacks, for `missing`.
    missing: Vec<ShownMethod>,
    /// Why, for `incompatible`.
    reason: Option<String>,
}

/// `dropin diff OLD NEW`.
fn diff(old: &Path, new: &Path, format: Format) -> ExitCode {
    let (old, new) = match (described(old), described(new)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let verdict = judge(&old, &new);
    let incompatible = verdict.verdict == "incompatible";
    let mut out = io::stdout().lock();
    let written = match format {
        Format::Text => {
            let text = match verdict.verdict {
                "compatible" => "compatible".to_owned(),
                "missing" => format!(
                    "compatible, with methods missing: {}",
                    verdict
                        .missing
                        .iter()
                        .map(|method| format!("{} (since {})", method.name, method.since))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => format!(
                    "incompatible: {}",
                    verdict.reason.as_deref().unwrap_or_default()
                ),
            };
            writeln!(out, "{}", shown(&text))
        }
        Format::Json => serde_json::to_writer_pretty(&mut out, &verdict)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out)),
    };
    match written {
        Ok(()) if incompatible => ExitCode::from(1),
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dropin: cannot write the output: {error}");
            ExitCode::from(2)
        }
    }
}

/// Whether a host of `new`'s interface accepts `old`'s plugin, by the rules
/// a host applies: the same interface, the same major (the same minor, for
/// 0.x), and every method both have with the same signature. Methods `old`
/// lacks make it compatible with methods missing; methods it has beyond
/// `new`'s are never called.
fn judge(old: &Description, new: &Description) -> Verdict {
    let incompatible = |reason: String| Verdict {
        verdict: "incompatible",
        missing: Vec::new(),
        reason: Some(reason),
    };
    if old.interface_name != new.interface_name {
        return incompatible(format!(
            "expected interface {}, found {}",
            new.interface_name, old.interface_name
        ));
    }
    let series = |version: &str| {
        let mut parts = version.split('.');
        match (parts.next(), parts.next()) {
            (Some("0"), Some(minor)) => format!("0.{minor}"),
            (Some(major), _) => major.to_owned(),
            _ => version.to_owned(),
        }
    };
    if series(&old.interface_version) != series(&new.interface_version) {
        return incompatible(format!(
            "built against {} {}, another major version than {}",
            old.interface_name, old.interface_version, new.interface_version
        ));
    }
    for (expected, found) in new.methods.iter().zip(&old.methods) {
        if let Some(difference) = expected.difference(found) {
            return incompatible(difference);
        }
    }
    // A method added in a version the plugin declares is one it must have.
    let declared = semver::Version::parse(&old.interface_version).ok();
    if let Some(lacking) = new.methods.iter().skip(old.methods.len()).find(|method| {
        semver::Version::parse(&method.since)
            .is_ok_and(|since| declared.as_ref().is_some_and(|declared| since <= *declared))
    }) {
        return incompatible(format!(
            "it declares interface {} but lacks method `{}`, added in {}",
            old.interface_version, lacking.name, lacking.since
        ));
    }
    let missing: Vec<ShownMethod> = new
        .methods
        .iter()
        .skip(old.methods.len())
        .map(|method| ShownMethod {
            name: method.name.clone(),
            since: method.since.clone(),
            signature: method.to_string(),
        })
        .collect();
    Verdict {
        verdict: if missing.is_empty() {
            "compatible"
        } else {
            "missing"
        },
        missing,
        reason: None,
    }
}

/// `dropin inspect FILE`.
fn inspect(file: &Path, format: Format) -> ExitCode {
    let description = match described(file) {
        Ok(description) => description,
        Err(code) => return code,
    };
    // Streamed: a file of any size costs no more memory than a buffer.
    let hashed = fs::File::open(file).and_then(|mut bytes| {
        let mut hasher = Sha256::new();
        io::copy(&mut bytes, &mut hasher)?;
        Ok(hasher.finalize())
    });
    let sha256 = match hashed {
        Ok(digest) => hex(&digest),
        Err(error) => {
            eprintln!("dropin: {}: cannot read the file: {error}", file.display());
            return ExitCode::from(2);
        }
    };
    let shown = Shown::of(file, &description, sha256);
    let mut out = io::stdout().lock();
    let written = match format {
        Format::Text => write!(out, "{}", shown.text()),
        Format::Json => serde_json::to_writer_pretty(&mut out, &shown)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out)),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dropin: cannot write the output: {error}");
            ExitCode::from(2)
        }
    }
}

/// `text` with its control characters (escape sequences, new lines) shown
/// as `\u{..}` instead of acting on the terminal: the plugin wrote it.
fn shown(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                format!("\\u{{{:x}}}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A description as `inspect` shows it; its JSON form is documented in the
/// README.
#[derive(Serialize)]
struct Shown {
    file: String,
    name: String,
    version: String,
    interface: String,
    interface_version: String,
    dropin_version: String,
    host_requirement: String,
    arch: String,
    os: String,
    panic: &'static str,
    debug_assertions: bool,
    sha256: String,
    methods: Vec<ShownMethod>,
}

#[derive(Serialize)]
struct ShownMethod {
    name: String,
    since: String,
    signature: String,
}

impl Shown {
    fn of(file: &Path, description: &Description, sha256: String) -> Self {
        Self {
            file: file.display().to_string(),
            name: description.plugin_name.clone(),
            version: description.plugin_version.clone(),
            interface: description.interface_name.clone(),
            interface_version: description.interface_version.clone(),
            dropin_version: description.dropin_version.clone(),
            host_requirement: description.host_requirement.clone(),
            arch: description.arch.clone(),
            os: description.os.clone(),
            panic: if description.panic_abort {
                "abort"
            } else {
                "unwind"
            },
            debug_assertions: description.debug_assertions,
            sha256,
            methods: description
                .methods
                .iter()
                .map(|method| ShownMethod {
                    name: method.name.clone(),
                    since: method.since.clone(),
                    signature: method.to_string(),
                })
                .collect(),
        }
    }

    fn text(&self) -> String {
        let host = if self.host_requirement.is_empty() {
            "any".to_owned()
        } else {
            shown(&self.host_requirement)
        };
        let mut text = format!(
            "{}\n  plugin     {} {}\n  interface  {} {}\n  host       {host}\n  \
             built      with dropin {} for {}-{}, panic = \"{}\"{}\n  sha256     {}\n",
            shown(&self.file),
            shown(&self.name),
            shown(&self.version),
            shown(&self.interface),
            shown(&self.interface_version),
            shown(&self.dropin_version),
            shown(&self.arch),
            shown(&self.os),
            self.panic,
            if self.debug_assertions {
                ", debug assertions"
            } else {
                ""
            },
            self.sha256,
        );
        for (i, method) in self.methods.iter().enumerate() {
            let label = if i == 0 { "methods" } else { "" };
            text.push_str(&format!(
                "  {label:<9}  {} (since {})\n",
                shown(&method.signature),
                shown(&method.since)
            ));
        }
        text
    }
}
