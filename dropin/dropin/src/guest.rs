//! The plugin's side: its state, the panic guard around every entry point,
//! and the root module the export macro builds.

use std::{
    any::Any,
    cell::RefCell,
    fmt,
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
    sync::{Once, OnceLock},
};

use abi_stable::{
    prefix_type::PrefixTypeTrait,
    std_types::{ROption, RResult, RSlice, RStr},
};

use crate::{
    error::{BoxError, RawError, RawErrorKind, panic_message},
    logging,
    module::{
        BuildInfo, InitArgs, InitExtra, InitExtraV2, MethodEntry, Module, ModuleRef, RawSavedState,
    },
    services::{RawServices, ServicesHandle},
};

/// What a plugin's `init` receives from the host.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    name: &'a str,
    dir: &'a Path,
    config: &'a str,
    config_file: Option<&'a Path>,
    previous: Option<&'a SavedState>,
    services: Option<&'static RawServices>,
}

impl<'a> Context<'a> {
    /// A context, for calling a plugin's `init` in its own unit tests.
    pub fn new(name: &'a str, dir: &'a Path, config: &'a str) -> Self {
        Self {
            name,
            dir,
            config,
            config_file: None,
            previous: None,
            services: None,
        }
    }

    /// The same context, with its configuration read from `file`, as a
    /// host gives it: [`config`](Self::config)'s errors name the file. For
    /// unit tests of a plugin's configuration.
    #[must_use]
    pub fn with_config_file(mut self, file: &'a Path) -> Self {
        self.config_file = Some(file);
        self
    }

    /// The same context, as a reload gives it: with the state the plugin's
    /// earlier generation saved. For unit tests of a plugin's handover.
    #[must_use]
    pub fn with_previous_state(mut self, state: &'a SavedState) -> Self {
        self.previous = Some(state);
        self
    }

    /// The plugin's own name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The folder the plugin's file was found in. The host loads a private
    /// copy of the file, so this is the only way to find files beside it.
    pub fn dir(&self) -> &'a Path {
        self.dir
    }

    /// The plugin's configuration as text, as the host handed it over: its
    /// table of the plugins folder's configuration file (`plugins.toml`),
    /// as TOML, or what the application gave it in code; empty if there is
    /// none. [`config`](Self::config) reads it typed.
    pub fn config_text(&self) -> &'a str {
        self.config
    }

    /// The file the plugin's configuration is read from, when the host
    /// reads one: the configuration file, whether or not it has a table for
    /// the plugin. `None` when the application gave the configuration in
    /// code.
    pub fn config_file(&self) -> Option<&'a Path> {
        self.config_file
    }

    /// The plugin's configuration, read as a `T`: its table of the plugins
    /// folder's configuration file (`[plugin.<name>]` of `plugins.toml`),
    /// or the TOML text the application gave in code. A plugin without a
    /// table reads an empty one, so give `T`'s optional keys defaults
    /// (`#[serde(default)]`).
    ///
    /// ```
    /// #[derive(Debug, serde::Deserialize)]
    /// struct Settings {
    ///     start: u64,
    /// }
    ///
    /// let file = std::path::Path::new("plugins/plugins.toml");
    /// let context = dropin::Context::new("counter", file.parent().unwrap(), "start = \"soon\"")
    ///     .with_config_file(file);
    /// let error = context.config::<Settings>().unwrap_err();
    /// assert_eq!(
    ///     error.to_string(),
    ///     "plugins/plugins.toml: [plugin.counter]: key `start`: invalid type: string \"soon\", \
    ///      expected u64"
    /// );
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`](crate::ConfigError), naming the file, the plugin's
    /// table, the key and what was expected: for a value of the wrong type,
    /// a missing key, or a key `T` does not read (a misspelt setting is
    /// refused, not ignored). serde reads the fields of a
    /// `#[serde(flatten)]` field, and of untagged and internally tagged
    /// enums, through a buffer where a key nothing reads cannot be seen:
    /// give their types `#[serde(deny_unknown_fields)]` where serde
    /// allows it.
    #[cfg(feature = "config")]
    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::ConfigError> {
        crate::config::read(self.name, self.config_file, self.config)
    }

    /// When the host reloads the plugin, what the generation being replaced
    /// saved with its `save_state` (a method every interface has); `None`
    /// on a first load, or if it saved nothing. Check the version: the
    /// earlier generation may be an older build, with an older format.
    pub fn previous_state(&self) -> Option<&'a SavedState> {
        self.previous
    }

    /// A handle to the services the host offers, declared with
    /// `#[dropin::services]` (`context.services::<GreeterHostHandle>()`).
    /// Keep it: it may be cloned and called from any thread, for as long as
    /// the plugin lives. If the host offers no such services, or an earlier
    /// version without some of them, the calls that lack one fail with
    /// [`ServiceErrorKind::Missing`](crate::ServiceErrorKind::Missing).
    pub fn services<H: ServicesHandle>(&self) -> H {
        // SAFETY: `services` is the table the host handed to `init`.
        unsafe { H::bind(self.services) }
    }
}

