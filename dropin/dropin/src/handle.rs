//! The application's side of a call: the [`Interface`] trait the generated
//! handle implements, and [`PluginCore`], the state every handle shares.

use std::{
    fmt,
    path::Path,
    sync::{Arc, OnceLock},
};

use abi_stable::std_types::{RResult, RSlice, RStr};

use crate::{
    error::{CallError, RawError, RawErrorKind},
    logging::{self, LogLevel},
    module::{
        ExtensionsRef, InitArgs, InitExtra, InitExtraV2, MethodDesc, MethodEntry, ModuleRef,
        RawSavedState,
    },
    services::RawServices,
};

/// A plugin interface, as the host sees it: implemented by the typed handle
/// that `#[dropin::interface]` generates (`GreeterPlugin` for a trait
/// `Greeter`). A loader of interface `I` yields values of `I`.
///
/// # Safety
///
/// [`bind`](Self::bind) must cast each method entry to the `extern "C"`
/// signature that [`METHODS`](Self::METHODS) describes. Only the macro
/// implements this trait.
pub unsafe trait Interface: Sized + Send + Sync + 'static {
    /// The interface's name (by default the interface crate's package name).
    const NAME: &'static str;
    /// The interface crate's version this host was compiled with.
    const VERSION: &'static str;
    /// The export macro a plugin of this interface invokes
    /// (`"export_greeter"` for a trait `Greeter`), named in messages about
    /// libraries that lack it.
    const EXPORT_MACRO: &'static str;
    /// Every method in declaration order, with the version that added it.
    const METHODS: &'static [MethodDesc];
    /// How many of [`METHODS`](Self::METHODS), from the first, belong to the
    /// interface's first release of its major: every plugin must have them.
    const REQUIRED: usize;

    /// The handle of a plugin whose method table was checked against
    /// [`METHODS`](Self::METHODS): entry `i` has the signature of
    /// `METHODS[i]`; the table may be shorter (the plugin predates the later
    /// methods, but never shorter than [`REQUIRED`](Self::REQUIRED)) or
    /// longer (it knows methods this host does not).
    ///
    /// # Safety
    ///
    /// Every entry of `methods` must have been compared equal to the
    /// descriptor at the same index of [`METHODS`](Self::METHODS), and the
    /// library must stay loaded for the rest of the process.
    #[doc(hidden)]
    unsafe fn bind(core: PluginCore, methods: &'static [MethodEntry]) -> Self;

    /// The plugin's name, failure state and capabilities.
    fn core(&self) -> &PluginCore;

    /// The description of this interface as an application built with it
    /// has it ([`description::APPLICATION_MAGIC`](crate::description::APPLICATION_MAGIC)),
    /// placed in the executable's
    /// [`APPLICATION_SECTION`](crate::description::APPLICATION_SECTION).
    /// A loader refers to it, which keeps it in the programs that load
    /// plugins of this interface.
    #[doc(hidden)]
    fn application_description() -> &'static [u8] {
        &[]
    }

    /// The handle of a plugin that runs in another process, reached through
    /// `core`'s [`Remote`]: every method encodes its arguments and sends
    /// them there. It provides the first `provided` of
    /// [`METHODS`](Self::METHODS).
    ///
    /// # Safety
    ///
    /// `core` must have a remote ([`PluginCore::with_remote`]): the handle's
    /// function pointers are placeholders, reached only by a core without
    /// one.
    #[doc(hidden)]
    unsafe fn bind_remote(core: PluginCore, provided: usize) -> Self;

    /// The table of the services this interface's host offers (declared
    /// with `services = Trait`), for a plugin in another process: every
    /// service goes to `client`. `None` if the interface declares none.
    #[doc(hidden)]
    fn remote_services(
        client: Box<dyn crate::services::ServiceClient>,
    ) -> Option<&'static crate::services::RawServices> {
        drop(client);
        None
    }

    /// Serves one call that arrived from another process: decodes the
    /// arguments of method number `method` from `input`, calls it on this
    /// handle, and appends the encoded outcome to `out`.
    ///
    /// # Errors
    ///
    /// [`WireError`](crate::wire::WireError) if `input` does not hold the
    /// method's arguments, or there is no such method.
    #[doc(hidden)]
    fn serve(
        &self,
        method: usize,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), crate::wire::WireError>;
}

/// How a handle reaches a plugin that runs in another process.
pub trait Remote: Send + Sync {
    /// Sends the encoded arguments of method number `method`; returns the
    /// encoded value, or the call's error.
    ///
    /// # Errors
    ///
    /// The plugin's own error, or how its process failed.
    fn call(&self, method: usize, args: Vec<u8>) -> Result<Vec<u8>, CallError>;

