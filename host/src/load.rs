//! Stage 3: open one file, check it, and turn it into a [`Plugin`].
//!
//! The order of the checks is the product: nothing of the plugin's code runs
//! until the file's headers were verified ([`crate::verify`]), and its
//! initialisation runs only after abi_stable's version and layout checks and
//! the host's own version policy have passed.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use abi_stable::library::{LibraryError, RootModule, RootModuleError, lib_header_from_path};
use semver::{Version, VersionReq};

use crate::verify::{VerifyError, verify_library};

/// An interface whose plugins this loader can load: the glue between a
/// root-module type and the generic loader.
///
/// The greeter interface is one ([`GreeterInterface`](crate::GreeterInterface));
/// another interface crate gets discovery, verification, version checks and
/// the registry by implementing this trait for a marker type.
pub trait PluginInterface: Sized + 'static {
    /// The root module's reference type (an abi_stable prefix reference).
    type Module: RootModule + Copy;

    /// A short name for messages, such as `"greeter"`.
    const NAME: &'static str;

    /// The version of the interface crate this host was compiled with.
    const VERSION: &'static str;

    /// Reads the name and versions recorded in a module.
    fn metadata(module: Self::Module) -> Metadata;

    /// Runs once per plugin, after every check passed and before it is
    /// registered: the place to install a log bridge or let the plugin set up
    /// its state.
    ///
    /// # Errors
    ///
    /// A message saying why the plugin cannot be used; it is rejected.
    fn initialize(module: Self::Module) -> Result<(), String> {
        let _ = module;
        Ok(())
    }
}

/// The identity a plugin declares in its root module.
#[derive(Debug, Clone, Copy)]
pub struct Metadata {
    /// The plugin's name.
    pub name: &'static str,
    /// The plugin's version (semver).
    pub version: &'static str,
    /// The interface version the plugin was built against (semver).
    pub interface_version: &'static str,
}

/// Why one file was rejected. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file is not a library this host can map: see the source.
    #[error("{}: not a loadable library", path.display())]
    InvalidLibrary {
        /// The file.
        path: PathBuf,
        /// What is wrong with its headers.
        #[source]
        source: VerifyError,
    },
    /// The dynamic loader refused the file.
    #[error("{}: the dynamic loader refused it: {message}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The dynamic loader's message.
        message: String,
    },
    /// The library exports no abi_stable root module.
    #[error(
        "{}: not a plugin: expected an abi_stable root module, found a library without one",
        path.display()
    )]
    NotAPlugin {
        /// The file.
        path: PathBuf,
    },
    /// The library was built with an abi_stable release whose ABI differs.
    #[error("{}: built with an incompatible abi_stable: {detail}", path.display())]
    AbiStable {
        /// The file.
        path: PathBuf,
        /// What abi_stable reported.
        detail: String,
    },
    /// The plugin was built against an interface version the host does not
    /// accept.
    #[error(
        "{}: built against {interface} interface {found}, expected a version matching {expected}",
        path.display()
    )]
    IncompatibleInterface {
        /// The file.
        path: PathBuf,
        /// The interface's name.
        interface: &'static str,
        /// The versions the host accepts.
        expected: VersionReq,
        /// The version the plugin was built against.
        found: String,
    },
    /// The root module's layout differs from the one the host was built with:
    /// another interface, or a changed type.
    #[error(
        "{}: not a {interface} plugin of a compatible layout: {summary}",
        path.display()
    )]
    Layout {
        /// The file.
        path: PathBuf,
        /// The interface's name.
        interface: &'static str,
        /// The first differences abi_stable found (the full report is logged
        /// at debug level).
        summary: String,
    },
    /// A name or version in the root module is not acceptable.
    #[error("{}: invalid {field} {value:?}: {reason}", path.display())]
    InvalidMetadata {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// The plugin's own initialisation failed or panicked.
    #[error("{}: plugin failed to initialise: {message}", path.display())]
    Init {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Another file already provided a plugin of the same name.
    #[error(
        "{}: a plugin named '{name}' is already loaded from {}",
        path.display(),
        first.display()
    )]
    DuplicateName {
        /// The file that was rejected.
        path: PathBuf,
        /// The plugin name both files declare.
        name: String,
        /// The file loaded first.
        first: PathBuf,
    },
}

