//! Load layer, steps 7 and 8 of a file's way (ARCHITECTURE.md): map one
//! checked copy, check it, and turn it into a [`Plugin`].
//!
//! The order of the checks is the product: nothing of the plugin's code runs
//! until the file's headers were verified ([`crate::inspect::verify`]), and its
//! initialisation runs only after abi_stable's checks of dropin's root module,
//! the comparison of every method's signature with the host's, and the host's
//! own version policy have passed.

use std::{
    fmt, io,
    ops::Deref,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use abi_stable::library::{
    LibHeader, LibraryError, RawLibrary, RootModuleError, lib_header_from_raw_library,
};
use dropin::{
    __private::{Extensions, MethodEntry, ModuleRef, lossy},
    Interface, PluginCore,
};
use semver::{Version, VersionReq};

use crate::{
    digest::{hex, sha256_of},
    error::LoadError,
    inspect::verify::{VerifyError, verify_library},
};

/// State a plugin's earlier generation saved for the next: the format's
/// version and the bytes.
pub(crate) type Saved = (u32, Vec<u8>);

/// A loaded plugin: its identity, where it came from, and its typed handle,
/// which it dereferences to: `plugin.greet()` calls into the plugin.
///
/// The library stays mapped for the rest of the process (libraries are never
/// unloaded), so the handle is valid for as long as this value exists.
pub struct Plugin<I: Interface> {
    name: &'static str,
    version: Version,
    interface_version: Version,
    host_requirement: Option<VersionReq>,
    path: PathBuf,
    loaded_from: PathBuf,
    sha256: OnceLock<[u8; 32]>,
    /// The root module, for a plugin whose library this process mapped;
    /// `None` for an isolated one.
    pub(crate) module: Option<ModuleRef>,
    /// What the plugin offers for reloads, if it was built with it and its
    /// library is mapped here.
    pub(crate) extensions: Option<&'static Extensions>,
    /// Its number among the generations of its name: 1 for the first load,
    /// one more for each reload.
    pub(crate) generation: u32,
    /// The file as it was when its bytes were copied, to tell a change.
    pub(crate) stamp: Option<crate::trust::source::Stamp>,
    /// Whether its `init` received an earlier generation's state.
    pub(crate) took_state: bool,
    handle: I,
}

impl<I: Interface> Plugin<I> {
    /// A plugin from its parts.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        name: &'static str,
        version: Version,
        interface_version: Version,
        host_requirement: Option<VersionReq>,
        path: PathBuf,
        loaded_from: PathBuf,
        sha256: Option<[u8; 32]>,
        module: Option<ModuleRef>,
        handle: I,
    ) -> Self {
        Self {
            name,
            version,
            interface_version,
            host_requirement,
            path,
            loaded_from,
            sha256: sha256.map_or_else(OnceLock::new, OnceLock::from),
            module,
            extensions: None,
            generation: 1,
            stamp: None,
            took_state: false,
            handle,
        }
    }

    /// Its number among the generations of its name in the registry: 1 as
    /// first loaded, one more for each reload.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Whether the plugin runs in a process of its own.
    pub fn is_isolated(&self) -> bool {
        self.module.is_none()
    }

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
    /// It is removed with the registry; the library stays mapped. With a
    /// snapshot cache, it may be a copy an earlier run kept there, which
    /// stays.
    pub fn loaded_from(&self) -> &Path {
        &self.loaded_from
    }

    /// The SHA-256 of the bytes that were loaded, lowercase hexadecimal.
    ///
    /// Computed while the file was copied when a lock file was in force, else
    /// now, from the private copy the dynamic loader opened (nobody else can
    /// write it), and remembered. For a copy a snapshot cache kept, the hash
    /// it was kept under: the one measured when it was made, which the lock
    /// entry names.
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
        self.core().failure()
    }

    /// Disables the plugin for the rest of the process. The first reason
    /// sticks.
    pub fn disable(&self, reason: impl Into<String>) {
        self.core().disable(reason);
    }

    /// The typed handle.
    pub fn handle(&self) -> &I {
        &self.handle
    }

    /// The plugin's name, methods and failure state, whatever its interface.
    pub fn core(&self) -> &PluginCore {
        self.handle.core()
    }

    /// The methods added after the interface's first release that the plugin
    /// has, as `(name, since)` (a plugin built against an earlier minor
    /// version lacks the later ones).
    pub fn capabilities(&self) -> Vec<(&'static str, &'static str)> {
        self.core().capabilities(true)
    }

    /// The methods added after the interface's first release that the plugin
    /// lacks, as `(name, since)`.
    pub fn missing_capabilities(&self) -> Vec<(&'static str, &'static str)> {
        self.core().capabilities(false)
    }
}