    /// The id of the process that serves the plugin now, while it runs.
    fn process_id(&self) -> Option<u32>;

    /// Why the plugin failed for good: its process ended and will not be
    /// started again (the default: never).
    fn failure(&self) -> Option<&str> {
        None
    }

    /// Ends the process once the call it is serving returns: a newer
    /// generation of the plugin replaced it. Later calls through this remote
    /// go to `successor`, or fail if there is none.
    fn retire(&self, successor: Option<Arc<dyn Remote>>);

    /// Ends the process, and every process it started, once the call it is
    /// serving returns, with no successor: the plugin is disabled. Later
    /// calls through this remote fail.
    fn end(&self);

    /// Calls method number `method` of the object number `object` that the
    /// process keeps; returns the encoded outcome's value.
    ///
    /// # Errors
    ///
    /// The object's own error, or how its process failed.
    fn call_object(&self, object: u64, method: usize, args: Vec<u8>) -> Result<Vec<u8>, CallError>;

    /// Drops the object number `object` that the process keeps, unless
    /// that process ended (the object went with it).
    ///
    /// # Errors
    ///
    /// The object's drop panicked, or its process failed.
    fn drop_object(&self, object: u64) -> Result<(), CallError>;

    /// Sends the encoded arguments of the `async fn` method number `method`;
    /// the answer, once the process gives it. Many such calls may be in
    /// flight at once, and none holds a thread of the host while it waits;
    /// dropping the future cancels the call in the process.
    fn call_async(&self, method: usize, args: Vec<u8>) -> crate::future::RemoteAnswer<Vec<u8>>;

    /// As [`call_async`](Self::call_async), for method `method` of the object
    /// number `object` that the process keeps.
    fn call_object_async(
        &self,
        object: u64,
        method: usize,
        args: Vec<u8>,
    ) -> crate::future::RemoteAnswer<Vec<u8>>;

    /// Keeps the application's object `served` for the process (a
    /// callback the plugin may call back); its number there.
    fn keep_callback(&self, served: crate::object::Served) -> u64;

    /// Stops serving the application's object number `id` (lent for a call
    /// that returned), once a call to it that is being served returns.
    fn release_callback(&self, id: u64);

    /// As [`call`](Self::call), but never forwarded to a newer generation:
    /// for a method that returns objects, which stay in the process that
    /// made them.
    ///
    /// # Errors
    ///
    /// As `call`, or this generation was replaced.
    fn call_here(&self, method: usize, args: Vec<u8>) -> Result<Vec<u8>, CallError> {
        self.call(method, args)
    }

    /// What the plugin in that process saves for its next generation: the
    /// version of its state and the bytes, if it saves any (the default:
    /// none).
    ///
    /// # Errors
    ///
    /// The plugin's own error, or how its process failed.
    fn save_state(&self) -> Result<Option<(u32, Vec<u8>)>, CallError> {
        Ok(None)
    }
}

/// What every plugin handle has, whatever its interface: the plugin's name,
/// the methods it provides, and whether it is disabled.
pub struct PluginCore {
    name: &'static str,
    methods: &'static [MethodDesc],
    required: usize,
    provided: usize,
    remote: Option<Arc<dyn Remote>>,
    /// Whether it is disabled, shared with the objects it handed out.
    state: Arc<PluginState>,
}

/// The part of a plugin's state its objects share: whether it is disabled,
/// and what ends with it.
#[doc(hidden)]
#[allow(missing_debug_implementations)]
pub struct PluginState {
    name: &'static str,
    /// The interface version the plugin was built against.
    interface_version: &'static str,
    failure: OnceLock<String>,
    /// Turns off the plugin's calls to the host's services when it is
    /// disabled.
    refusal: OnceLock<crate::services::Refusal>,
    remote: Option<Arc<dyn Remote>>,
}

impl PluginState {
    /// The plugin's name.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The error of a call to `method`, added to the interface in
    /// `since`, which the plugin lacks.
    #[cold]
    pub(crate) fn missing(&self, method: &'static str, since: &'static str) -> CallError {
        CallError::missing(self.name, method, since, self.interface_version)
    }

    /// `error` from another process, or, if it says the plugin lacks the
    /// method `since` names (a later method, as `(name, version)`), the
    /// host's own error naming it, as in-process.
    #[cold]
    pub(crate) fn lacking(
        &self,
        error: CallError,
        since: Option<(&'static str, &'static str)>,
    ) -> CallError {
        match since {
            Some((method, since)) if error.kind() == crate::CallErrorKind::Missing => {
                self.missing(method, since)
            }
            _ => error,
        }
    }