impl LoadError {
    /// The rejected file.
    pub fn path(&self) -> &Path {
        match self {
            Self::InvalidLibrary { path, .. }
            | Self::Open { path, .. }
            | Self::NotAPlugin { path }
            | Self::AbiStable { path, .. }
            | Self::IncompatibleInterface { path, .. }
            | Self::Layout { path, .. }
            | Self::InvalidMetadata { path, .. }
            | Self::Init { path, .. }
            | Self::DuplicateName { path, .. } => path,
        }
    }
}

/// A loaded plugin: its identity and its root module.
///
/// Calls go straight through the module's function pointers. The library
/// stays mapped for the rest of the process (libraries are never unloaded),
/// so the module is valid for as long as this value or any copy of it exists.
pub struct Plugin<I: PluginInterface> {
    name: &'static str,
    version: Version,
    interface_version: Version,
    path: PathBuf,
    module: I::Module,
}

impl<I: PluginInterface> Plugin<I> {
    /// The plugin's name, unique in its registry.
    pub fn name(&self) -> &str {
        self.name
    }

    /// The plugin's own version.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// The interface version the plugin was built against.
    pub fn interface_version(&self) -> &Version {
        &self.interface_version
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root module, for calls the typed wrappers do not cover.
    pub fn module(&self) -> I::Module {
        self.module
    }
}

impl<I: PluginInterface> fmt::Debug for Plugin<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("interface", &I::NAME)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("interface_version", &self.interface_version)
            .field("path", &self.path)
            .finish()
    }
}

/// The interface versions a host built with interface `version` accepts:
/// the same major (the same minor too, under 0.x), any later minor or patch.
///
/// A plugin of a later minor only adds fields the host never reads; one of an
/// earlier minor lacks fields the host reads through `Option`.
pub fn default_interface_req(version: &Version) -> VersionReq {
    let req = if version.major == 0 {
        format!(">=0.{}.0, <0.{}.0", version.minor, version.minor + 1)
    } else {
        format!(">={}.0.0, <{}.0.0", version.major, version.major + 1)
    };
    VersionReq::parse(&req).expect("a well-formed requirement")
}

/// Opens `path` and runs every check short of the plugin's own
/// initialisation; [`initialize`] finishes the job.
///
/// # Errors
///
/// A [`LoadError`] naming `path` and the first check that failed.
pub fn open<I: PluginInterface>(
    path: &Path,
    accepted: &VersionReq,
) -> Result<Plugin<I>, LoadError> {
    verify_library(path).map_err(|source| LoadError::InvalidLibrary {
        path: path.to_owned(),
        source,
    })?;
    // Never `RootModule::load_from_*`: those cache one module per type, so a
    // second plugin would come back as the first.
    let module = lib_header_from_path(path)
        .and_then(|header| header.init_root_module::<I::Module>())
        .map_err(|error| classify::<I>(path, accepted, error))?;
    let meta = I::metadata(module);
    let invalid = |field, value: &str, reason: String| LoadError::InvalidMetadata {
        path: path.to_owned(),
        field,
        value: value.to_owned(),
        reason,
    };
    check_name(meta.name).map_err(|reason| invalid("plugin name", meta.name, reason))?;
    let version = Version::parse(meta.version).map_err(|e| {
        invalid(
            "plugin version",
            meta.version,
            format!("expected semver: {e}"),
        )
    })?;
    let interface_version = Version::parse(meta.interface_version).map_err(|e| {
        invalid(
            "interface version",
            meta.interface_version,
            format!("expected semver: {e}"),
        )
    })?;
    if !accepted.matches(&interface_version) {
        return Err(LoadError::IncompatibleInterface {
            path: path.to_owned(),
            interface: I::NAME,
            expected: accepted.clone(),
            found: interface_version.to_string(),
        });
    }
    Ok(Plugin {
        name: meta.name,
        version,
        interface_version,
        path: path.to_owned(),
        module,
    })
}

