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
    }
}

/// `dropin inspect FILE`.
fn inspect(file: &Path, format: Format) -> ExitCode {
    let description = match read_description(file) {
        Ok(description) => description,
        Err(DescriptionReadError::Io(error)) => {
            eprintln!("dropin: {}: cannot read the file: {error}", file.display());
            return ExitCode::from(2);
        }
        Err(error) => {
            eprintln!("dropin: {}: {}", file.display(), ErrorChain(&error));
            return ExitCode::from(1);
        }
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