    /// Why the plugin is disabled, if it is.
    #[inline]
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Disables the plugin; the first reason sticks.
    pub(crate) fn disable(&self, reason: String) {
        let _ = self.failure.set(reason);
        if let Some(refusal) = self.refusal.get() {
            refusal.refuse();
        }
        // An isolated plugin's process, and all it started, ends with it.
        if let Some(remote) = &self.remote {
            remote.end();
        }
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn disabled(&self) -> CallError {
        CallError::disabled(self.name, self.failure().unwrap_or_default().to_owned())
    }

    /// The error of a call that returned `error`; a panic disables the
    /// plugin.
    #[cold]
    #[inline(never)]
    pub(crate) fn failed(&self, error: RawError) -> CallError {
        let message = error.message().to_owned();
        match error.kind() {
            RawErrorKind::Failed | RawErrorKind::Callback => CallError::failed(self.name, message),
            RawErrorKind::Panicked => {
                let location = Some(error.location().to_owned()).filter(|l| !l.is_empty());
                let at = location
                    .as_deref()
                    .map_or_else(String::new, |l| format!(" at {l}"));
                log::warn!(
                    target: &logging::log_target(self.name),
                    "panicked{at}: {message}; the plugin is disabled for the rest of this process"
                );
                self.disable(format!("panicked: {message}"));
                CallError::panicked(self.name, message, location)
            }
        }
    }
}

impl PluginCore {
    /// The core of the plugin `name`, built against `interface_version`,
    /// which provides the first `provided` of `methods`, of which the first
    /// `required` belong to the interface's first release.
    #[doc(hidden)]
    pub fn new(
        name: &'static str,
        interface_version: &'static str,
        methods: &'static [MethodDesc],
        required: usize,
        provided: usize,
    ) -> Self {
        Self {
            name,
            methods,
            required,
            provided: provided.min(methods.len()),
            remote: None,
            state: Arc::new(PluginState {
                name,
                interface_version,
                failure: OnceLock::new(),
                refusal: OnceLock::new(),
                remote: None,
            }),
        }
    }

    /// The core of a plugin that runs in another process, reached through
    /// `remote`.
    #[doc(hidden)]
    #[must_use]
    pub fn with_remote(mut self, remote: Arc<dyn Remote>) -> Self {
        self.remote = Some(Arc::clone(&remote));
        self.state = Arc::new(PluginState {
            name: self.name,
            interface_version: self.state.interface_version,
            failure: OnceLock::new(),
            refusal: OnceLock::new(),
            remote: Some(remote),
        });
        self
    }

    /// The state the plugin's objects share with it.
    #[doc(hidden)]
    pub fn state(&self) -> &Arc<PluginState> {
        &self.state
    }

    /// How to reach the plugin, if it runs in another process.
    #[doc(hidden)]
    #[inline]
    pub fn remote(&self) -> Option<&dyn Remote> {
        self.remote.as_deref()
    }

    /// How to reach the plugin, shared, if it runs in another process.
    #[doc(hidden)]
    pub fn shared_remote(&self) -> Option<Arc<dyn Remote>> {
        self.remote.clone()
    }

    /// Whether the plugin runs in another process.
    pub fn is_isolated(&self) -> bool {
        self.remote.is_some()
    }

    /// The id of the process an isolated plugin runs in, while it runs
    /// (`None` in-process, or once that process ended).
    pub fn process_id(&self) -> Option<u32> {
        self.remote.as_ref()?.process_id()
    }

