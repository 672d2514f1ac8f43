//! `dropin`: what a plugin file is, for any interface, compiled against
//! none. Everything it says comes from the file's description
//! ([`dropin::description`]), read as data: no plugin code runs, in this
//! process or any other.
//!
//! Exit status: 0 when every file passed, 1 when one was refused, 2 for a
//! usage or I/O error.

/// Writes a line to standard error, its control characters shown as
/// `\u{..}` (file names and errors carry what files hold), never
/// panicking on a closed standard error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = writeln!(::std::io::stderr(), "{}", shown(&format!($($arg)*)));
    }};
}

use std::{
    collections::HashMap,
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand, ValueEnum};
use dropin::description::{Description, Method};
use dropin_host::{
    Application, DescribedFile, DescriptionReadError, ErrorChain, Judged, LoadError, LoadErrorKind,
    LockEntry, Lockfile, describe_file, read_description,
};
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
    /// found). Each is a plugin file or an application's executable (for an
    /// application OLD: a plugin built with its interface). For an
    /// interface's CI: diff a plugin of the previous release against one
    /// built with the new interface.
    Diff {
        /// The plugin file (or application) whose plugin the host would load.
        old: PathBuf,
        /// A plugin file built with the host's interface, or the host itself.
        new: PathBuf,
        /// Which interface of an application that loads several.
        #[arg(long, value_name = "NAME")]
        interface: Option<String>,
        /// The output's format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Whether each plugin file of DIR would load in the application APP:
    /// the checks its loader makes before it opens a file (interface and
    /// versions, every method's signature, host requirement, how it was
    /// built, unique names), from the files' descriptions and the
    /// application's, with neither running.
    Check {
        /// The plugins folder.
        dir: PathBuf,
        #[command(flatten)]
        host: HostArgs,
        /// The output's format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Writes DIR/plugins.lock, as the application's own `lock` would: an
    /// entry (file, SHA-256, name, versions) for every file `check` accepts,
    /// and `not locked` with the reason for the others.
    Lock {
        /// The plugins folder.
        dir: PathBuf,
        #[command(flatten)]
        host: HostArgs,
    },
}

/// The application that `check` and `lock` judge for.
#[derive(clap::Args, Debug)]
struct HostArgs {
    /// The application's executable (built with dropin-host's loader).
    #[arg(long, value_name = "APP")]
    host: PathBuf,
    /// Which interface of an application that loads several.
    #[arg(long, value_name = "NAME")]
    interface: Option<String>,
    /// Interface versions to accept [default: the application's major].
    #[arg(long, value_name = "REQ")]
    accept_interface: Option<semver::VersionReq>,
    /// The application's version, matched against plugins' host
    /// requirements [default: not checked; its executable does not say it].
    #[arg(long, value_name = "VERSION")]
    host_version: Option<semver::Version>,
    /// Accept plugins built with panic = "abort".
    #[arg(long)]
    allow_panic_abort: bool,
    /// Accept files and folders that the group or others may write.
    #[arg(long)]
    allow_insecure_permissions: bool,
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
        Command::Diff {
            old,
            new,
            interface,
            format,
        } => diff(&old, &new, interface.as_deref(), format),
        Command::List { dir, format } => list(&dir, format),
        Command::Check { dir, host, format } => check(&dir, &host, format),
        Command::Lock { dir, host } => lock(&dir, &host),
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
            say!("dropin: {}", ErrorChain(&error));
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
        Format::Json => write_json(&mut out, &listed),
    };
    finish(written, refused)
}

