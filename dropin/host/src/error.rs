//! Error layer: why one file was rejected: [`LoadError`], the error every stage of the
//! pipeline reports a file with: the file, and a [`LoadErrorKind`] that says what was
//! wrong with it.

use std::{
    error::Error,
    fmt, io,
    path::{Path, PathBuf},
};

use semver::{Version, VersionReq};

use crate::{
    ended::ProbeFailure, inspect::verify::VerifyError, trust::lockfile::LockEntry,
    trust::permissions::PermissionError, trust::source::Refused,
};

/// Why one file was rejected: the file, and what was wrong with it.
///
/// Its message is the file, a colon, then the kind's message:
///
/// ```text
/// plugins/libold.so: built against greeter interface 1.2.0, another major version than ...
/// ```
#[derive(Debug)]
pub struct LoadError {
    path: PathBuf,
    // Boxed: errors travel in `Result`s on every path a file takes, and the
    // kinds that name both sides carry several strings.
    kind: Box<LoadErrorKind>,
}

impl LoadError {
    /// The error `kind` for the file at `path`.
    pub fn new(path: impl Into<PathBuf>, kind: LoadErrorKind) -> Self {
        Self {
            path: path.into(),
            kind: Box::new(kind),
        }
    }

    /// The rejected file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was wrong with it.
    pub fn kind(&self) -> &LoadErrorKind {
        &self.kind
    }

    /// The file at `path`, refused when it was opened.
    pub(crate) fn opening(path: &Path, refused: Refused) -> Self {
        Self::new(
            path,
            match refused {
                Refused::Unreadable(source) => LoadErrorKind::Unreadable { source },
                Refused::NotAFile(found) => LoadErrorKind::NotAFile { found },
                Refused::Insecure(source) => LoadErrorKind::InsecurePermissions { source },
                Refused::TooLarge { size, limit } => LoadErrorKind::TooLarge { size, limit },
            },
        )
    }
}

// The refusals a lock entry makes, here with the errors they are (the
// trust layer, below this one, holds the entry).
impl LockEntry {
    /// Whether the bytes of the file at `path`, whose SHA-256 in
    /// hexadecimal is `sha256`, are the ones this entry approves (compared
    /// without regard to case).
    ///
    /// # Errors
    ///
    /// [`LoadErrorKind::HashMismatch`] naming both hashes.
    pub fn check_hash(&self, path: &Path, sha256: &str) -> Result<(), LoadError> {
        if self.sha256.eq_ignore_ascii_case(sha256) {
            return Ok(());
        }
        Err(LoadErrorKind::HashMismatch {
            expected: self.sha256.clone(),
            actual: sha256.to_owned(),
        }
        .at(path.to_owned()))
    }

    /// Whether the plugin the file at `path` describes as `name` is the one
    /// this entry recorded: the one its reviewer saw.
    ///
    /// # Errors
    ///
    /// [`LoadErrorKind::LockedAs`] naming both names.
    pub fn check_name(&self, path: &Path, name: &str) -> Result<(), LoadError> {
        if self.name == name {
            return Ok(());
        }
        Err(LoadErrorKind::LockedAs {
            locked: self.name.clone(),
            described: name.to_owned(),
        }
        .at(path.to_owned()))
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.kind)
    }
}

impl Error for LoadError {
    /// The kind's own cause: the kind's message is already this error's.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.kind.source()
    }
}

impl LoadErrorKind {
    /// This kind of error for the file at `path`.
    pub fn at(self, path: impl Into<PathBuf>) -> LoadError {
        LoadError::new(path, self)
    }
}

