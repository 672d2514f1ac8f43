//! Host services: what the application offers its plugins, declared beside
//! an interface with [`#[dropin::services]`](macro@crate::services).
//!
//! The application implements the services trait and hands it to the
//! loader once ([`Services`]); every plugin's `init` finds a handle to it in
//! its [`Context`](crate::Context). A call through the handle crosses the
//! boundary the other way round: the plugin's handle calls the host's
//! function through a table the host built for that plugin, whose entries
//! were compared with the plugin's own descriptors when the handle was made.

use std::{
    cell::Cell,
    ffi::c_void,
    fmt,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use abi_stable::std_types::RResult;

pub use crate::module::RawServices;
use crate::{
    error::{RawError, RawErrorKind},
    module::MethodDesc,
};

/// What a services trait declares, implemented by the handle type that
/// `#[dropin::services]` generates (`GreeterHostHandle` for a trait
/// `GreeterHost`).
///
/// # Safety
///
/// [`bind`](Self::bind) must cast each entry to the signature
/// [`SERVICES`](Self::SERVICES) describes at the same index, only after
/// comparing their descriptors. Only the macro implements this trait.
pub unsafe trait ServicesHandle: Sized + Clone + Send + Sync + 'static {
    /// The services trait's name (`greeter::GreeterHost`).
    const NAME: &'static str;
    /// Every service, in declaration order, with the version that added it.
    const SERVICES: &'static [MethodDesc];

    /// A handle to the services in `table`, which the host made (`None`: the
    /// host offers none, and every call says the service is missing).
    ///
    /// # Safety
    ///
    /// `table` must be a table a `Services` made (`Services::table_for`) or
    /// a handle's `remote_table`: its entries' functions are called with its
    /// context.
    #[doc(hidden)]
    unsafe fn bind(table: Option<&'static RawServices>) -> Self;
}

/// What every services handle has: where the host's table is, and what to
/// say when a service is missing.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct ServicesCore {
    table: Option<&'static RawServices>,
    name: &'static str,
}

impl ServicesCore {
    /// The core of a handle of the services `name` over `table`, and which
    /// of the `services` the table provides with the same signature: entry
    /// `i` of the result is `Some` if the host's entry `i` matches.
    pub fn bind(
        name: &'static str,
        services: &'static [MethodDesc],
        table: Option<&'static RawServices>,
    ) -> (Self, Vec<Option<unsafe extern "C" fn()>>) {
        let table = table.filter(|table| table.name.as_str() == name);
        let entries = table.map_or(&[][..], |table| table.entries.as_slice());
        let bound = services
            .iter()
            .enumerate()
            .map(|(i, desc)| {
                entries
                    .get(i)
                    .filter(|entry| desc.difference(&entry.desc).is_none())
                    .map(|entry| entry.func)
            })
            .collect();
        (Self { table, name }, bound)
    }

    /// The context every service function takes first.
    #[inline]
    pub fn context(&self) -> *const c_void {
        self.table.map_or(std::ptr::null(), |table| table.context)
    }

    /// Whether the host offers these services at all.
    pub fn is_offered(&self) -> bool {
        self.table.is_some()
    }

    /// The outcome of a service call.
    #[inline]
    pub fn finish<T>(
        &self,
        service: &'static str,
        outcome: RResult<T, RawError>,
    ) -> Result<T, ServiceError> {
        match outcome {
            RResult::ROk(value) => Ok(value),
            RResult::RErr(error) => Err(self.failed(service, error)),
        }
    }

    #[cold]
    #[inline(never)]
    fn failed(&self, service: &'static str, error: RawError) -> ServiceError {
        ServiceError {
            kind: match error.kind() {
                RawErrorKind::Failed | RawErrorKind::Callback => ServiceErrorKind::Failed,
                RawErrorKind::Panicked => ServiceErrorKind::Panicked,
            },
            service,
            message: error.message().to_owned(),
        }
    }

    /// The error of a call to `service`, which the host lacks.
    #[cold]
    #[inline(never)]
    pub fn missing(&self, service: &'static str, since: &'static str) -> ServiceError {
        let message = match self.table {
            None => format!("the host offers no {} services", self.name),
            Some(table)
                if table
                    .entries
                    .as_slice()
                    .iter()
                    .any(|entry| entry.desc.name.as_str() == service) =>
            {
                format!(
                    "the host offers {} {} with another signature for `{service}`",
                    self.name,
                    table.version.as_str()
                )
            }
            Some(table) => format!(
                "the host offers {} {}; `{service}` was added in {since}",
                self.name,
                table.version.as_str()
            ),
        };
        ServiceError {
            kind: ServiceErrorKind::Missing,
            service,
            message,
        }
    }
}