/// A plugin's state, as one generation hands it to the next when the host
/// reloads the plugin: bytes in a format the plugin chooses, and that
/// format's version, so that a new build can tell an old format (and
/// convert or ignore it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedState {
    /// The format's version, as the plugin numbers it.
    pub version: u32,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl SavedState {
    /// The state as the host handed it over.
    fn from_raw(raw: &RawSavedState) -> Self {
        Self {
            version: raw.version,
            bytes: raw.bytes.to_vec(),
        }
    }
}

/// A plugin's state: created once by `init`, then shared by every call.
#[doc(hidden)]
pub struct PluginCell<P> {
    name: &'static str,
    value: OnceLock<P>,
}

impl<P> PluginCell<P> {
    /// State for the plugin called `name`, not yet initialised.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            value: OnceLock::new(),
        }
    }
}

impl<P> fmt::Debug for PluginCell<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginCell")
            .field("name", &self.name)
            .field("initialised", &self.value.get().is_some())
            .finish()
    }
}

/// Implemented by the export macro for the plugin's type: where its state is.
#[doc(hidden)]
pub trait Exported: Sized + Send + Sync + 'static {
    /// The plugin's state.
    fn cell() -> &'static PluginCell<Self>;
}

/// Implemented by the `#[interface]` macro, per interface, for every type that
/// implements the interface and is exported: what goes into the root module.
#[doc(hidden)]
pub trait Exports {
    /// The plugin's type.
    type Plugin: Exported;
    /// The interface's name.
    const INTERFACE_NAME: &'static str;
    /// The interface's version.
    const INTERFACE_VERSION: &'static str;
    /// The method table, pointing at this plugin's functions.
    const METHODS: &'static [MethodEntry];
    /// The host services trait the interface names (empty: none).
    const SERVICES_NAME: &'static str = "";
    /// The services a plugin may call, as that trait declares them.
    const SERVICES: &'static [crate::MethodDesc] = &[];
    /// The interface's `init`.
    ///
    /// # Errors
    ///
    /// Whatever the plugin's `init` returns.
    fn init(context: &Context<'_>) -> Result<Self::Plugin, BoxError>;

    /// The interface's `save_state`.
    ///
    /// # Errors
    ///
    /// Whatever the plugin's `save_state` returns.
    fn save(plugin: &Self::Plugin) -> Result<Option<SavedState>, BoxError>;
}

/// The root module of plugin `E::Plugin`, leaked: libraries are never
/// unloaded, so neither is their module.
#[doc(hidden)]
pub fn module<E: Exports>(
    version: &'static str,
    host: &'static str,
    build: BuildInfo,
) -> ModuleRef {
    Module {
        plugin_name: RStr::from_str(E::Plugin::cell().name),
        plugin_version: RStr::from_str(version),
        interface_name: RStr::from_str(E::INTERFACE_NAME),
        interface_version: RStr::from_str(E::INTERFACE_VERSION),
        host_requirement: RStr::from_str(host),
        build,
        init: init::<E>,
        methods: RSlice::from_slice(E::METHODS),
    }
    .leak_into_prefix()
}

extern "C" fn init<E: Exports>(args: &InitArgs<'_>) -> RResult<(), RawError> {
    init_with::<E>(args, None, None, None)
}

/// The [`Extensions`](crate::module::Extensions) entry that initialises plugin
/// `E::Plugin` with its predecessor's state and the host's services.
#[doc(hidden)]
pub extern "C" fn init_extended<E: Exports>(
    args: &InitArgs<'_>,
    extra: &InitExtra<'_>,
) -> RResult<(), RawError> {
    let previous = extra.previous.map(SavedState::from_raw);
    init_with::<E>(args, previous.as_ref(), extra.services, None)
}

/// The [`ExtensionsV2`](crate::module::ExtensionsV2) entry that initialises
/// plugin `E::Plugin` with its predecessor's state, the host's services and
/// where its configuration came from.
#[doc(hidden)]
pub extern "C" fn init_extended_v2<E: Exports>(
    args: &InitArgs<'_>,
    extra: &InitExtraV2<'_>,
) -> RResult<(), RawError> {
    let previous = extra.previous.map(SavedState::from_raw);
    let file = extra.config_file().map(path_from_bytes);
    init_with::<E>(args, previous.as_ref(), extra.services, file.as_deref())
}

fn init_with<E: Exports>(
    args: &InitArgs<'_>,
    previous: Option<&SavedState>,
    services: Option<&'static RawServices>,
    config_file: Option<&Path>,
) -> RResult<(), RawError> {
    let cell = E::Plugin::cell();
    logging::install(cell.name, args.sink, args.max_level);
    install_panic_hook();
    guard_result(|| {
        // The dynamic loader returns the same library for the same path, so
        // a host may legitimately initialise it twice: the first state stays.
        if cell.value.get().is_none() {
            let dir = path_from_bytes(args.dir.as_slice());
            let mut context = Context::new(cell.name, &dir, args.config.as_str());
            context.previous = previous;
            context.services = services;
            context.config_file = config_file;
            let _ = cell.value.set(E::init(&context)?);
        }
        Ok(())
    })
}

/// The [`Extensions`](crate::module::Extensions) entry that saves plugin
/// `E::Plugin`'s state.
#[doc(hidden)]
pub extern "C" fn save<E: Exports>() -> RResult<ROption<RawSavedState>, RawError> {
    guard(|| {
        let Some(plugin) = E::Plugin::cell().value.get() else {
            return Ok(ROption::RNone);
        };
        match E::save(plugin) {
            Ok(state) => Ok(state
                .map(|state| RawSavedState {
                    version: state.version,
                    bytes: state.bytes.into(),
                })
                .into()),
            Err(error) => Err(failed(error)),
        }
    })
}

#[cfg(unix)]
fn path_from_bytes(bytes: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(bytes).into()
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: &[u8]) -> std::path::PathBuf {
    String::from_utf8_lossy(bytes).into_owned().into()
}

thread_local! {
    /// Where the last panic on this thread happened, set by the plugin's panic
    /// hook and taken by the guard that catches it.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The plugin has its own std, hence its own panic hook, which would print
/// every caught panic to the host's stderr. This one records where the panic
/// happened; the guard sends it to the host with the message.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info.location().map(ToString::to_string);
            let _ = LOCATION.try_with(|cell| {
                if let Ok(mut slot) = cell.try_borrow_mut() {
                    *slot = location;
                }
            });
        }));
    });
}