    /// Calls method number `method` of a plugin in another process: the
    /// arguments `encode` writes go to `remote`, the answer is decoded. Out
    /// of line, so that the in-process path stays a load, a branch and a
    /// call.
    ///
    /// # Errors
    ///
    /// The plugin's error, how its process failed, or a malformed answer.
    #[doc(hidden)]
    #[cold]
    #[inline(never)]
    pub fn call_remote<T: crate::wire::Decode>(
        &self,
        remote: &dyn Remote,
        method: usize,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<T, CallError> {
        self.call_remote_with(remote, method, encode, false)
    }

    /// As [`call_remote`](Self::call_remote), for a method that returns
    /// objects: never served by a newer generation's process.
    ///
    /// # Errors
    ///
    /// As `call_remote`, or this generation was replaced.
    #[doc(hidden)]
    #[cold]
    #[inline(never)]
    pub fn call_remote_here<T: crate::wire::Decode>(
        &self,
        remote: &dyn Remote,
        method: usize,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<T, CallError> {
        self.call_remote_with(remote, method, encode, true)
    }

    fn call_remote_with<T: crate::wire::Decode>(
        &self,
        remote: &dyn Remote,
        method: usize,
        encode: impl FnOnce(&mut Vec<u8>),
        here: bool,
    ) -> Result<T, CallError> {
        if self.state.failure.get().is_some() {
            return Err(self.disabled());
        }
        let mut args = Vec::new();
        encode(&mut args);
        let answer = if here {
            remote.call_here(method, args)
        } else {
            remote.call(method, args)
        };
        let result = answer.and_then(|bytes| self.decode::<T>(&bytes));
        if let Err(error) = &result
            && error.kind() == crate::CallErrorKind::Panicked
        {
            // As in-process: a plugin that panicked is not called again.
            self.disable(format!("panicked: {}", error.message()));
        }
        result
    }

    /// Starts a call of the `async fn` method number `method` of an
    /// isolated plugin, whose process `remote` reaches: the arguments
    /// `encode` writes go there, the answer is decoded.
    #[doc(hidden)]
    pub fn call_remote_async<'a, F, T, S, C>(
        &'a self,
        remote: &dyn Remote,
        method: usize,
        args: Vec<u8>,
        convert: C,
    ) -> crate::PluginFuture<'a, F, T, S, C>
    where
        T: crate::wire::Decode + Send + 'static,
        C: Fn(F) -> T,
        S: FnOnce(
            *mut std::ffi::c_void,
            *const crate::future::FfiWaker,
        ) -> RResult<crate::future::FfiStart<F>, RawError>,
    {
        // The host checks the plugin's own methods itself, before it calls.
        crate::PluginFuture::remote(
            &self.state,
            || remote.call_async(method, args),
            None,
            convert,
        )
    }

    /// Decodes an isolated plugin's answer.
    ///
    /// # Errors
    ///
    /// A [`CallError`] of kind `Failed` naming what was malformed.
    #[doc(hidden)]
    pub fn decode<T: crate::wire::Decode>(&self, bytes: &[u8]) -> Result<T, CallError> {
        decode_answer(self.name, bytes)
    }

    /// The plugin's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// How many of the interface's methods, from the first, the plugin
    /// provides.
    #[doc(hidden)]
    pub fn provided(&self) -> usize {
        self.provided
    }

    /// Whether the plugin provides the method `name` (a plugin built against
    /// an earlier minor version of the interface lacks the later methods).
    pub fn has(&self, method: &str) -> bool {
        self.methods[..self.provided]
            .iter()
            .any(|desc| desc.name.as_str() == method)
    }

    /// The methods added after the interface's first release that the plugin
    /// provides (`has == true`) or lacks (`has == false`), as
    /// `(name, since)`.
    pub fn capabilities(&self, has: bool) -> Vec<(&'static str, &'static str)> {
        self.methods
            .iter()
            .enumerate()
            .skip(self.required)
            .filter(|(i, _)| (*i < self.provided) == has)
            .map(|(_, desc)| (desc.name.as_str(), desc.since.as_str()))
            .collect()
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
        // An isolated plugin's process fails before any later reason to
        // disable it; the first reason sticks.
        (self.state.remote.as_ref())
            .and_then(|remote| remote.failure())
            .or_else(|| self.state.failure())
    }

    /// Disables the plugin for the rest of the process: after a panic its
    /// state may be broken, so it is not called again. The first reason
    /// sticks. An isolated plugin's process ends, and every process it
    /// started with it, as soon as no call is being served.
    pub fn disable(&self, reason: impl Into<String>) {
        self.state.disable(reason.into());
    }

    /// What turns off the plugin's calls to the host's services when it is
    /// disabled.
    #[doc(hidden)]
    pub fn set_refusal(&self, refusal: crate::services::Refusal) {
        if self.state.failure.get().is_some() {
            refusal.refuse();
        }
        let _ = self.state.refusal.set(refusal);
    }

    /// Runs one call into the plugin unless it is disabled; disables it if
    /// the call panicked. The success path is one load, one call and one
    /// match: everything else is out of line.
    #[doc(hidden)]
    #[inline]
    pub fn call<T>(&self, entry: impl FnOnce() -> RResult<T, RawError>) -> Result<T, CallError> {
        if self.state.failure.get().is_some() {
            return Err(self.disabled());
        }
        match entry() {
            RResult::ROk(value) => Ok(value),
            RResult::RErr(error) => Err(self.failed(error)),
        }
    }

    /// The error of a call to `method`, which the plugin predates.
    #[doc(hidden)]
    #[cold]
    #[inline(never)]
    pub fn missing(&self, method: &'static str, since: &'static str) -> CallError {
        self.state.missing(method, since)
    }

    #[cold]
    #[inline(never)]
    fn disabled(&self) -> CallError {
        self.state.disabled()
    }

    #[cold]
    #[inline(never)]
    fn failed(&self, error: RawError) -> CallError {
        self.state.failed(error)
    }
}

impl fmt::Debug for PluginCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginCore")
            .field("name", &self.name)
            .field("interface_version", &self.state.interface_version)
            .field("provided", &self.provided)
            .field("failure", &self.failure())
            .finish()
    }
}