impl fmt::Debug for ServicesCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServicesCore")
            .field("name", &self.name)
            .field("offered", &self.table.is_some())
            .finish()
    }
}

/// How a call to a host service failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceErrorKind {
    /// The host's service returned an error, or refused the call (the
    /// plugin was disabled, or the host is shutting it down).
    Failed,
    /// The host's service panicked; the host caught it and carries on.
    Panicked,
    /// The host lacks the service: it was built against an earlier version
    /// of the interface, or offers no services.
    Missing,
}

/// The error of a call to a host service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    kind: ServiceErrorKind,
    service: &'static str,
    message: String,
}

impl ServiceError {
    /// How the call failed.
    pub fn kind(&self) -> ServiceErrorKind {
        self.kind
    }

    /// The service called.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// What the host said, or why the service is missing.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let service = self.service;
        match self.kind {
            ServiceErrorKind::Failed => write!(f, "host service `{service}` failed: "),
            ServiceErrorKind::Panicked => write!(f, "host service `{service}` panicked: "),
            ServiceErrorKind::Missing => write!(f, "host service `{service}` is missing: "),
        }?;
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServiceError {}

/// The services an application offers its plugins, ready for the loader
/// (`LoaderBuilder::services`). Made by the `provided_by` function of the
/// handle type `#[dropin::services]` generates.
#[derive(Clone)]
pub struct Services {
    provider: Arc<dyn Provider>,
}

impl Services {
    #[doc(hidden)]
    pub fn new(provider: Arc<dyn Provider>) -> Self {
        quiet_service_panics();
        Self { provider }
    }

    /// The services trait's name.
    pub fn name(&self) -> &'static str {
        self.provider.name()
    }

    /// The version of the interface crate the application was built with.
    pub fn version(&self) -> &'static str {
        self.provider.version()
    }

    /// A table for the plugin `plugin`, leaked (a plugin may keep its
    /// handle for ever), and the switch that refuses its calls from then on.
    #[doc(hidden)]
    pub fn table_for(&self, plugin: &str) -> (&'static RawServices, Refusal) {
        let refused = Arc::new(AtomicBool::new(false));
        let table = self.provider.table(Caller {
            plugin: plugin.into(),
            refused: Arc::clone(&refused),
        });
        (table, Refusal(refused))
    }

    /// The caller an isolated plugin's service calls are served as, and the
    /// switch that refuses them from then on.
    #[doc(hidden)]
    pub fn caller_for(&self, plugin: &str) -> (Caller, Refusal) {
        let refused = Arc::new(AtomicBool::new(false));
        let caller = Caller {
            plugin: plugin.into(),
            refused: Arc::clone(&refused),
        };
        (caller, Refusal(refused))
    }

    /// Serves one service call that arrived from another process, for the
    /// plugin `caller`.
    ///
    /// # Errors
    ///
    /// [`WireError`](crate::wire::WireError) if `input` does not hold the
    /// service's arguments, or there is no such service.
    #[doc(hidden)]
    pub fn serve(
        &self,
        caller: &Caller,
        method: usize,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), crate::wire::WireError> {
        self.provider.serve(caller, method, input, out)
    }
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Services").field(&self.name()).finish()
    }
}

/// Turns off a plugin's access to the host's services.
#[derive(Debug, Clone)]
pub struct Refusal(Arc<AtomicBool>);