/// Runs one method call of plugin `P`: its state, its error and any panic
/// become the `RResult` the host expects. Everything that runs plugin code
/// (the method, formatting its error, dropping its error) runs inside.
#[doc(hidden)]
#[inline]
pub fn call<P: Exported, T>(f: impl FnOnce(&P) -> Result<T, RawError>) -> RResult<T, RawError> {
    guard(|| match P::cell().value.get() {
        Some(plugin) => f(plugin),
        None => Err(not_initialised()),
    })
}

/// As [`call`], for an `async fn` method: the plugin's state is static,
/// for the future the method returns.
#[doc(hidden)]
#[inline]
pub fn call_static<P: Exported, T>(
    f: impl FnOnce(&'static P) -> Result<T, RawError>,
) -> RResult<T, RawError> {
    guard(|| match P::cell().value.get() {
        Some(plugin) => f(plugin),
        None => Err(not_initialised()),
    })
}

#[cold]
#[inline(never)]
fn not_initialised() -> RawError {
    raw(RawErrorKind::Failed, "called before init".into(), None)
}

/// The error of a method that returned `Err(error)`: its message. Call inside
/// [`call`], which contains a panicking `Display`.
#[doc(hidden)]
#[cold]
#[inline(never)]
pub fn failed(error: impl fmt::Display) -> RawError {
    raw(RawErrorKind::Failed, error.to_string(), None)
}

fn guard_result(f: impl FnOnce() -> Result<(), BoxError>) -> RResult<(), RawError> {
    // The boxed error is formatted and dropped inside the guard.
    guard(|| f().map_err(failed))
}

/// Runs `f`, plugin code that is not a method of the plugin (an object's),
/// with a panic caught as for a method.
#[doc(hidden)]
#[inline]
pub fn guarded<T>(f: impl FnOnce() -> Result<T, RawError>) -> RResult<T, RawError> {
    guard(f)
}

#[inline]
fn guard<T>(f: impl FnOnce() -> Result<T, RawError>) -> RResult<T, RawError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(error)) => RResult::RErr(error),
        Err(payload) => RResult::RErr(panicked(payload)),
    }
}

