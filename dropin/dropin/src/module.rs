//! The root module: the one symbol every plugin of every interface exports,
//! whatever its interface. Its layout is fixed by this crate; the interface's
//! methods are a table of entries, each with the descriptor of its signature.

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{ROption, RResult, RSlice, RStr, RVec},
};

use crate::{
    error::RawError,
    logging::{LogLevel, LogSink},
    values::{TypeDesc, items, lossy},
};

/// What every plugin exports, as an abi_stable prefix type: the host only
/// sees it through [`ModuleRef`].
///
/// # Rules for changing this type
///
/// Its layout is this crate's ABI, versioned by this crate's version (the
/// loader refuses a plugin of another major or minor).
/// A compatible release may only append fields after the last one, read by
/// the host as `Option`. Every field type must be `StableAbi`.
#[repr(C)]
#[derive(StableAbi, Debug)]
#[sabi(kind(Prefix(prefix_ref = ModuleRef)))]
pub struct Module {
    /// The plugin's name: how users select it and how the registry keys it.
    pub plugin_name: RStr<'static>,
    /// The plugin's own version, semver (by default its package version).
    pub plugin_version: RStr<'static>,
    /// The name of the interface the plugin implements (by default the
    /// interface crate's package name).
    pub interface_name: RStr<'static>,
    /// The version of the interface crate the plugin was built against.
    pub interface_version: RStr<'static>,
    /// The host versions the plugin supports, a semver requirement; empty for
    /// any host.
    pub host_requirement: RStr<'static>,
    /// How the plugin was built.
    pub build: BuildInfo,
    /// Called by the host exactly once after every check passed and before
    /// any method: installs the log bridge and creates the plugin's state.
    /// Never unwinds.
    ///
    /// Opaque to abi_stable's layout check, like `methods` and for the same
    /// reason: the types of its signature are dropin's ABI, versioned by
    /// dropin's version and pinned by `descriptor_layouts_are_pinned`.
    #[sabi(unsafe_opaque_field)]
    pub init: extern "C" fn(args: &InitArgs<'_>) -> RResult<(), RawError>,
    /// The interface's methods in declaration order: those of the interface's
    /// first release, then those each later minor release appended.
    ///
    /// Opaque to abi_stable's layout check, which would otherwise walk the
    /// recursive descriptors of every library it loads (82 % of a load's
    /// instructions, measured). The layout of [`MethodEntry`], of the
    /// descriptors and of the types every method's result uses is part of
    /// this crate's ABI, guarded by its version: the loader refuses a plugin
    /// of another major or minor (abi_stable alone would accept a newer
    /// minor). Change them only in a new minor.
    /// `descriptor_layouts_are_pinned` fails when they change.
    #[sabi(last_prefix_field, unsafe_opaque_field)]
    pub methods: RSlice<'static, MethodEntry>,
}

/// What a plugin offers beyond the root module, exported as the symbol
/// [`EXTENSIONS_SYMBOL`]: its state for reloads, and an `init` that
/// receives more than `InitArgs` (the predecessor's state, the host's
/// services). A separate symbol rather than fields appended to the root
/// module: abi_stable refuses a plugin whose prefix type has fewer fields
/// than the host's, and plugins built before this existed must keep
/// loading; they lack the symbol, start afresh and see no services.
///
/// The symbol's name carries its version: a changed layout gets a new name.
#[repr(C)]
#[derive(Debug)]
pub struct Extensions {
    /// Saves the plugin's state for the generation that replaces it: `None`
    /// if it saves none. Never unwinds.
    pub save: extern "C" fn() -> RResult<ROption<RawSavedState>, RawError>,
    /// `init` with what `InitExtra` adds. Never unwinds.
    pub init_extended:
        extern "C" fn(args: &InitArgs<'_>, extra: &InitExtra<'_>) -> RResult<(), RawError>,
}

/// What [`Extensions::init_extended`] receives beyond [`InitArgs`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct InitExtra<'a> {
    /// The state the plugin's earlier generation saved, on a reload.
    pub previous: Option<&'a RawSavedState>,
    /// The services the host offers this plugin.
    pub services: Option<&'static RawServices>,
}

/// The name of the [`Extensions`] symbol, NUL-terminated.
pub const EXTENSIONS_SYMBOL: &[u8] = b"dropin_extensions_v1\0";