impl Refusal {
    /// From now on, the plugin's service calls fail.
    pub fn refuse(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The plugin a service call comes from.
#[derive(Debug, Clone)]
pub struct Caller {
    plugin: Arc<str>,
    refused: Arc<AtomicBool>,
}

/// Implemented by `#[dropin::services]` for the application's type.
#[doc(hidden)]
pub trait Provider: Send + Sync + 'static {
    /// The services trait's name.
    fn name(&self) -> &'static str;
    /// The version of the interface crate the application was built with.
    fn version(&self) -> &'static str;
    /// A table for `caller`, leaked.
    fn table(&self, caller: Caller) -> &'static RawServices;
    /// Serves one call from another process.
    ///
    /// # Errors
    ///
    /// The arguments do not decode, or there is no such service.
    fn serve(
        &self,
        caller: &Caller,
        method: usize,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), crate::wire::WireError>;
}

/// What a table's context points to: the application's services and the
/// plugin they serve.
#[doc(hidden)]
#[allow(missing_debug_implementations)]
pub struct Shared<T> {
    pub host: Arc<T>,
    pub caller: Caller,
}

thread_local! {
    /// The caller whose service call this thread serves (null outside one).
    static CALLING: Cell<*const Caller> = const { Cell::new(std::ptr::null()) };
}

thread_local! {
    /// Where the last panic in a host service on this thread happened.
    static PANICKED_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Keeps the process's panic hook (the default one prints the panic and a
/// note on backtraces) from reporting a panic of a host service, which
/// [`serve_with`] catches, reports to the plugin and logs with where it
/// happened; any other panic goes to the hook as before (so does every
/// panic of an application built to abort). A panic that a service catches
/// itself is not reported by the hook either. Installed once, over the hook
/// in place then: an application that sets its own later replaces this.
fn quiet_service_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let serving = CALLING.try_with(|calling| !calling.get().is_null());
            // Built to abort, the process ends here: nothing catches the
            // panic to log it, so the hook reports it as always.
            if serving == Ok(true) && !cfg!(panic = "abort") {
                let location = info.location().map(ToString::to_string);
                let _ = PANICKED_AT.try_with(|slot| {
                    if let Ok(mut slot) = slot.try_borrow_mut() {
                        *slot = location;
                    }
                });
            } else {
                previous(info);
            }
        }));
    });
}

/// The name of the plugin whose service call this thread is serving, for
/// the application's service implementations (`None` outside one).
pub fn calling_plugin() -> Option<String> {
    let caller = CALLING.with(Cell::get);
    // SAFETY: set by `serve_with` to a caller that outlives the call it
    // serves, and reset when the call returns.
    (!caller.is_null()).then(|| unsafe { &*caller }.plugin.to_string())
}

/// Runs one service call for `caller` on `host`: refused if the plugin was
/// disabled, `calling_plugin` set meanwhile, a panic caught and reported.
/// Inlined into each service's function: what only a refusal or a panic
/// needs is out of line.
#[doc(hidden)]
#[inline]
pub fn serve_with<T, R>(
    caller: &Caller,
    host: &T,
    f: impl FnOnce(&T) -> Result<R, String>,
) -> RResult<R, RawError> {
    if caller.refused.load(Ordering::Acquire) {
        return RResult::RErr(refused(caller));
    }
    let previous = CALLING.with(|calling| calling.replace(std::ptr::from_ref(caller)));
    // A location left by a panic the service caught itself is not this
    // call's.
    let _ = PANICKED_AT.try_with(|slot| slot.try_borrow_mut().map(|mut slot| slot.take()));
    let outcome = catch_unwind(AssertUnwindSafe(|| f(host)));
    CALLING.with(|calling| calling.set(previous));
    match outcome {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(message)) => RResult::RErr(failed(message)),
        Err(payload) => RResult::RErr(panicked(caller, payload)),
    }
}

/// The error of a call from a plugin the host disabled.
#[cold]
#[inline(never)]
fn refused(caller: &Caller) -> RawError {
    RawError::new(
        RawErrorKind::Failed,
        format!(
            "refused: plugin '{}' was disabled by the host",
            caller.plugin
        ),
        None,
    )
}

/// The error of a service that failed with `message`.
#[cold]
#[inline(never)]
fn failed(message: String) -> RawError {
    RawError::new(RawErrorKind::Failed, message, None)
}

/// The error of a service that panicked with `payload`, which is dropped
/// here (a payload whose drop panics is leaked); the panic is logged.
#[cold]
#[inline(never)]
fn panicked(caller: &Caller, payload: Box<dyn std::any::Any + Send>) -> RawError {
    let location = PANICKED_AT
        .try_with(|slot| slot.try_borrow_mut().ok()?.take())
        .ok()
        .flatten();
    let message = crate::error::panic_message(payload);
    // A logger that panics must not unwind out of this function.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let at = location
            .as_deref()
            .map_or_else(String::new, |location| format!(" at {location}"));
        log::warn!(
            "the host's service panicked{at} while serving plugin '{}': {message}",
            caller.plugin
        );
    }));
    RawError::new(RawErrorKind::Panicked, message, location)
}

