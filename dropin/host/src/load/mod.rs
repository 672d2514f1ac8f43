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

use abi_stable::library::{RawLibrary, lib_header_from_raw_library};
use dropin::{
    Interface, PluginCore,
    abi::{ExtensionsRef, ModuleRef},
};
use semver::{Version, VersionReq};

use crate::{
    digest::{hex, sha256_of},
    error::{LoadError, LoadErrorKind},
};

mod application;
mod checks;

pub use application::{Application, Judged};

pub(crate) use checks::*;

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
    pub(crate) extensions: Option<ExtensionsRef>,
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

    /// Why the plugin is disabled: it panicked earlier in this process, the
    /// application disabled it, or, isolated, its process ended (crashed or
    /// timed out) and will not be started again. `None` while it may still
    /// answer, an isolated plugin that will restart included.
    ///
    /// Finding an isolated plugin's process gone drops what the application
    /// gave that process, which runs those objects' `Drop`: not while
    /// holding a lock their `Drop` takes.
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
pub(crate) fn default_interface_req(version: &Version) -> VersionReq {
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
    } = check_facts(&Side::of::<I>(), path, &facts, policy)?;
    let methods = dropin::abi::items(module.methods());
    let described: Vec<dropin::description::Method> = methods
        .iter()
        .map(|entry| dropin::description::Method::of(&entry.desc))
        .collect();
    // The safety of `bind` below rests on this comparison with `I`'s own
    // descriptors.
    check_methods(&Side::of::<I>(), &described, &interface_version)
        .map_err(|detail| signature_error(&Side::of::<I>(), path, &interface_version, detail))?;
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
    plugin.extensions = extensions;
    Ok(plugin)
}

/// The extensions (latest version first) that `library` exports, if it
/// does: used only once the root module passed every check.
fn extensions(library: &RawLibrary) -> Option<ExtensionsRef> {
    fn symbol<T>(library: &RawLibrary, name: &[u8]) -> Option<&'static T> {
        // SAFETY: only the symbol's address is taken.
        let symbol = unsafe { library.get::<*const T>(name) };
        let pointer = symbol
            .ok()
            .map(|symbol| *symbol)
            .filter(|pointer| pointer.is_aligned() && !pointer.is_null())?;
        // SAFETY: a symbol of this name is the export macro's static of
        // this type (the name carries the layout's version), in a library
        // that is never unloaded; nothing reads it before the root module
        // passed every check.
        Some(unsafe { &*pointer })
    }
    symbol(library, dropin::abi::EXTENSIONS_V2_SYMBOL)
        .map(ExtensionsRef::V2)
        .or_else(|| symbol(library, dropin::abi::EXTENSIONS_SYMBOL).map(ExtensionsRef::V1))
}

/// Runs the plugin's `init` with its folder and configuration.
///
/// # Errors
///
/// [`LoadErrorKind::Init`] with the plugin's message.
pub(crate) fn initialize<I: Interface>(
    plugin: &Plugin<I>,
    config: (&str, Option<&Path>),
    previous: Option<&Saved>,
    services: Option<&'static dropin::abi::RawServices>,
) -> Result<(), LoadError> {
    let dir = plugin.path.parent().unwrap_or(Path::new("."));
    // An isolated plugin was initialised in its own process.
    let Some(module) = plugin.module else {
        return Ok(());
    };
    let previous = previous.map(|(version, bytes)| (*version, bytes.as_slice()));
    let (config, config_file) = config;
    dropin::abi::initialize(
        module,
        plugin.extensions,
        dir,
        config,
        config_file,
        previous,
        services,
    )
    .map_err(|message| LoadErrorKind::Init { message }.at(plugin.path.clone()))
}