/// What was wrong with a rejected file: see [`LoadError::kind`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// The file could not be read (a broken link, say).
    #[error("cannot read the file")]
    Unreadable {
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A folder, FIFO, device or socket named like a library.
    #[error("expected a regular library file, found {found}")]
    NotAFile {
        /// What it is instead (`"a folder"`, `"a FIFO"`, ...).
        found: &'static str,
    },
    /// Larger than the loader's limit: refused before it is copied.
    #[error("{size} bytes; expected at most {limit} (the loader's limit on a plugin file's size)")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The probe process that opened the file first died, exited or hung:
    /// opening it in the host would have done the same to the host.
    #[error("the probe process that opened it first {how}")]
    Probe {
        /// How the probe ended.
        how: ProbeFailure,
    },
    /// The process has mapped as many libraries as the loader allows.
    #[error(
        "not opened: this process has mapped {limit} libraries, the most the loader allows \
         (libraries are never unloaded)"
    )]
    TooMany {
        /// The limit.
        limit: usize,
    },
    /// The file kept changing while it was copied: someone is writing it.
    #[error(
        "changed while it was being copied; expected a file that stays the same while the host reads it"
    )]
    Changing,
    /// Someone other than the host's user could have written the file.
    #[error("not safe to load")]
    InsecurePermissions {
        /// Which permission is wrong.
        #[source]
        source: PermissionError,
    },
    /// The private copy could not be written: the snapshot folder is full,
    /// or the copy would pass the process's file-size limit.
    #[error("cannot copy it into the private snapshot folder in {}", root.display())]
    Snapshot {
        /// Where the folder was to be made.
        root: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A lock file is in force and does not list the file.
    #[error(
        "not listed in {}; expected only locked plugins",
        lockfile.display()
    )]
    NotLocked {
        /// The lock file.
        lockfile: PathBuf,
    },
    /// The file's bytes differ from those recorded in the lock file.
    #[error("SHA-256 mismatch: expected {expected} (from the lock file), found {actual}")]
    HashMismatch {
        /// The SHA-256 in the lock file.
        expected: String,
        /// The SHA-256 of the file.
        actual: String,
    },
    /// The file is not a library this host can map: see the source.
    #[error("not a loadable library")]
    InvalidLibrary {
        /// What is wrong with its headers.
        #[source]
        source: VerifyError,
    },
    /// The dynamic loader refused the file.
    #[error("the dynamic loader refused it: {message}")]
    Open {
        /// The dynamic loader's message.
        message: String,
    },
    /// The library exports no root module: it is not a dropin plugin.
    #[error(
        "not a plugin: expected the root module a dropin plugin exports, found a library \
         without one (a {interface} plugin exports it with `{export}!(YourType);`)"
    )]
    NotAPlugin {
        /// The host's interface.
        interface: &'static str,
        /// The export macro of the host's interface.
        export: &'static str,
    },
    /// The library exports no description, which every dropin plugin
    /// carries: a plain library, or a plugin built with a release of
    /// dropin from before descriptions.
    #[error(
        "not a plugin: expected the description a dropin plugin exports, found a library \
         without one (a {interface} plugin exports it with `{export}!(YourType);`; a plugin \
         built with an earlier dropin must be rebuilt)"
    )]
    NoDescription {
        /// The host's interface.
        interface: String,
        /// The export macro of the host's interface.
        export: String,
    },
    /// The library's description could not be read: see the source.
    #[error("its description cannot be read")]
    InvalidDescription {
        /// What is wrong with it.
        #[source]
        source: crate::inspect::description::DescriptionReadError,
    },
    /// The library's root module, once mapped, says something else than
    /// its description: a description that lies.
    #[error(
        "its description says {field} {described:?}, but its root module says {found:?}; \
         expected the same"
    )]
    Disagrees {
        /// What they disagree about (`plugin name`, `plugin version`,
        /// `interface version`).
        field: &'static str,
        /// What the description says.
        described: String,
        /// What the root module says.
        found: String,
    },
    /// The lock file approves the file's bytes under another name than the
    /// one its description gives.
    #[error(
        "the lock file recorded it as '{locked}', but its description names '{described}'; \
         expected the same (record the lock file again)"
    )]
    LockedAs {
        /// The name in the lock file.
        locked: String,
        /// The name in the description.
        described: String,
    },
    /// The library was built with an abi_stable release whose ABI differs.
    #[error("built with an incompatible abi_stable: {detail}")]
    AbiStable {
        /// What abi_stable reported.
        detail: String,
    },
    /// The plugin was built against an interface version the host does not
    /// accept.
    #[error(
        "built against {interface} interface {found}, but this host has {host} and accepts {expected}"
    )]
    IncompatibleInterface {
        /// The interface's name.
        interface: String,
        /// The versions the host accepts.
        expected: VersionReq,
        /// The interface version the host was built with.
        host: String,
        /// The version the plugin was built against.
        found: String,
    },
    /// The plugin was built against another major version of the interface
    /// (for a 0.x interface, another minor): such a version may change what
    /// methods mean without changing their types, so it never loads,
    /// whatever versions the host was told to accept.
    #[error(
        "built against {interface} interface {found}, another major version than this host's \
         {host}; expected {interface} {series}: rebuild the plugin against it"
    )]
    AnotherMajor {
        /// The interface's name.
        interface: String,
        /// The interface version the host was built with.
        host: String,
        /// The versions that may load, such as `2.x` or `0.3.x`.
        series: String,
        /// The version the plugin was built against.
        found: String,
    },
    /// The library exports an abi_stable root module that is not dropin's:
    /// a plugin built without dropin, or against a release of the interface
    /// from before it moved to dropin.
    #[error(
        "expected a dropin plugin of {interface} {host}, found the root module '{found}' {found_version}; \
         if it was built against an earlier release of {interface}, rebuild it against {interface} {host_major}.x"
    )]
    Foreign {
        /// The interface's name.
        interface: &'static str,
        /// The interface version the host was built with.
        host: &'static str,
        /// The host interface's major version.
        host_major: u64,
        /// The name of the root module the library exports.
        found: String,
        /// The version recorded with it.
        found_version: String,
    },
    /// The plugin was built with another release of dropin, whose ABI may
    /// differ.
    #[error(
        "built with dropin {found}, but this host has dropin {host}; expected the same major and minor version"
    )]
    DropinVersion {
        /// The dropin version the plugin was built with.
        found: String,
        /// The dropin version the host was built with.
        host: &'static str,
    },
    /// The root module's layout differs from the one this host's dropin
    /// expects: built with an incompatible release of dropin.
    #[error(
        "not a dropin root module of a compatible layout (built with dropin {found}, the host has {host}): {summary}"
    )]
    Layout {
        /// The dropin version the host was built with.
        host: &'static str,
        /// The dropin version the library declares.
        found: String,
        /// The first differences abi_stable found (the full report is logged
        /// at debug level).
        summary: String,
    },
    /// The plugin implements another interface.
    #[error(
        "not a {expected} plugin: expected interface {expected}, found {found} {found_version}"
    )]
    WrongInterface {
        /// The host's interface.
        expected: String,
        /// The plugin's interface.
        found: String,
        /// The plugin's interface version.
        found_version: String,
    },
    /// A method's signature differs from the host's: the interface changed
    /// without a new major version, or the plugin lacks a method its
    /// interface version has.
    #[error(
        "not compatible with {interface} {host} (the plugin was built against {found}): {detail}"
    )]
    Signature {
        /// The interface's name.
        interface: String,
        /// The interface version the host was built with.
        host: String,
        /// The interface version the plugin was built against.
        found: String,
        /// The first difference.
        detail: String,
    },
    /// The plugin was built with `panic = "abort"`.
    #[error(
        "plugin '{name}' was built with panic = \"abort\", so its first panic would kill the host; \
         expected panic = \"unwind\" (the default), or a host that allows abort"
    )]
    PanicAbort {
        /// The plugin's name.
        name: String,
    },
    /// The library carries no root-module layout, so its ABI cannot be
    /// checked.
    #[error("expected a root module layout to check, found a library exported without one")]
    NoLayout,
    /// The plugin does not support this host's version.
    #[error("plugin '{name}' requires a host matching {required}, but this host is {host}")]
    UnsupportedHost {
        /// The plugin's name.
        name: String,
        /// The host versions the plugin supports.
        required: VersionReq,
        /// This host's version.
        host: Version,
    },
    /// A name or version in the root module is not acceptable.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidMetadata {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// The plugin's own initialisation failed or panicked.
    #[error("plugin failed to initialise: {message}")]
    Init {
        /// Why.
        message: String,
    },
    /// The probe process that opened the file survived it and found, for a
    /// reason no other kind names, that it is not a plugin this host can
    /// load (recording a lock file, or a plugin that was to run isolated,
    /// where the host does not open the file itself). What the probe found
    /// that another kind names (a failing root module, a layout of another
    /// dropin) is reported as that kind, as in-process.
    #[error("{reason} (found by the probe process that opened it)")]
    ProbeRefused {
        /// What the probe found.
        reason: String,
    },
    /// The plugin was to run isolated, and its process did not start, could
    /// not be spoken to, or did not load its plugin for a reason no other
    /// kind names (what another kind names, such as a failing `init`, is
    /// reported as that kind, as in-process).
    #[error("not loaded in its own process: {reason}")]
    Isolated {
        /// Why.
        reason: String,
    },
    /// Another file already provided a plugin of the same name.
    #[error(
        "a plugin named '{name}' is already loaded from {}",
        first.display()
    )]
    DuplicateName {
        /// The plugin name both files declare.
        name: String,
        /// The file loaded first.
        first: PathBuf,
    },
    /// A reload found a plugin of another name in the file of the plugin it
    /// replaces.
    #[error(
        "a plugin named '{found}'; expected '{expected}', the plugin it would replace (a \
         reload keeps the name)"
    )]
    Renamed {
        /// The name of the plugin being reloaded.
        expected: String,
        /// The name the new build declares.
        found: String,
    },
    /// A reload would keep one more earlier generation of the plugin mapped
    /// than the loader allows.
    #[error(
        "not reloaded: '{name}' already keeps {limit} earlier generations mapped, the most \
         the loader allows (libraries are never unloaded; restart the application to free them)"
    )]
    Retained {
        /// The plugin.
        name: String,
        /// The limit on earlier generations.
        limit: usize,
    },
}