/// Runs the plugin's initialisation ([`PluginInterface::initialize`]).
///
/// # Errors
///
/// [`LoadError::Init`] with the plugin's message.
pub fn initialize<I: PluginInterface>(plugin: &Plugin<I>) -> Result<(), LoadError> {
    I::initialize(plugin.module).map_err(|message| LoadError::Init {
        path: plugin.path.clone(),
        message,
    })
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("expected a non-empty name".to_owned());
    }
    if name.len() > 64 {
        return Err(format!("expected at most 64 bytes, found {}", name.len()));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("expected no whitespace or control characters".to_owned());
    }
    Ok(())
}

fn classify<I: PluginInterface>(
    path: &Path,
    accepted: &VersionReq,
    error: LibraryError,
) -> LoadError {
    let path = path.to_owned();
    match error {
        LibraryError::OpenError { err, .. } => LoadError::Open {
            path,
            message: err.to_string(),
        },
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin { path },
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => {
            LoadError::IncompatibleInterface {
                path,
                interface: I::NAME,
                expected: accepted.clone(),
                found: actual_version.to_string(),
            }
        }
        LibraryError::AbiInstability(report) => {
            let report = report.to_string();
            log::debug!("{}: full layout report:\n{report}", path.display());
            LoadError::Layout {
                path,
                interface: I::NAME,
                summary: summarize_layout_report(&report),
            }
        }
        LibraryError::RootModule { err, .. } => LoadError::Init {
            path,
            message: match err {
                RootModuleError::Returned(error) => error.to_string(),
                RootModuleError::Unwound => "the root module constructor panicked".to_owned(),
            },
        },
        other => LoadError::AbiStable {
            path,
            detail: one_line(&other.to_string()),
        },
    }
}

/// abi_stable's layout report runs to hundreds of lines. What differs is in
/// its `Error:` entries, each optionally followed by `Expected:` and `Found:`
/// headers with the value on the next line.
fn summarize_layout_report(report: &str) -> String {
    const SHOWN: usize = 2;
    let mut errors: Vec<String> = Vec::new();
    let mut lines = report
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    while let Some(line) = lines.next() {
        if let Some(error) = line.strip_prefix("Error:") {
            errors.push(error.trim().to_owned());
        } else if let Some(word) = match line {
            "Expected:" => Some(": expected"),
            "Found:" => Some(", found"),
            _ => None,
        } && let Some(last) = errors.last_mut()
            && let Some(value) = lines.next()
        {
            last.push_str(&format!("{word} {value}"));
        }
    }
    if errors.is_empty() {
        return one_line(report);
    }
    let mut summary = errors[..errors.len().min(SHOWN)].join("; ");
    if errors.len() > SHOWN {
        summary.push_str(&format!(" (and {} more)", errors.len() - SHOWN));
    }
    summary
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_accepts_its_own_major_only() {
        let req = default_interface_req(&Version::new(1, 1, 0));
        for ok in ["1.0.0", "1.1.0", "1.2.3"] {
            assert!(req.matches(&Version::parse(ok).unwrap()), "{ok}");
        }
        for bad in ["0.9.0", "2.0.0"] {
            assert!(!req.matches(&Version::parse(bad).unwrap()), "{bad}");
        }
        let req = default_interface_req(&Version::new(0, 3, 1));
        assert!(req.matches(&Version::new(0, 3, 0)));
        assert!(!req.matches(&Version::new(0, 4, 0)));
    }

    #[test]
    fn names_must_be_one_printable_word() {
        assert!(check_name("hello-2").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("two words").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn layout_reports_are_cut_to_their_error_lines() {
        let report = "\nlayout\n    Error:mismatched type\n    Expected:\n        GreeterMod\n    \
                      Found:\n        ShoutMod\n  noise\n Error: too many fields\nError: third\n";
        assert_eq!(
            summarize_layout_report(report),
            "mismatched type: expected GreeterMod, found ShoutMod; too many fields (and 1 more)"
        );
        assert_eq!(summarize_layout_report("a\n  b  c\n"), "a b c");
    }
}