#[cold]
#[inline(never)]
fn panicked(payload: Box<dyn Any + Send>) -> RawError {
    // The application's callback failed: the plugin's call fails, and the
    // plugin, which did nothing wrong, is not disabled.
    let payload = match payload.downcast::<crate::object::CallbackFailed>() {
        Ok(failed) => return raw(RawErrorKind::Callback, failed.0, None),
        Err(payload) => payload,
    };
    // First, before anything else can panic and run the hook again.
    let location = LOCATION
        .try_with(|cell| cell.try_borrow_mut().ok().and_then(|mut slot| slot.take()))
        .ok()
        .flatten();
    raw(RawErrorKind::Panicked, panic_message(payload), location)
}

fn raw(kind: RawErrorKind, message: String, location: Option<String>) -> RawError {
    RawError::new(kind, message, location)
}

/// Panics, at compile time when evaluated in a constant, unless `name` is a
/// valid plugin name: 1 to 64 bytes, no whitespace or control characters.
#[doc(hidden)]
pub const fn assert_plugin_name(name: &str) {
    let bytes = name.as_bytes();
    assert!(
        !bytes.is_empty() && bytes.len() <= 64,
        "a plugin name must be 1 to 64 bytes long"
    );
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        // ASCII whitespace and control characters; multi-byte characters
        // are checked again, in full, when the host loads the plugin.
        assert!(
            b > b' ' && b != 0x7f,
            "a plugin name must not contain whitespace or control characters"
        );
        i += 1;
    }
}

/// Named by the export macro in a plugin built with `panic = "abort"`: its
/// deprecation is the warning the build prints (the refusal at load stays).
#[doc(hidden)]
#[deprecated(
    note = "this plugin is built with `panic = \"abort\"`: hosts refuse to load it, since its \
            first panic would end the host's process; build it with `panic = \"unwind\"` (the \
            default), or load it only in a host that allows abort"
)]
pub const fn built_with_panic_abort() {}

/// Panics, at compile time when evaluated in a constant, unless `req` is
/// empty or a semver requirement: comma-separated comparators such as
/// `>=1.2`, `<2`, `~1.4.3`, `1.*`.
#[doc(hidden)]
pub const fn assert_host_requirement(req: &str) {
    assert!(
        is_requirement(req.as_bytes()),
        "the host requirement must be a semver requirement such as \">=0.2, <0.4\""
    );
}