/// The description of `file`, or the exit status for why not, said.
fn described(file: &Path) -> Result<Description, ExitCode> {
    match read_description(file) {
        Ok(description) => Ok(description),
        Err(DescriptionReadError::Io(error)) => {
            say!("dropin: {}: cannot read the file: {error}", file.display());
            Err(ExitCode::from(2))
        }
        Err(error) => {
            say!("dropin: {}: {}", file.display(), ErrorChain(&error));
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

/// A file `diff` compares: a plugin's, or an application's.
enum Either {
    Plugin(Box<Description>),
    Application(Vec<Application>),
}

/// What `file` is: a plugin, else an application; or the exit status for
/// neither, said.
fn read_either(file: &Path) -> Result<Either, ExitCode> {
    match read_description(file) {
        Err(DescriptionReadError::Missing) => match Application::read(file) {
            Ok(applications) => Ok(Either::Application(applications)),
            // Neither: what a plugin lacks is the clearer word.
            Err(DescriptionReadError::NoApplication) => {
                described(file).map(|description| Either::Plugin(Box::new(description)))
            }
            Err(error) => {
                say!("dropin: {}: {}", file.display(), ErrorChain(&error));
                Err(ExitCode::from(1))
            }
        },
        _ => described(file).map(|description| Either::Plugin(Box::new(description))),
    }
}

/// The one of `applications` (read from `file`) for `interface` (the only
/// one, when it loads plugins of one interface and `interface` is not
/// given), or the exit status for none or several, said: a usage error.
fn choose(
    file: &Path,
    mut applications: Vec<Application>,
    interface: Option<&str>,
) -> Result<Application, ExitCode> {
    if applications.len() == 1 && interface.is_none() {
        return Ok(applications.remove(0));
    }
    let names: Vec<String> = applications
        .iter()
        .map(|application| application.interface().to_owned())
        .collect();
    let mut matching = applications
        .into_iter()
        .filter(|application| interface.is_none_or(|name| application.interface() == name));
    match (matching.next(), matching.next()) {
        (Some(application), None) => Ok(application),
        (None, _) => {
            say!(
                "dropin: {}: expected an application of interface {}, found one of {}",
                file.display(),
                shown(interface.unwrap_or_default()),
                shown(&names.join(", "))
            );
            Err(ExitCode::from(2))
        }
        (Some(_), Some(_)) => {
            say!(
                "dropin: {}: the application loads plugins of {}: choose one with --interface",
                file.display(),
                shown(&names.join(", "))
            );
            Err(ExitCode::from(2))
        }
    }
}

/// `dropin diff OLD NEW`.
fn diff(old_file: &Path, new_file: &Path, interface: Option<&str>, format: Format) -> ExitCode {
    let (old, new) = match (read_either(old_file), read_either(new_file)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let verdict = match diff_verdict(old_file, old, new_file, new, interface) {
        Ok(verdict) => verdict,
        Err(code) => return code,
    };
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
        Format::Json => write_json(&mut out, &verdict),
    };
    finish(written, incompatible)
}

/// What `diff` finds: whether a host of NEW's interface (`interface`, when
/// NEW loads several) loads OLD's plugin, or a plugin built with OLD's
/// interface; or the exit status for a usage error, said.
fn diff_verdict(
    old_file: &Path,
    old: Either,
    new_file: &Path,
    new: Either,
    interface: Option<&str>,
) -> Result<Verdict, ExitCode> {
    let incompatible = |reason: String| Verdict {
        verdict: "incompatible",
        missing: Vec::new(),
        reason: Some(reason),
    };
    let loads = |applications: &[Application]| {
        applications
            .iter()
            .map(|application| application.interface().to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    // OLD's interface, when it has one.
    let olds = match &old {
        Either::Plugin(old) => Some(old.interface_name.clone()),
        Either::Application(applications) if applications.len() == 1 => {
            Some(applications[0].interface().to_owned())
        }
        Either::Application(_) => None,
    };
    // The host side: NEW as an application (a plugin's description names
    // the interface it was built with, as an application's does). A named
    // interface NEW lacks is a usage error; OLD's interface missing from
    // NEW is the verdict.
    let host = match new {
        Either::Plugin(new) => {
            if let Some(name) = interface.filter(|name| *name != new.interface_name) {
                say!(
                    "dropin: {}: expected a plugin of interface {name}, found one of {}",
                    new_file.display(),
                    new.interface_name
                );
                return Err(ExitCode::from(2));
            }
            Application::from_description(*new)
        }
        Either::Application(applications) => match (interface, applications.len()) {
            (Some(name), _) => Ok(choose(new_file, applications, Some(name))?),
            (None, 1) => Ok(applications.into_iter().next().expect("one")),
            (None, _) => match &olds {
                Some(olds) => match applications
                    .iter()
                    .position(|application| application.interface() == olds)
                {
                    Some(at) => Ok(applications.into_iter().nth(at).expect("found")),
                    None => {
                        return Ok(incompatible(format!(
                            "the application loads plugins of {}, not of {olds}",
                            loads(&applications)
                        )));
                    }
                },
                None => Ok(choose(new_file, applications, None)?),
            },
        },
    };
    let host = match host {
        Ok(host) => host.allow_panic_abort(true),
        Err(error) => {
            say!("dropin: {}: {}", new_file.display(), ErrorChain(&error));
            return Err(ExitCode::from(1));
        }
    };
    // The plugin side: OLD's plugin, or a plugin built with OLD's
    // interface (its only one, or the host's).
    let plugin = match old {
        Either::Plugin(old) => *old,
        Either::Application(applications) => {
            let chosen = if applications.len() == 1 {
                applications.into_iter().next()
            } else {
                let names = loads(&applications);
                let chosen = applications
                    .into_iter()
                    .find(|application| application.interface() == host.interface());
                if chosen.is_none() {
                    return Ok(incompatible(format!(
                        "the application {} loads plugins of {names}, not of {}",
                        old_file.display(),
                        host.interface()
                    )));
                }
                chosen
            };
            let mut plugin = chosen.expect("chosen").description().clone();
            plugin.plugin_name = "plugin".to_owned();
            plugin.plugin_version = "0.0.0".to_owned();
            plugin
        }
    };
    Ok(match host.judge(old_file, &plugin) {
        Ok(judged) => {
            let missing: Vec<ShownMethod> = judged
                .missing_capabilities
                .iter()
                .filter_map(|(name, _)| host.methods().iter().find(|method| method.name == *name))
                .map(ShownMethod::of)
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
        Err(error) => incompatible(error.kind().to_string()),
    })
}

/// `value` as pretty JSON on `out`, then a new line.
fn write_json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// The exit status once the output is `written`: 1 if something was
/// `refused`.
fn finish(written: io::Result<()>, refused: bool) -> ExitCode {
    match written {
        Ok(()) if refused => ExitCode::from(1),
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say!("dropin: cannot write the output: {error}");
            ExitCode::from(2)
        }
    }
}

/// One file's verdict in `check` and `lock`.
struct Checked {
    path: PathBuf,
    outcome: Result<(DescribedFile, Judged), LoadError>,
}

/// The application `args` names, and each plugin file of `dir` judged for
/// it as its loader would before opening anything; or the exit status for
/// why not, said.
fn judged_folder(
    dir: &Path,
    args: &HostArgs,
    under_lock: bool,
) -> Result<(Application, Vec<Checked>), ExitCode> {
    let applications = match Application::read(&args.host) {
        Ok(applications) => applications,
        Err(DescriptionReadError::Io(error)) => {
            say!(
                "dropin: {}: cannot read the file: {error}",
                args.host.display()
            );
            return Err(ExitCode::from(2));
        }
        Err(error) => {
            say!("dropin: {}: {}", args.host.display(), ErrorChain(&error));
            return Err(ExitCode::from(2));
        }
    };
    let mut host = choose(&args.host, applications, args.interface.as_deref())
        .map_err(|_| ExitCode::from(2))?
        .allow_panic_abort(args.allow_panic_abort);
    if let Some(req) = &args.accept_interface {
        host = host.accept_interface(req.clone());
    }
    if let Some(version) = &args.host_version {
        host = host.host_version(version.clone());
    }
    let files = dropin_host::discover(dir).map_err(|error| {
        say!("dropin: {}", ErrorChain(&error));
        ExitCode::from(2)
    })?;
    if !args.allow_insecure_permissions
        && let Err(error) = dropin_host::check_permissions(dir)
    {
        say!(
            "dropin: plugins folder {} is not safe: {}",
            dir.display(),
            ErrorChain(&error)
        );
        return Err(ExitCode::from(2));
    }
    // The lock file in force, as the application's loader applies it
    // (recording ignores it).
    let lockfile_path = dir.join(dropin_host::LOCKFILE_NAME);
    let lockfile = if under_lock {
        match Lockfile::read(&lockfile_path, !args.allow_insecure_permissions) {
            Ok(lockfile) => lockfile,
            Err(error) => {
                say!("dropin: {}", ErrorChain(&error));
                return Err(ExitCode::from(2));
            }
        }
    } else {
        None
    };
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    let checked = files
        .into_iter()
        .map(|path| {
            let entry = lockfile.as_ref().map(|lockfile| {
                let file = path.file_name().unwrap_or_default().to_string_lossy();
                lockfile.plugins.iter().find(|entry| entry.file == file)
            });
            let outcome = match entry {
                Some(None) => Err(LoadErrorKind::NotLocked {
                    lockfile: lockfile_path.clone(),
                }
                .at(path.clone())),
                _ => describe_file(&path, !args.allow_insecure_permissions),
            }
            .and_then(|file| {
                if let Some(Some(entry)) = entry {
                    entry.check_hash(&path, &file.sha256)?;
                    entry.check_name(&path, &file.description.plugin_name)?;
                }
                let judged = host.judge(&path, &file.description)?;
                let name = &file.description.plugin_name;
                if let Some(first) = names.get(name) {
                    return Err(LoadErrorKind::DuplicateName {
                        name: name.clone(),
                        first: first.clone(),
                    }
                    .at(path.clone()));
                }
                names.insert(name.clone(), path.clone());
                Ok((file, judged))
            });
            Checked { path, outcome }
        })
        .collect();
    Ok((host, checked))
}

/// `check --format json`.
#[derive(Serialize)]
struct CheckReport {
    host: String,
    interface: String,
    interface_version: String,
    accepts: String,
    host_version: Option<String>,
    files: Vec<CheckEntry>,
}

#[derive(Serialize)]
struct CheckEntry {
    path: String,
    /// `accepted` or `rejected`.
    status: &'static str,
    name: Option<String>,
    version: Option<String>,
    interface_version: Option<String>,
    host_requirement: Option<String>,
    host_requirement_checked: Option<bool>,
    missing_capabilities: Option<Vec<String>>,
    sha256: Option<String>,
    error: Option<String>,
}

/// `dropin check DIR --host APP`.
fn check(dir: &Path, args: &HostArgs, format: Format) -> ExitCode {
    let (host, checked) = match judged_folder(dir, args, true) {
        Ok(judged) => judged,
        Err(code) => return code,
    };
    let refused = checked.iter().any(|file| file.outcome.is_err());
    let host_version = args.host_version.as_ref().map(ToString::to_string);
    let mut out = io::stdout().lock();
    let written = match format {
        Format::Json => {
            let report = CheckReport {
                host: args.host.display().to_string(),
                interface: host.interface().to_owned(),
                interface_version: host.interface_version().to_string(),
                accepts: host.accepted().to_string(),
                host_version,
                files: checked
                    .iter()
                    .map(|file| match &file.outcome {
                        Ok((described, judged)) => {
                            let plugin = &described.description;
                            CheckEntry {
                                path: file.path.display().to_string(),
                                status: "accepted",
                                name: Some(plugin.plugin_name.clone()),
                                version: Some(plugin.plugin_version.clone()),
                                interface_version: Some(plugin.interface_version.clone()),
                                host_requirement: Some(plugin.host_requirement.clone())
                                    .filter(|req| !req.is_empty()),
                                host_requirement_checked: Some(
                                    judged.unchecked_host_requirement.is_none(),
                                ),
                                missing_capabilities: Some(missing(judged)),
                                sha256: Some(described.sha256.clone()),
                                error: None,
                            }
                        }
                        Err(error) => CheckEntry {
                            path: file.path.display().to_string(),
                            status: "rejected",
                            name: None,
                            version: None,
                            interface_version: None,
                            host_requirement: None,
                            host_requirement_checked: None,
                            missing_capabilities: None,
                            sha256: None,
                            error: Some(ErrorChain(error).to_string()),
                        },
                    })
                    .collect(),
            };
            write_json(&mut out, &report)
        }
        Format::Text => {
            let mut text = String::new();
            for file in &checked {
                match &file.outcome {
                    Ok((described, judged)) => {
                        let plugin = &described.description;
                        let requirement = match (&judged.unchecked_host_requirement, &host_version)
                        {
                            (Some(req), _) => format!(
                                "{} (not checked: pass the application's version with \
                                 --host-version)",
                                shown(req)
                            ),
                            (None, _) if plugin.host_requirement.is_empty() => "any".to_owned(),
                            (None, version) => format!(
                                "{} (host is {})",
                                shown(&plugin.host_requirement),
                                version.as_deref().unwrap_or_default()
                            ),
                        };
                        let missing = missing(judged);
                        text.push_str(&format!(
                            "ok        {}\n          plugin {} {}; interface {} (host accepts \
                             {}); host requirement {requirement}; missing capabilities: {}\n",
                            shown_path(&file.path),
                            shown(&plugin.plugin_name),
                            shown(&plugin.plugin_version),
                            shown(&plugin.interface_version),
                            host.accepted(),
                            if missing.is_empty() {
                                "none".to_owned()
                            } else {
                                shown(&missing.join(", "))
                            }
                        ));
                    }
                    Err(error) => text.push_str(&format!(
                        "rejected  {}\n          {}\n",
                        shown_path(&file.path),
                        shown(&ErrorChain(error).to_string())
                    )),
                }
            }
            text.push_str(&format!(
                "{}: {} of {} plugin files accepted by {} ({} {})",
                shown_path(dir),
                checked.iter().filter(|file| file.outcome.is_ok()).count(),
                checked.len(),
                shown_path(&args.host),
                shown(host.interface()),
                host.interface_version(),
            ));
            writeln!(out, "{text}")
        }
    };
    finish(written, refused)
}

/// The methods a plugin lacks, as `check` shows them.
fn missing(judged: &Judged) -> Vec<String> {
    judged
        .missing_capabilities
        .iter()
        .map(|(name, since)| format!("{name} (since {since})"))
        .collect()
}

/// `dropin lock DIR --host APP`.
fn lock(dir: &Path, args: &HostArgs) -> ExitCode {
    let (_, checked) = match judged_folder(dir, args, false) {
        Ok(judged) => judged,
        Err(code) => return code,
    };
    let mut entries = Vec::new();
    let mut refused = Vec::new();
    for file in checked {
        match file.outcome {
            Ok((described, judged)) => {
                if let Some(requirement) = &judged.unchecked_host_requirement {
                    say!(
                        "dropin: {}: its host requirement {} was not checked: pass the \
                         application's version with --host-version",
                        shown(&file.path.display().to_string()),
                        shown(requirement)
                    );
                }
                let plugin = described.description;
                entries.push(LockEntry {
                    file: file
                        .path
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    sha256: described.sha256,
                    name: plugin.plugin_name,
                    version: plugin.plugin_version,
                    interface_version: plugin.interface_version,
                });
            }
            Err(error) => refused.push(error),
        }
    }
    let path = dir.join(dropin_host::LOCKFILE_NAME);
    let count = entries.len();
    if let Err(error) = Lockfile::new(entries).write(&path) {
        say!("dropin: {}", ErrorChain(&error));
        return ExitCode::from(2);
    }
    let mut text = format!("wrote {}: {count} plugin files locked", shown_path(&path));
    for error in &refused {
        text.push_str(&format!(
            "\nnot locked  {}",
            shown(&ErrorChain(error).to_string())
        ));
    }
    let written = writeln!(io::stdout().lock(), "{text}");
    finish(written, !refused.is_empty())
}

/// `dropin inspect FILE`.
fn inspect(file: &Path, format: Format) -> ExitCode {
    let description = match read_either(file) {
        Ok(Either::Plugin(description)) => description,
        Ok(Either::Application(applications)) => {
            return inspect_application(file, &applications, format);
        }
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
            say!("dropin: {}: cannot read the file: {error}", file.display());
            return ExitCode::from(2);
        }
    };
    let shown = Shown::of(file, &description, sha256);
    let mut out = io::stdout().lock();
    let written = match format {
        Format::Text => write!(out, "{}", shown.text()),
        Format::Json => write_json(&mut out, &shown),
    };
    finish(written, false)
}

/// An application's interfaces, as `inspect` shows them.
#[derive(Serialize)]
struct ShownApplication {
    file: String,
    interface: String,
    interface_version: String,
    accepts: String,
    dropin_version: String,
    arch: String,
    os: String,
    methods: Vec<ShownMethod>,
    services_trait: String,
    services: Vec<ShownMethod>,
}

/// `dropin inspect APP`: the interfaces whose plugins it loads.
fn inspect_application(file: &Path, applications: &[Application], format: Format) -> ExitCode {
    let shown_all: Vec<ShownApplication> = applications
        .iter()
        .map(|application| {
            let description = application.description();
            ShownApplication {
                file: file.display().to_string(),
                interface: description.interface_name.clone(),
                interface_version: description.interface_version.clone(),
                accepts: application.accepted().to_string(),
                dropin_version: description.dropin_version.clone(),
                arch: description.arch.clone(),
                os: description.os.clone(),
                methods: description.methods.iter().map(ShownMethod::of).collect(),
                services_trait: description.services_name.clone(),
                services: description.services.iter().map(ShownMethod::of).collect(),
            }
        })
        .collect();
    let mut out = io::stdout().lock();
    let written = match format {
        Format::Text => {
            let mut text = String::new();
            for application in &shown_all {
                text.push_str(&format!(
                    "{}\n  application of interface {} {} (accepts {})\n  built      with dropin \
                     {} for {}-{}\n",
                    shown(&application.file),
                    shown(&application.interface),
                    shown(&application.interface_version),
                    application.accepts,
                    shown(&application.dropin_version),
                    shown(&application.arch),
                    shown(&application.os),
                ));
                text.push_str(&methods_text(&application.methods));
                text.push_str(&services_text(
                    &application.services_trait,
                    &application.services,
                ));
            }
            write!(out, "{text}")
        }
        Format::Json => write_json(&mut out, &shown_all),
    };
    finish(written, false)
}

/// The `methods` lines of `inspect`.
fn methods_text(methods: &[ShownMethod]) -> String {
    let mut text = String::new();
    for (i, method) in methods.iter().enumerate() {
        let label = if i == 0 { "methods" } else { "" };
        text.push_str(&format!(
            "  {label:<9}  {} (since {})\n",
            shown(&method.signature),
            shown(&method.since)
        ));
    }
    text
}

/// The `services` lines of `inspect`: the trait, then each service; none
/// for an interface without services.
fn services_text(services_trait: &str, services: &[ShownMethod]) -> String {
    if services_trait.is_empty() {
        return String::new();
    }
    let mut text = format!("  services   {}\n", shown(services_trait));
    for service in services {
        text.push_str(&format!(
            "             {} (since {})\n",
            shown(&service.signature),
            shown(&service.since)
        ));
    }
    text
}

/// A path, [`shown`].
fn shown_path(path: &Path) -> String {
    shown(&path.display().to_string())
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
    /// The host services trait the interface names (empty: none).
    services_trait: String,
    /// The services a plugin may call.
    services: Vec<ShownMethod>,
}

#[derive(Serialize)]
struct ShownMethod {
    name: String,
    since: String,
    signature: String,
}

impl ShownMethod {
    fn of(method: &Method) -> Self {
        Self {
            name: method.name.clone(),
            since: method.since.clone(),
            signature: method.to_string(),
        }
    }
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
            methods: description.methods.iter().map(ShownMethod::of).collect(),
            services_trait: description.services_name.clone(),
            services: description.services.iter().map(ShownMethod::of).collect(),
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
        text.push_str(&methods_text(&self.methods));
        text.push_str(&services_text(&self.services_trait, &self.services));
        text
    }
}