impl<I: Interface> Deref for Plugin<I> {
    type Target = I;

    fn deref(&self) -> &I {
        &self.handle
    }
}

impl<I: Interface> fmt::Debug for Plugin<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("interface", &I::NAME)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("interface_version", &self.interface_version)
            .field("host_requirement", &self.host_requirement)
            .field("path", &self.path)
            .field("sha256", &self.sha256.get().map(|digest| hex(digest)))
            .field("generation", &self.generation)
            .field("failure", &self.failure())
            .finish()
    }
}

/// The interface versions a host built with interface `version` accepts:
/// the same major (the same minor too, under 0.x), any later minor or patch.
///
/// A plugin of a later minor has methods the host never calls; one of an
/// earlier minor lacks methods, which its handle reports as missing.
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
    /// Whether a plugin built with `panic = "abort"` may load.
    pub(crate) allow_panic_abort: bool,
    /// Whether a library asking for an executable stack may load.
    pub(crate) allow_executable_stack: bool,
}

/// Opens `copy`, the private snapshot of `path` (whose bytes hash to
/// `sha256`, if known), once its headers pass [`verify`] (`headers`, if the
/// check was made ahead), and runs every check short of the plugin's own
/// initialisation; [`initialize`] finishes the job. `layout_proven`: this host build proved the root
/// module's layout of these very bytes before (a kept copy of the snapshot
/// cache), so abi_stable's layout check is not run again.
///
/// # Errors
///
/// A [`LoadError`] naming `path` and the first check that failed.
pub(crate) fn open<I: Interface>(
    path: &Path,
    copy: &Path,
    sha256: Option<[u8; 32]>,
    policy: &Policy,
    headers: Option<Result<(), LoadError>>,
    layout_proven: bool,
) -> Result<Plugin<I>, LoadError> {
    headers.unwrap_or_else(|| verify(path, copy, policy))?;
    // Never `RootModule::load_from_*`: those cache one module per type, so a
    // second plugin would come back as the first.
    let refused = |error| classify(path, copy, None, error, (I::NAME, I::EXPORT_MACRO));
    // One handle for the root module and the extensions: each `dlopen`
    // compares the path with every library already loaded.
    let library = RawLibrary::load_at(copy).map_err(refused)?;
    // SAFETY: the library is never unloaded (the handle is forgotten below,
    // whatever happens), so the header's references stay valid.
    let header = unsafe { lib_header_from_raw_library(&library) };
    let extensions = extensions(&library);
    std::mem::forget(library);
    let header = header.map_err(refused)?;
    let consts = header.root_mod_consts();
    check_root::<I>(
        path,
        consts.name().as_rslice().as_slice(),
        consts.version_strings().version.as_rslice().as_slice(),
        header.layout().is_some(),
    )?;
    let module = if layout_proven {
        // SAFETY: this build's layout check passed on these bytes before
        // (the argument is in the snapshot cache's documentation); the
        // version check still runs.
        unsafe { header.init_root_module_with_unchecked_layout::<ModuleRef>() }
    } else {
        header.init_root_module::<ModuleRef>()
    }
    .map_err(|error| classify(path, copy, Some(header), error, (I::NAME, I::EXPORT_MACRO)))?;
    let facts = Facts {
        plugin_name: module.plugin_name().as_rslice().as_slice(),
        plugin_version: module.plugin_version().as_rslice().as_slice(),
        interface_name: module.interface_name().as_rslice().as_slice(),
        interface_version: module.interface_version().as_rslice().as_slice(),
        host_requirement: module.host_requirement().as_rslice().as_slice(),
        panic_abort: module.build().panic_abort,
    };
    let Checked {
        name,
        version,
        interface_version,
        declared_interface,
        host_requirement,
    } = check_facts::<I>(path, &facts, policy)?;
    let methods = dropin::__private::items(module.methods());
    check_methods::<I>(methods, &interface_version).map_err(|detail| LoadError::Signature {
        path: path.to_owned(),
        interface: I::NAME,
        host: I::VERSION,
        found: interface_version.to_string(),
        detail,
    })?;
    let provided = methods.len().min(I::METHODS.len());
    let core = PluginCore::new(name, declared_interface, I::METHODS, I::REQUIRED, provided);
    // SAFETY: `check_methods` compared every entry the handle binds (the
    // first `I::METHODS.len()` at most) with the descriptor at the same
    // index of `I::METHODS`; the library is never unloaded.
    let handle = unsafe { I::bind(core, methods) };
    let mut plugin = Plugin::from_parts(
        name,
        version,
        interface_version,
        host_requirement,
        path.to_owned(),
        copy.to_owned(),
        sha256,
        Some(module),
        handle,
    );
    // SAFETY: a symbol of this name is the export macro's `Extensions`
    // static (the name carries the layout's version), in a library whose
    // root module passed every check and which is never unloaded.
    plugin.extensions = extensions.map(|pointer| unsafe { &*pointer });
    Ok(plugin)
}

