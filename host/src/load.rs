//! Stage 3: open one file, check it, and turn it into a [`Plugin`].
//!
//! The order of the checks is the product: nothing of the plugin's code runs
//! until the file's headers were verified ([`crate::verify`]), and its
//! initialisation runs only after abi_stable's version and layout checks and
//! the host's own version policy have passed.

use std::{
    fmt, io,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use abi_stable::{
    StableAbi,
    abi_stability::abi_checking::check_layout_compatibility,
    library::{LibHeader, LibraryError, RootModule, RootModuleError, lib_header_from_path},
};
use semver::{Version, VersionReq};

use crate::{
    permissions::PermissionError,
    snapshot::{hex, sha256_of},
    verify::{VerifyError, verify_library},
};

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
    /// The host versions the plugin supports (a semver requirement); `None`
    /// or empty for any host.
    pub host_requirement: Option<&'static str>,
}

/// Why one file was rejected. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read (a broken link, say).
    #[error("{}: cannot read the file", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A folder named like a library.
    #[error("{}: expected a library file, found a folder", path.display())]
    NotAFile {
        /// The folder.
        path: PathBuf,
    },
    /// Someone other than the host's user could have written the file.
    #[error("{}: not safe to load", path.display())]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Which permission is wrong.
        #[source]
        source: PermissionError,
    },
    /// The private copy could not be made.
    #[error("{}: cannot create the private snapshot folder", path.display())]
    Snapshot {
        /// The file that was being loaded.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A lock file is in force and does not list the file.
    #[error(
        "{}: not listed in {}; expected only locked plugins (record it with `greeter-host lock`)",
        path.display(),
        lockfile.display()
    )]
    NotLocked {
        /// The file.
        path: PathBuf,
        /// The lock file.
        lockfile: PathBuf,
    },
    /// The file's bytes differ from those recorded in the lock file.
    #[error(
        "{}: SHA-256 mismatch: expected {expected} (from the lock file), found {actual}",
        path.display()
    )]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// The SHA-256 in the lock file.
        expected: String,
        /// The SHA-256 of the file.
        actual: String,
    },
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
        "{}: built against {interface} interface {found}, but this host has {host} and accepts {expected}",
        path.display()
    )]
    IncompatibleInterface {
        /// The file.
        path: PathBuf,
        /// The interface's name.
        interface: &'static str,
        /// The versions the host accepts.
        expected: VersionReq,
        /// The interface version the host was built with.
        host: &'static str,
        /// The version the plugin was built against.
        found: String,
    },
    /// The root module's layout differs from the one the host was built with:
    /// another interface, or a changed type.
    #[error(
        "{}: not a {interface} plugin of a compatible layout (its interface version {found}, the host's {host}): {summary}",
        path.display()
    )]
    Layout {
        /// The file.
        path: PathBuf,
        /// The interface's name.
        interface: &'static str,
        /// The interface version the host was built with.
        host: &'static str,
        /// The interface version the library declares.
        found: String,
        /// The first differences abi_stable found (the full report is logged
        /// at debug level).
        summary: String,
    },
    /// The library carries no root-module layout, so its ABI cannot be
    /// checked.
    #[error(
        "{}: expected a root module layout to check, found a library exported without one",
        path.display()
    )]
    NoLayout {
        /// The file.
        path: PathBuf,
    },
    /// The plugin does not support this host's version.
    #[error(
        "{}: plugin '{name}' requires a host matching {required}, but this host is {host}",
        path.display()
    )]
    UnsupportedHost {
        /// The file.
        path: PathBuf,
        /// The plugin's name.
        name: String,
        /// The host versions the plugin supports.
        required: VersionReq,
        /// This host's version.
        host: Version,
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
            Self::Unreadable { path, .. }
            | Self::NotAFile { path }
            | Self::InsecurePermissions { path, .. }
            | Self::Snapshot { path, .. }
            | Self::NotLocked { path, .. }
            | Self::HashMismatch { path, .. }
            | Self::InvalidLibrary { path, .. }
            | Self::Open { path, .. }
            | Self::NotAPlugin { path }
            | Self::AbiStable { path, .. }
            | Self::IncompatibleInterface { path, .. }
            | Self::Layout { path, .. }
            | Self::NoLayout { path }
            | Self::UnsupportedHost { path, .. }
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
    host_requirement: Option<VersionReq>,
    path: PathBuf,
    loaded_from: PathBuf,
    sha256: OnceLock<[u8; 32]>,
    module: I::Module,
    failure: OnceLock<String>,
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

    /// The host versions the plugin supports; `None` for any.
    pub fn host_requirement(&self) -> Option<&VersionReq> {
        self.host_requirement.as_ref()
    }

    /// The file it was found as, in the plugins folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The private copy the dynamic loader opened (see [`Loader`](crate::Loader)).
    /// It is removed with the registry; the library stays mapped.
    pub fn loaded_from(&self) -> &Path {
        &self.loaded_from
    }

    /// The SHA-256 of the bytes that were loaded, lowercase hexadecimal.
    ///
    /// Computed while the file was copied when a lock file was in force, else
    /// now, from the private copy the dynamic loader opened (nobody else can
    /// write it), and remembered.
    ///
    /// # Errors
    ///
    /// The private copy cannot be read.
    pub fn sha256(&self) -> io::Result<String> {
        if let Some(digest) = self.sha256.get() {
            return Ok(hex(digest));
        }
        let digest = sha256_of(&self.loaded_from)?;
        Ok(hex(self.sha256.get_or_init(|| digest)))
    }

    /// Why the plugin is disabled: it panicked earlier in this process.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Disables the plugin for the rest of the process: after a panic its
    /// state may be broken, so it is not called again. The first reason
    /// sticks.
    pub fn disable(&self, reason: impl Into<String>) {
        let _ = self.failure.set(reason.into());
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
            .field("host_requirement", &self.host_requirement)
            .field("path", &self.path)
            .field("sha256", &self.sha256.get().map(hex))
            .field("failure", &self.failure())
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

/// What a host accepts, beyond what abi_stable checks.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// The interface versions accepted.
    pub(crate) accepted: VersionReq,
    /// The host's own version, matched against a plugin's host requirement.
    pub(crate) host_version: Version,
}

/// Verifies and opens `copy`, the private snapshot of `path` (whose bytes hash
/// to `sha256`, if known), and runs every check short of the plugin's own
/// initialisation; [`initialize`] finishes the job.
///
/// # Errors
///
/// A [`LoadError`] naming `path` and the first check that failed.
pub(crate) fn open<I: PluginInterface>(
    path: &Path,
    copy: &Path,
    sha256: Option<[u8; 32]>,
    policy: &Policy,
) -> Result<Plugin<I>, LoadError> {
    verify_library(copy).map_err(|source| LoadError::InvalidLibrary {
        path: path.to_owned(),
        source,
    })?;
    // Never `RootModule::load_from_*`: those cache one module per type, so a
    // second plugin would come back as the first.
    let header = lib_header_from_path(copy)
        .map_err(|error| classify::<I>(path, copy, policy, None, error))?;
    if header.layout().is_none() {
        // abi_stable would skip its layout check for such a library.
        return Err(LoadError::NoLayout {
            path: path.to_owned(),
        });
    }
    let module = init_root_module::<I>(header)
        .map_err(|error| classify::<I>(path, copy, policy, Some(header), error))?;
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
    if !policy.accepted.matches(&interface_version) {
        return Err(LoadError::IncompatibleInterface {
            path: path.to_owned(),
            interface: I::NAME,
            expected: policy.accepted.clone(),
            host: I::VERSION,
            found: interface_version.to_string(),
        });
    }
    let host_requirement = match meta.host_requirement.filter(|req| !req.trim().is_empty()) {
        None => None,
        Some(requirement) => Some(VersionReq::parse(requirement).map_err(|e| {
            invalid(
                "host requirement",
                requirement,
                format!("expected a semver requirement: {e}"),
            )
        })?),
    };
    if let Some(required) = &host_requirement
        && !required.matches(&policy.host_version)
    {
        return Err(LoadError::UnsupportedHost {
            path: path.to_owned(),
            name: meta.name.to_owned(),
            required: required.clone(),
            host: policy.host_version.clone(),
        });
    }
    Ok(Plugin {
        name: meta.name,
        version,
        interface_version,
        host_requirement,
        path: path.to_owned(),
        loaded_from: copy.to_owned(),
        sha256: sha256.map_or_else(OnceLock::new, OnceLock::from),
        module,
        failure: OnceLock::new(),
    })
}

/// abi_stable's checks, plus the one case where it is stricter than its own
/// rules: a plugin built against an earlier minor version of the interface.
fn init_root_module<I: PluginInterface>(
    header: &'static LibHeader,
) -> Result<I::Module, LibraryError> {
    match header.init_root_module::<I::Module>() {
        // abi_stable refuses a root module with fewer fields than the host's
        // ("too many fields"), although appending fields is how a prefix type
        // evolves. Checked with the roles swapped (the plugin's layout as the
        // interface, the host's as the implementation), such a plugin passes,
        // and only such a plugin: every field it has, the host has at the same
        // place with the same type, recursively; the host only adds fields
        // after them. Any other difference fails this check too.
        Err(LibraryError::AbiInstability(_))
            if header.layout().is_some_and(|plugin| {
                check_layout_compatibility(plugin, <I::Module as StableAbi>::LAYOUT).is_ok()
            }) =>
        {
            log::debug!(
                "root module built against {} {} is a prefix of the host's {}",
                I::NAME,
                header.version_strings().version,
                I::VERSION
            );
            // SAFETY: the check above proved the plugin's root module a prefix
            // of `I::Module`: the fields it has are, in order, those of
            // `I::Module` with identical layouts. The host reaches a root
            // module only through the accessors abi_stable generates for prefix
            // types. Those of prefix fields (which every plugin of this major
            // has, or abi_stable's own check would have refused the layout
            // with a missing prefix field) read fields the plugin provides;
            // those of later fields consult the field count stored in the
            // plugin's own module metadata and return `None` for every field
            // the plugin lacks, so no read goes past the plugin's module.
            // The version check still runs inside.
            unsafe { header.init_root_module_with_unchecked_layout::<I::Module>() }
        }
        result => result,
    }
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
    copy: &Path,
    policy: &Policy,
    header: Option<&LibHeader>,
    error: LibraryError,
) -> LoadError {
    let path = path.to_owned();
    let found = || {
        header.map_or_else(
            || "an unknown version".to_owned(),
            |header| header.version_strings().version.to_string(),
        )
    };
    match error {
        LibraryError::OpenError { err, .. } => LoadError::Open {
            // The loader's message names the private copy; users know the
            // original.
            message: err
                .to_string()
                .replace(&*copy.to_string_lossy(), &path.to_string_lossy()),
            path,
        },
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin { path },
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => {
            LoadError::IncompatibleInterface {
                path,
                interface: I::NAME,
                expected: policy.accepted.clone(),
                host: I::VERSION,
                found: actual_version.to_string(),
            }
        }
        LibraryError::AbiInstability(report) => {
            let report = report.to_string();
            log::debug!("{}: full layout report:\n{report}", path.display());
            LoadError::Layout {
                path,
                interface: I::NAME,
                host: I::VERSION,
                found: found(),
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
/// headers with the value on the next lines. A changed field type shows up as
/// an entry naming the field (`field_name:version`), then a "mismatched type"
/// entry naming the types: they are merged into one, listed first.
fn summarize_layout_report(report: &str) -> String {
    const SHOWN: usize = 2;
    #[derive(Default)]
    struct Entry<'a> {
        error: &'a str,
        expected: Option<&'a str>,
        found: Option<&'a str>,
    }
    let mut entries: Vec<Entry<'_>> = Vec::new();
    let mut lines = report
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    while let Some(line) = lines.next() {
        if let Some(error) = line.strip_prefix("Error:") {
            entries.push(Entry {
                error: error.trim(),
                ..Entry::default()
            });
        } else if let Some(entry) = entries.last_mut() {
            match line {
                "Expected:" => entry.expected = lines.next(),
                "Found:" => entry.found = lines.next(),
                _ => {}
            }
        }
    }
    let mut field = None;
    let mut first = Vec::new();
    let mut rest = Vec::new();
    for entry in &entries {
        if let Some(name) = entry
            .expected
            .and_then(|value| value.strip_prefix("field_name:"))
        {
            field = Some(name);
            if entry.error == "field references different lifetimes" {
                continue;
            }
        }
        let mut text = entry.error.to_owned();
        if let Some(expected) = entry.expected {
            text.push_str(&format!(": expected {expected}"));
        }
        if let Some(found) = entry.found {
            text.push_str(&format!(", found {found}"));
        }
        match (entry.error, field) {
            ("mismatched type", Some(name)) => first.push(format!("field `{name}`: {text}")),
            _ => rest.push(text),
        }
    }
    first.append(&mut rest);
    if first.is_empty() {
        return one_line(report);
    }
    let mut summary = first[..first.len().min(SHOWN)].join("; ");
    if first.len() > SHOWN {
        summary.push_str(&format!(" (and {} more)", first.len() - SHOWN));
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
        let report = "Error:incompatible type size\nExpected:\n 64\nFound:\n 56\n\
                      Error:field references different lifetimes\nExpected:\n field_name:version\n \
                      type:RStr<'a>\nFound:\n field_name:version\n type:u64\n\
                      Error:mismatched type\nExpected:\n RStr<'a>\nFound:\n u64\n";
        assert_eq!(
            summarize_layout_report(report),
            "field `version`: mismatched type: expected RStr<'a>, found u64; \
             incompatible type size: expected 64, found 56"
        );
        assert_eq!(summarize_layout_report("a\n  b  c\n"), "a b c");
    }
}