/// [`Extensions`] with an `init` that receives `InitExtraV2`, exported as
/// the symbol [`EXTENSIONS_V2_SYMBOL`]. A plugin exports both: a host that
/// knows this one calls it, an earlier host the first.
#[repr(C)]
#[derive(Debug)]
pub struct ExtensionsV2 {
    /// As [`Extensions::save`].
    pub save: extern "C" fn() -> RResult<ROption<RawSavedState>, RawError>,
    /// `init` with what `InitExtraV2` adds. Never unwinds.
    pub init_extended:
        extern "C" fn(args: &InitArgs<'_>, extra: &InitExtraV2<'_>) -> RResult<(), RawError>,
}

/// What [`ExtensionsV2::init_extended`] receives beyond [`InitArgs`]. Its
/// first field is its size as the host knows it: a later host may append
/// fields, and a plugin reads a field only when that size covers it, so that
/// this layout never needs another symbol.
///
/// Neither `Clone` nor `Copy`, and its fields are this crate's only: a
/// plugin reads it through the reference the host passes, never a copy of
/// a size the host's may not have.
#[repr(C)]
#[derive(Debug)]
pub struct InitExtraV2<'a> {
    /// `size_of::<InitExtraV2>()` in the host that made it.
    pub(crate) size: usize,
    /// The state the plugin's earlier generation saved, on a reload.
    pub(crate) previous: Option<&'a RawSavedState>,
    /// The services the host offers this plugin.
    pub(crate) services: Option<&'static RawServices>,
    /// The file the plugin's configuration was read from, as bytes of the
    /// platform's path encoding; empty when the application gave it in
    /// code (or there is none).
    pub(crate) config_file: RSlice<'a, u8>,
}

impl<'a> InitExtraV2<'a> {
    /// The file the configuration came from, if the host's `InitExtraV2`
    /// has the field and it is not empty.
    pub(crate) fn config_file(&self) -> Option<&'a [u8]> {
        let end = std::mem::offset_of!(Self, config_file) + size_of::<RSlice<'_, u8>>();
        (self.size >= end && !self.config_file.is_empty()).then(|| self.config_file.as_slice())
    }
}

/// The name of the [`ExtensionsV2`] symbol, NUL-terminated.
pub const EXTENSIONS_V2_SYMBOL: &[u8] = b"dropin_extensions_v2\0";

/// The extensions a plugin exports: the latest version the host found.
#[derive(Debug, Clone, Copy)]
pub enum ExtensionsRef {
    /// A plugin built before [`ExtensionsV2`].
    V1(&'static Extensions),
    /// A plugin that exports [`ExtensionsV2`].
    V2(&'static ExtensionsV2),
}

impl ExtensionsRef {
    /// The plugin's `save`.
    pub fn save(self) -> extern "C" fn() -> RResult<ROption<RawSavedState>, RawError> {
        match self {
            Self::V1(extensions) => extensions.save,
            Self::V2(extensions) => extensions.save,
        }
    }
}

/// A plugin's state as it crosses from one generation to the next: the
/// version of the plugin's own format, and the bytes.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct RawSavedState {
    /// The format's version, as the plugin numbers it.
    pub version: u32,
    /// The bytes.
    pub bytes: RVec<u8>,
}

impl RootModule for ModuleRef {
    declare_root_module_statics! {ModuleRef}

    const BASE_NAME: &'static str = "dropin";
    const NAME: &'static str = "dropin";
    // abi_stable refuses a plugin built with an incompatible version of this
    // crate (another major; under 0.x, another minor).
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// Facts about how a plugin was built that decide whether a host may load it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct BuildInfo {
    /// Built with `panic = "abort"`: its first panic would kill the host.
    pub panic_abort: bool,
    /// Built with debug assertions (a debug build).
    pub debug_assertions: bool,
    /// The version of this crate the plugin was built with.
    pub dropin_version: RStr<'static>,
}

impl BuildInfo {
    /// The build facts of the crate that evaluates this, which must be the
    /// plugin: `cfg!` is decided where the macro expands.
    #[doc(hidden)]
    pub const fn new(panic_abort: bool, debug_assertions: bool) -> Self {
        Self {
            panic_abort,
            debug_assertions,
            dropin_version: RStr::from_str(env!("CARGO_PKG_VERSION")),
        }
    }
}

/// What the host hands a plugin's `init`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct InitArgs<'a> {
    /// Where the plugin's log records go.
    pub sink: LogSink,
    /// The most detailed level the host records.
    pub max_level: LogLevel,
    /// The folder the plugin's file was found in, as bytes of the platform's
    /// path encoding (UTF-8 where paths are not bytes).
    pub dir: RSlice<'a, u8>,
    /// The plugin's configuration, as the application handed it over; empty
    /// if none.
    pub config: RStr<'a>,
}