/// Runs a loaded plugin's `init`: installs the log bridge to this process's
/// `log` logger and lets the plugin create its state, from `previous`
/// (version and bytes) if its earlier generation saved one.
/// `config_file` is where `config` was read from, for the plugin's errors
/// about it; a plugin built before [`ExtensionsV2`](crate::module::ExtensionsV2)
/// does not see it.
///
/// # Errors
///
/// The plugin's own error message, or `panicked: ` and its panic's.
pub fn initialize(
    module: ModuleRef,
    extensions: Option<ExtensionsRef>,
    dir: &Path,
    config: &str,
    config_file: Option<&Path>,
    previous: Option<(u32, &[u8])>,
    services: Option<&'static RawServices>,
) -> Result<(), String> {
    let dir = dir_bytes(dir);
    let args = InitArgs {
        sink: logging::host_sink(),
        max_level: LogLevel::from(log::max_level()),
        dir: RSlice::from_slice(&dir),
        config: RStr::from_str(config),
    };
    let previous = previous.map(|(version, bytes)| RawSavedState {
        version,
        bytes: bytes.to_vec().into(),
    });
    let outcome = match extensions {
        Some(ExtensionsRef::V2(extensions)) => {
            let file = config_file.map(dir_bytes).unwrap_or_default();
            let extra = InitExtraV2 {
                size: size_of::<InitExtraV2<'_>>(),
                previous: previous.as_ref(),
                services,
                config_file: RSlice::from_slice(&file),
            };
            (extensions.init_extended)(&args, &extra)
        }
        Some(ExtensionsRef::V1(extensions)) => {
            let extra = InitExtra {
                previous: previous.as_ref(),
                services,
            };
            (extensions.init_extended)(&args, &extra)
        }
        // A plugin built before extensions: no state, no services.
        None => (module.init())(&args),
    };
    match outcome {
        RResult::ROk(()) => Ok(()),
        RResult::RErr(error) => Err(raw_message(&error)),
    }
}

/// What a loaded plugin saves for its next generation: `None` if it saves
/// nothing (or predates saving).
///
/// # Errors
///
/// The plugin's own error message, or `panicked: ` and its panic's.
pub fn save_state(extensions: ExtensionsRef) -> Result<Option<(u32, Vec<u8>)>, String> {
    match (extensions.save())() {
        RResult::ROk(state) => Ok(state
            .into_option()
            .map(|state| (state.version, state.bytes.to_vec()))),
        RResult::RErr(error) => Err(raw_message(&error)),
    }
}

fn raw_message(error: &RawError) -> String {
    match error.kind() {
        RawErrorKind::Failed | RawErrorKind::Callback => error.message().to_owned(),
        RawErrorKind::Panicked => format!("panicked: {}", error.message()),
    }
}

/// A path's bytes, as they cross to a plugin or another process.
#[cfg(unix)]
pub fn dir_bytes(dir: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    dir.as_os_str().as_bytes().to_vec()
}

/// A path's bytes, as they cross to a plugin or another process.
#[cfg(not(unix))]
pub fn dir_bytes(dir: &Path) -> Vec<u8> {
    dir.to_string_lossy().into_owned().into_bytes()
}

/// Decodes the answer of the isolated plugin `name`'s process.
pub(crate) fn decode_answer<T: crate::wire::Decode>(
    name: &str,
    bytes: &[u8],
) -> Result<T, CallError> {
    let mut input = bytes;
    T::decode(&mut input)
        .and_then(|value| {
            if input.is_empty() {
                Ok(value)
            } else {
                Err(crate::wire::WireError(format!(
                    "{} bytes after the value",
                    input.len()
                )))
            }
        })
        .map_err(|error| {
            CallError::from_parts(
                crate::CallErrorKind::Failed,
                name,
                format!("its process sent an answer that does not decode: {error}"),
                None,
            )
        })
}