/// Where `library` has the [`Extensions`] it exports, if it does: read
/// only once the root module passed every check.
fn extensions(library: &RawLibrary) -> Option<*const Extensions> {
    // SAFETY: only the symbol's address is taken.
    let symbol = unsafe { library.get::<*const Extensions>(dropin::__private::EXTENSIONS_SYMBOL) };
    symbol
        .ok()
        .map(|symbol| *symbol)
        .filter(|pointer| pointer.is_aligned() && !pointer.is_null())
}

/// Checks the object headers of `copy`, the private snapshot of `path`.
///
/// # Errors
///
/// [`LoadError::InvalidLibrary`] with what is wrong; an executable stack
/// only if the policy does not allow it.
pub(crate) fn verify(path: &Path, copy: &Path, policy: &Policy) -> Result<(), LoadError> {
    judge_headers(path, verify_library(copy), policy)
}

/// What [`verify_library`] `found` in the private snapshot of `path` means
/// under `policy`.
pub(crate) fn judge_headers(
    path: &Path,
    found: Result<(), VerifyError>,
    policy: &Policy,
) -> Result<(), LoadError> {
    match found {
        Ok(()) => Ok(()),
        Err(VerifyError::ExecutableStack) if policy.allow_executable_stack => Ok(()),
        Err(source) => Err(LoadError::InvalidLibrary {
            path: path.to_owned(),
            source,
        }),
    }
}

/// What a dropin root module says about a plugin, as bytes: read by the
/// host from a module it opened, or reported by a probe process that opened
/// the library (a corrupted library could hold any bytes in either case).
pub(crate) struct Facts<'a> {
    pub(crate) plugin_name: &'a [u8],
    pub(crate) plugin_version: &'a [u8],
    pub(crate) interface_name: &'a [u8],
    pub(crate) interface_version: &'a [u8],
    pub(crate) host_requirement: &'a [u8],
    pub(crate) panic_abort: bool,
}

/// [`Facts`] that passed the host's policy.
pub(crate) struct Checked<'a> {
    pub(crate) name: &'a str,
    pub(crate) version: Version,
    pub(crate) interface_version: Version,
    pub(crate) declared_interface: &'a str,
    pub(crate) host_requirement: Option<VersionReq>,
}