/// One method of the interface, as a plugin exports it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct MethodEntry {
    /// The method's name and signature.
    pub desc: MethodDesc,
    /// The plugin's function, whose real type is the interface's
    /// `extern "C"` signature for this method; the host casts it back only
    /// after comparing [`desc`](Self::desc) with its own.
    pub func: unsafe extern "C" fn(),
}

/// A method's name, the interface version that added it, and the
/// descriptors of its signature at the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct MethodDesc {
    /// The method's name.
    pub name: RStr<'static>,
    /// The interface version that added it (`"1.0.0"` for the first methods).
    pub since: RStr<'static>,
    /// Its arguments after `&self`.
    pub args: RSlice<'static, &'static TypeDesc>,
    /// What it returns on success.
    pub ret: &'static TypeDesc,
}

impl MethodDesc {
    /// Reads every part of the description, as [`difference`](Self::difference)
    /// may (see [`TypeDesc::walk`]).
    #[doc(hidden)]
    pub fn walk(&self) -> usize {
        lossy(&self.name).len()
            + lossy(&self.since).len()
            + items(self.args).iter().map(|arg| arg.walk()).sum::<usize>()
            + self.ret.walk()
    }

    /// The first difference between `self` (the host's) and `found` (the
    /// plugin's), naming the argument or the result.
    pub fn difference(&self, found: &MethodDesc) -> Option<String> {
        crate::description::Method::of(self).difference(&crate::description::Method::of(found))
    }
}

/// The table of one services trait, as the host hands it to one plugin.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct RawServices {
    /// The services trait's name (`greeter::GreeterHost`).
    pub name: RStr<'static>,
    /// The version of the interface crate the host was built with.
    pub version: RStr<'static>,
    /// One entry per service, in declaration order; each function takes
    /// `context` first, then the service's arguments.
    pub entries: RSlice<'static, MethodEntry>,
    /// The host's state for this plugin.
    pub context: *const std::ffi::c_void,
}

// SAFETY: `context` points to the host's `Shared`, which is `Send + Sync`
// and never freed.
unsafe impl Send for RawServices {}
// SAFETY: as above.
unsafe impl Sync for RawServices {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{FieldDesc, VariantDesc};

    /// The method table and `init` are opaque to abi_stable: a change to
    /// these types is a change of this crate's ABI, which needs a new minor
    /// version (0.x).
    #[test]
    fn descriptor_layouts_are_pinned() {
        use crate::{error::RawErrorData, logging::LogRecord};
        let word = size_of::<usize>();
        assert_eq!(size_of::<RawError>(), word);
        assert_eq!(size_of::<RawErrorData>(), 6 * word);
        assert_eq!(size_of::<RResult<u64, RawError>>(), 2 * word);
        assert_eq!(size_of::<InitArgs<'_>>(), 6 * word);
        assert_eq!(size_of::<LogRecord<'_>>(), 7 * word);
        assert_eq!(size_of::<MethodEntry>(), 8 * word);
        assert_eq!(size_of::<MethodDesc>(), 7 * word);
        assert_eq!(size_of::<TypeDesc>(), 10 * word);
        assert_eq!(size_of::<FieldDesc>(), 3 * word);
        assert_eq!(size_of::<VariantDesc>(), 4 * word);
        // The extensions symbol's contract (`dropin_extensions_v1`).
        assert_eq!(size_of::<Extensions>(), 2 * word);
        assert_eq!(size_of::<InitExtra<'_>>(), 2 * word);
        // `dropin_extensions_v2`: `InitExtraV2` may grow (its size says how
        // far), never change what it has.
        assert_eq!(size_of::<ExtensionsV2>(), 2 * word);
        assert_eq!(size_of::<InitExtraV2<'_>>(), 5 * word);
        assert_eq!(std::mem::offset_of!(InitExtraV2<'_>, config_file), 3 * word);
        assert_eq!(size_of::<RawSavedState>(), 5 * word);
        assert_eq!(size_of::<RawServices>(), 7 * word);
    }
}