/// The context of a host-side service function, back to what it is.
///
/// # Safety
///
/// `context` must be the context of a table made for `Shared<T>`.
#[doc(hidden)]
pub unsafe fn shared<'a, T>(context: *const c_void) -> &'a Shared<T> {
    // SAFETY: the caller's promise; tables are leaked, never freed.
    unsafe { &*context.cast::<Shared<T>>() }
}

/// How an isolated plugin's process reaches the host's services: one call
/// at a time, over a channel to the host.
pub trait ServiceClient: Send + Sync + 'static {
    /// Sends the encoded arguments of service number `service`; returns the
    /// encoded outcome (see [`encode_service`]).
    ///
    /// # Errors
    ///
    /// Why the host could not be reached.
    fn call(&self, service: usize, args: Vec<u8>) -> Result<Vec<u8>, String>;

    /// Calls method `method` of the application's object number `object`,
    /// which the host keeps for this process; returns the encoded outcome
    /// (as [`encode_service`] writes it).
    ///
    /// # Errors
    ///
    /// Why the host could not be reached.
    fn callback(&self, object: u64, method: usize, args: Vec<u8>) -> Result<Vec<u8>, String>;

    /// Tells the host this process no longer holds its object number
    /// `object`.
    ///
    /// # Errors
    ///
    /// Why the host could not be reached.
    fn drop_callback(&self, object: u64) -> Result<(), String>;
}

/// Appends the outcome of a service call served for another process: `0`
/// and the value, or `1`, `0` (failed) or `1` (panicked), and the message.
pub fn encode_service<T: crate::wire::Encode>(outcome: &RResult<T, RawError>, out: &mut Vec<u8>) {
    use crate::wire::Encode;
    match outcome {
        RResult::ROk(value) => {
            out.push(0);
            value.encode(out);
        }
        RResult::RErr(error) => {
            out.push(1);
            out.push(match error.kind() {
                RawErrorKind::Failed => 0,
                RawErrorKind::Panicked => 1,
                RawErrorKind::Callback => 2,
            });
            error.message().encode(out);
        }
    }
}

/// Reads what [`encode_service`] wrote, as the value's representation at
/// the boundary.
#[doc(hidden)]
pub fn decode_service<T: crate::wire::Decode + crate::Stable>(
    bytes: &[u8],
) -> RResult<T::Ffi, RawError> {
    use crate::wire::Decode;
    let mut input = bytes;
    let malformed = |what: String| {
        RResult::RErr(RawError::new(
            RawErrorKind::Failed,
            format!("the host sent an answer that does not decode: {what}"),
            None,
        ))
    };
    match u8::decode(&mut input) {
        Ok(0) => match T::decode(&mut input) {
            Ok(value) if input.is_empty() => RResult::ROk(value.into_ffi()),
            Ok(_) => malformed(format!("{} bytes after the value", input.len())),
            Err(error) => malformed(error.to_string()),
        },
        Ok(1) => {
            let kind = match u8::decode(&mut input) {
                Ok(0) => RawErrorKind::Failed,
                Ok(1) => RawErrorKind::Panicked,
                Ok(2) => RawErrorKind::Callback,
                _ => return malformed("an unknown error kind".to_owned()),
            };
            match String::decode(&mut input) {
                Ok(message) => RResult::RErr(RawError::new(kind, message, None)),
                Err(error) => malformed(error.to_string()),
            }
        }
        _ => malformed("an unknown outcome".to_owned()),
    }
}

/// One service call from an isolated plugin's process: the arguments
/// `encode` writes go to the client behind `context`, the answer is
/// decoded.
///
/// # Safety
///
/// `context` must be the context of a table made by a handle's
/// `remote_table`: a leaked `Box<dyn ServiceClient>`.
#[doc(hidden)]
pub unsafe fn remote_service<T: crate::wire::Decode + crate::Stable>(
    context: *const c_void,
    service: usize,
    encode: impl FnOnce(&mut Vec<u8>),
) -> RResult<T::Ffi, RawError> {
    // SAFETY: the caller's promise.
    let client = unsafe { &*context.cast::<Box<dyn ServiceClient>>() };
    let mut args = Vec::new();
    encode(&mut args);
    match client.call(service, args) {
        Ok(bytes) => decode_service::<T>(&bytes),
        Err(why) => RResult::RErr(RawError::new(RawErrorKind::Failed, why, None)),
    }
}