/// Whether an abi_stable root module named `name`, of `version`, with or
/// without a layout, can be a dropin plugin for this host.
///
/// # Errors
///
/// [`LoadError::Foreign`], [`LoadError::DropinVersion`] or
/// [`LoadError::NoLayout`].
pub(crate) fn check_root<I: Interface>(
    path: &Path,
    name: &[u8],
    version: &[u8],
    has_layout: bool,
) -> Result<(), LoadError> {
    let found = String::from_utf8_lossy(version).into_owned();
    if name != b"dropin" {
        let host = Version::parse(I::VERSION).map_or(0, |version| version.major);
        return Err(LoadError::Foreign {
            path: path.to_owned(),
            interface: I::NAME,
            host: I::VERSION,
            host_major: host,
            found: String::from_utf8_lossy(name).into_owned(),
            found_version: found,
        });
    }
    // abi_stable refuses an older dropin minor but not a newer one; the
    // method table and `init` are opaque to its layout check, so only the
    // same major and minor may load.
    if !same_minor(&found, dropin::__private::DROPIN_VERSION) {
        return Err(LoadError::DropinVersion {
            path: path.to_owned(),
            found,
            host: dropin::__private::DROPIN_VERSION,
        });
    }
    if !has_layout {
        // abi_stable would skip its layout check for such a library.
        return Err(LoadError::NoLayout {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Checks what a plugin says about itself against the host's policy: a
/// valid name, this host's interface, versions it accepts, a host
/// requirement this host meets, and how it was built. The method signatures
/// are checked apart, where the method table is at hand.
///
/// # Errors
///
/// The [`LoadError`] of the first check that fails.
pub(crate) fn check_facts<'a, I: Interface>(
    path: &Path,
    facts: &Facts<'a>,
    policy: &Policy,
) -> Result<Checked<'a>, LoadError> {
    let invalid = |field, value: &str, reason: String| LoadError::InvalidMetadata {
        path: path.to_owned(),
        field,
        value: value.to_owned(),
        reason,
    };
    // The plugin's strings are checked to be UTF-8 before any is used as a
    // `str`.
    let text = |field, value: &'a [u8]| {
        std::str::from_utf8(value).map_err(|e| {
            invalid(
                field,
                &String::from_utf8_lossy(value),
                format!("expected UTF-8: {e}"),
            )
        })
    };
    let name = text("plugin name", facts.plugin_name)?;
    check_name(name).map_err(|reason| invalid("plugin name", name, reason))?;
    let interface_name = text("interface name", facts.interface_name)?;
    let declared_interface = text("interface version", facts.interface_version)?;
    if interface_name != I::NAME {
        return Err(LoadError::WrongInterface {
            path: path.to_owned(),
            expected: I::NAME,
            found: interface_name.to_owned(),
            found_version: declared_interface.to_owned(),
        });
    }
    let version = text("plugin version", facts.plugin_version)?;
    let version = Version::parse(version)
        .map_err(|e| invalid("plugin version", version, format!("expected semver: {e}")))?;
    let interface_version = Version::parse(declared_interface).map_err(|e| {
        invalid(
            "interface version",
            declared_interface,
            format!("expected semver: {e}"),
        )
    })?;
    if let Ok(host) = Version::parse(I::VERSION)
        && !same_series(&host, &interface_version)
    {
        return Err(LoadError::AnotherMajor {
            path: path.to_owned(),
            interface: I::NAME,
            host: I::VERSION,
            series: if host.major == 0 {
                format!("0.{}.x", host.minor)
            } else {
                format!("{}.x", host.major)
            },
            found: interface_version.to_string(),
        });
    }
    if !policy.accepted.matches(&interface_version) {
        return Err(LoadError::IncompatibleInterface {
            path: path.to_owned(),
            interface: I::NAME,
            expected: policy.accepted.clone(),
            host: I::VERSION,
            found: interface_version.to_string(),
        });
    }
    let requirement = text("host requirement", facts.host_requirement)?;
    let host_requirement = match requirement.trim() {
        "" => None,
        requirement => Some(VersionReq::parse(requirement).map_err(|e| {
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
            name: name.to_owned(),
            required: required.clone(),
            host: policy.host_version.clone(),
        });
    }
    if facts.panic_abort && !policy.allow_panic_abort {
        return Err(LoadError::PanicAbort {
            path: path.to_owned(),
            name: name.to_owned(),
        });
    }
    Ok(Checked {
        name,
        version,
        interface_version,
        declared_interface,
        host_requirement,
    })
}

/// Compares the plugin's method table with the host's: every method both
/// know must have the same name and signature, and the plugin must have
/// every method of the interface version it declares. Methods only the host
/// knows are missing from the plugin; methods only the plugin knows are never
/// called.
fn check_methods<I: Interface>(
    methods: &[MethodEntry],
    interface_version: &Version,
) -> Result<(), String> {
    for (expected, found) in I::METHODS.iter().zip(methods) {
        if let Some(difference) = expected.difference(&found.desc) {
            return Err(difference);
        }
    }
    if let Some(missing) = I::METHODS.get(methods.len())
        && (methods.len() < I::REQUIRED
            || Version::parse(missing.since.as_str())
                .is_ok_and(|since| since <= *interface_version))
    {
        return Err(format!(
            "it declares interface {interface_version} but lacks method `{}`, added in {}",
            missing.name, missing.since
        ));
    }
    Ok(())
}

/// Runs the plugin's `init` with its folder and configuration.
///
/// # Errors
///
/// [`LoadError::Init`] with the plugin's message.
pub(crate) fn initialize<I: Interface>(
    plugin: &Plugin<I>,
    config: &str,
    previous: Option<&Saved>,
    services: Option<&'static dropin::__private::RawServices>,
) -> Result<(), LoadError> {
    let dir = plugin.path.parent().unwrap_or(Path::new("."));
    // An isolated plugin was initialised in its own process.
    let Some(module) = plugin.module else {
        return Ok(());
    };
    let previous = previous.map(|(version, bytes)| (*version, bytes.as_slice()));
    dropin::__private::initialize(module, plugin.extensions, dir, config, previous, services)
        .map_err(|message| LoadError::Init {
            path: plugin.path.clone(),
            message,
        })
}

/// Whether two versions are of one compatible series: the same major, and
/// for 0.x the same minor too.
fn same_series(a: &Version, b: &Version) -> bool {
    a.major == b.major && (a.major != 0 || a.minor == b.minor)
}

/// Whether two versions have the same major and minor.
pub(crate) fn same_minor(a: &str, b: &str) -> bool {
    match (Version::parse(a), Version::parse(b)) {
        (Ok(a), Ok(b)) => a.major == b.major && a.minor == b.minor,
        _ => false,
    }
}

pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("expected a non-empty name".to_owned());
    }
    if name.len() > 64 {
        return Err(format!("expected at most 64 bytes, found {}", name.len()));
    }
    // Names are printed and typed by people: nothing that hides, reorders
    // or moves text may be in one.
    if name
        .chars()
        .any(|c| c.is_whitespace() || crate::trust::source::is_deceptive(c))
    {
        return Err(
            "expected no whitespace, control, bidirectional or zero-width characters".to_owned(),
        );
    }
    Ok(())
}