const fn is_requirement(s: &[u8]) -> bool {
    let mut i = skip_spaces(s, 0);
    if i == s.len() {
        return true;
    }
    loop {
        // An operator.
        if i < s.len() && (s[i] == b'>' || s[i] == b'<') {
            i += 1;
            if i < s.len() && s[i] == b'=' {
                i += 1;
            }
        } else if i < s.len() && (s[i] == b'=' || s[i] == b'~' || s[i] == b'^') {
            i += 1;
        }
        i = skip_spaces(s, i);
        // Up to three parts, each a number or a wildcard.
        let mut parts = 0;
        loop {
            if i < s.len() && (s[i] == b'*' || s[i] == b'x' || s[i] == b'X') {
                i += 1;
            } else {
                let start = i;
                while i < s.len() && s[i].is_ascii_digit() {
                    i += 1;
                }
                if i == start {
                    return false;
                }
            }
            parts += 1;
            if parts < 3 && i < s.len() && s[i] == b'.' {
                i += 1;
            } else {
                break;
            }
        }
        // A pre-release or build suffix.
        if i < s.len() && (s[i] == b'-' || s[i] == b'+') {
            i += 1;
            let start = i;
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'.' || s[i] == b'-') {
                i += 1;
            }
            if i == start {
                return false;
            }
        }
        i = skip_spaces(s, i);
        if i == s.len() {
            return true;
        }
        if s[i] != b',' {
            return false;
        }
        i = skip_spaces(s, i + 1);
    }
}

const fn skip_spaces(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i] == b' ' {
        i += 1;
    }
    i
}

/// Exports `$plugin` as this library's plugin of the interface whose hidden
/// glue is `$exports`. Interface crates wrap it in their own `export_*!`
/// macro; see [`interface`](macro@crate::interface).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin {
    (@or $default:expr) => { $default };
    (@or $default:expr, $value:expr) => { $value };
    (
        exports = $exports:ty,
        plugin = $plugin:ty
        $(, name = $name:expr)?
        $(, version = $version:expr)?
        $(, host = $host:expr)?
        $(,)?
    ) => {
        const _: () = {
            use $crate::__private as __dropin_rt;

            const __DROPIN_NAME: &str = $crate::__export_plugin!(@or ::core::env!("CARGO_PKG_NAME") $(, $name)?);
            const __DROPIN_VERSION: &str = $crate::__export_plugin!(@or ::core::env!("CARGO_PKG_VERSION") $(, $version)?);
            const __DROPIN_HOST: &str = $crate::__export_plugin!(@or "" $(, $host)?);
            const _: () = __dropin_rt::assert_plugin_name(__DROPIN_NAME);
            const _: () = __dropin_rt::assert_host_requirement(__DROPIN_HOST);
            // Said when it is built, not only when a host refuses it.
            #[cfg(panic = "abort")]
            const _: () = __dropin_rt::built_with_panic_abort();

            static __DROPIN_CELL: __dropin_rt::PluginCell<$plugin> = __dropin_rt::PluginCell::new(__DROPIN_NAME);

            impl __dropin_rt::Exported for $plugin {
                fn cell() -> &'static __dropin_rt::PluginCell<Self> {
                    &__DROPIN_CELL
                }
            }

            fn __dropin_root_module() -> __dropin_rt::ModuleRef {
                __dropin_rt::module::<$exports>(
                    __DROPIN_VERSION,
                    __DROPIN_HOST,
                    // Decided here, in the plugin's crate, under its profile.
                    __dropin_rt::BuildInfo::new(::core::cfg!(panic = "abort"), ::core::cfg!(debug_assertions)),
                )
            }

            extern "C" fn __dropin_load_root_module() -> __dropin_rt::RootModuleResult {
                __dropin_rt::__call_root_module_loader(__dropin_root_module)
            }

            // The plugin's description, read from the file by hosts and
            // tools without running any of it: bytes only, no pointer.
            const __DROPIN_PARTS: __dropin_rt::DescriptionParts = __dropin_rt::DescriptionParts {
                magic: __dropin_rt::DESCRIPTION_MAGIC,
                plugin_name: __DROPIN_NAME,
                plugin_version: __DROPIN_VERSION,
                interface_name: <$exports as __dropin_rt::Exports>::INTERFACE_NAME,
                interface_version: <$exports as __dropin_rt::Exports>::INTERFACE_VERSION,
                dropin_version: __dropin_rt::DROPIN_VERSION,
                host_requirement: __DROPIN_HOST,
                arch: ::std::env::consts::ARCH,
                os: ::std::env::consts::OS,
                panic_abort: ::core::cfg!(panic = "abort"),
                debug_assertions: ::core::cfg!(debug_assertions),
                methods: __dropin_rt::DescribedMethods::Exported(<$exports as __dropin_rt::Exports>::METHODS),
                services_name: <$exports as __dropin_rt::Exports>::SERVICES_NAME,
                services: <$exports as __dropin_rt::Exports>::SERVICES,
            };
            const __DROPIN_DESCRIPTION_LEN: usize = __dropin_rt::description_len(&__DROPIN_PARTS);
            #[unsafe(no_mangle)]
            static dropin_description_v1: [u8; __DROPIN_DESCRIPTION_LEN] =
                __dropin_rt::encode_description::<__DROPIN_DESCRIPTION_LEN>(&__DROPIN_PARTS);

            // What the plugin offers beyond its root module, looked up by
            // these names: the second for hosts that know it, the first for
            // earlier ones.
            #[unsafe(no_mangle)]
            static dropin_extensions_v1: __dropin_rt::Extensions = __dropin_rt::Extensions {
                save: __dropin_rt::save::<$exports>,
                init_extended: __dropin_rt::init_extended::<$exports>,
            };
            #[unsafe(no_mangle)]
            static dropin_extensions_v2: __dropin_rt::ExtensionsV2 = __dropin_rt::ExtensionsV2 {
                save: __dropin_rt::save::<$exports>,
                init_extended: __dropin_rt::init_extended_v2::<$exports>,
            };

            // The symbol abi_stable's loader looks up, spelled out so that
            // plugins need no abi_stable dependency. A test in dropin pins the
            // name to abi_stable's.
            #[unsafe(no_mangle)]
            static _1as_0lib_1header_0root_bmodule_bloader: __dropin_rt::LibHeader =
                // SAFETY: `__dropin_load_root_module` returns a `ModuleRef` erased by
                // abi_stable's own `__call_root_module_loader`.
                unsafe {
                    __dropin_rt::LibHeader::from_constructor::<__dropin_rt::ModuleRef>(
                        __dropin_load_root_module,
                        __dropin_rt::CheckTypeLayout::Yes,
                    )
                };
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_symbol_is_the_one_abi_stable_looks_up() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }

    #[test]
    fn host_requirements_are_checked_like_semver() {
        for ok in [
            "",
            ">=0.2, <0.4",
            "1",
            "^1.2.3",
            "~1.4",
            "=1.0.0-alpha.1",
            "1.*",
            ">= 1.2",
        ] {
            assert!(is_requirement(ok.as_bytes()), "{ok:?}");
        }
        for bad in ["bogus", ">=", "1.2.3.4", "1,", ">=1 <2", "1.2-"] {
            assert!(!is_requirement(bad.as_bytes()), "{bad:?}");
        }
    }

    struct Boom;
    impl fmt::Display for Boom {
        fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
            panic!("display exploded")
        }
    }

    #[test]
    fn an_error_whose_display_panics_is_a_panic_not_an_abort() {
        let error = guard::<()>(|| Err(failed(Boom))).unwrap_err();
        assert_eq!(error.kind(), RawErrorKind::Panicked);
        assert_eq!(error.message(), "display exploded");
    }

    struct DropBomb;
    impl Drop for DropBomb {
        fn drop(&mut self) {
            panic!("drop exploded")
        }
    }

    #[test]
    fn a_panic_payload_whose_drop_panics_is_contained() {
        let error = guard::<()>(|| std::panic::panic_any(DropBomb)).unwrap_err();
        assert_eq!(error.kind(), RawErrorKind::Panicked);
        assert_eq!(error.message(), "panic with a non-string payload");
    }
}