/// The [`LoadError`] for what abi_stable reported about `copy`, the private
/// snapshot of `path`; `interface` and its export macro are named when the
/// library has no root module.
pub(crate) fn classify(
    path: &Path,
    copy: &Path,
    header: Option<&LibHeader>,
    error: LibraryError,
    (interface, export): (&'static str, &'static str),
) -> LoadError {
    let path = path.to_owned();
    let found = || {
        header.map_or_else(
            || "an unknown version".to_owned(),
            |header| lossy(&header.version_strings().version).into_owned(),
        )
    };
    match error {
        LibraryError::OpenError { err, .. } => LoadError::Open {
            // The loader's message names the private copy; users know the
            // original.
            message: clean(err.to_string())
                .replace(&*copy.to_string_lossy(), &path.to_string_lossy()),
            path,
        },
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin {
            path,
            interface,
            export,
        },
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => LoadError::Layout {
            path,
            host: dropin::__private::DROPIN_VERSION,
            found: actual_version.to_string(),
            summary: "built with an incompatible release of dropin".to_owned(),
        },
        LibraryError::AbiInstability(report) => {
            let report = clean(report.to_string());
            log::debug!("{}: full layout report:\n{report}", path.display());
            LoadError::Layout {
                path,
                host: dropin::__private::DROPIN_VERSION,
                found: found(),
                summary: summarize_layout_report(&report),
            }
        }
        LibraryError::RootModule { err, .. } => LoadError::Init {
            path,
            message: match err {
                RootModuleError::Returned(error) => clean(error.to_string()),
                RootModuleError::Unwound => "the root module constructor panicked".to_owned(),
            },
        },
        other => LoadError::AbiStable {
            path,
            detail: one_line(&clean(other.to_string())),
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

/// abi_stable's messages quote names from the library's own layout, which
/// a corrupted library fills with any bytes: they are made valid UTF-8
/// before anything else looks at them.
fn clean(text: String) -> String {
    match String::from_utf8_lossy(text.as_bytes()) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(cleaned) => cleaned,
    }
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
    fn only_the_same_dropin_minor_loads() {
        assert!(same_minor("0.1.3", "0.1.0"));
        assert!(!same_minor("0.2.0", "0.1.0"));
        assert!(!same_minor("0.0.9", "0.1.0"));
        assert!(!same_minor("1.1.0", "1.0.0"));
        assert!(!same_minor("bogus", "0.1.0"));
    }

    #[test]
    fn names_must_be_one_printable_word() {
        assert!(check_name("hello-2").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("two words").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name("evil\u{202e}olleh").is_err());
        assert!(check_name("zero\u{200b}width").is_err());
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
