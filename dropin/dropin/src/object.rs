//! Objects a plugin hands the application: a value with methods of its own
//! (a table, a session, a decoder), declared in the interface crate as a
//! trait with `#[dropin::object]` and returned by a method as
//! `Box<dyn Trait>`. The application holds the generated handle
//! (`TableHandle` for a trait `Table`), whose methods call the plugin's
//! object like the plugin's own methods, and whose drop drops the object in
//! the plugin's code.

use std::{ffi::c_void, fmt, sync::Arc};

use abi_stable::std_types::RResult;

use crate::{
    error::{CallError, RawError},
    handle::{PluginState, Remote},
    wire::WireError,
};

/// An object as it crosses the boundary: the plugin's object, its method
/// table and the function that drops it, all the plugin's.
#[doc(hidden)]
#[repr(C)]
#[allow(missing_debug_implementations)]
pub struct RawObject {
    /// The object: a pointer to a value of the type that implements the
    /// trait.
    pub this: *mut c_void,
    /// That type's table of the trait's methods (a `#[repr(C)]` struct of
    /// functions, each calling the type's method).
    pub methods: *const c_void,
    /// Drops the object, a panic caught.
    pub drop: extern "C" fn(*mut c_void) -> RResult<(), RawError>,
}

// SAFETY: an object's trait is `Send + Sync` (the macro requires it), and the
// method table and functions are statics.
unsafe impl Send for RawObject {}
// SAFETY: as above.
unsafe impl Sync for RawObject {}

/// What every object handle holds: the plugin's object (in this process,
/// or by number in the isolated plugin's) and its plugin's state, shared
/// with the plugin's handle (a panic in an object disables its plugin, and
/// a disabled plugin's objects are not called).
pub struct Object {
    /// The object in this process (null for one in another process), read
    /// on every call without a branch.
    this: *mut c_void,
    methods: *const c_void,
    place: Place,
    plugin: Arc<PluginState>,
}

// SAFETY: as `RawObject`'s: the object's trait is `Send + Sync`, and the
// method table is a static.
unsafe impl Send for Object {}
// SAFETY: as above.
unsafe impl Sync for Object {}

enum Place {
    /// Drops the object in this process.
    Local(extern "C" fn(*mut c_void) -> RResult<(), RawError>),
    Remote(Arc<dyn Remote>, u64),
}

impl Object {
    /// An object that the plugin of `plugin` returned in this process.
    ///
    /// # Safety
    ///
    /// `raw` must be what the object macro's conversion made of a
    /// `Box<dyn Trait>`, not used by anything else, for the trait whose
    /// method table the handle will read.
    #[doc(hidden)]
    pub unsafe fn local(raw: RawObject, plugin: &Arc<PluginState>) -> Self {
        Self {
            this: raw.this,
            methods: raw.methods,
            place: Place::Local(raw.drop),
            plugin: Arc::clone(plugin),
        }
    }

    /// The object number `id` that the isolated plugin's process, reached
    /// through `remote`, keeps.
    #[doc(hidden)]
    pub fn remote(remote: Arc<dyn Remote>, id: u64, plugin: &Arc<PluginState>) -> Self {
        Self {
            this: std::ptr::null_mut(),
            methods: std::ptr::null(),
            place: Place::Remote(remote, id),
            plugin: Arc::clone(plugin),
        }
    }

    /// Whether the object lives in another process.
    #[doc(hidden)]
    #[inline]
    pub fn is_remote(&self) -> bool {
        self.this.is_null()
    }

    /// The remote that reaches the object's process, for the objects its
    /// methods return.
    #[doc(hidden)]
    pub fn remote_of(&self) -> Option<&Arc<dyn Remote>> {
        match &self.place {
            Place::Remote(remote, _) => Some(remote),
            Place::Local(_) => None,
        }
    }

    /// Calls method number `method` of an object in another process: the
    /// arguments `encode` writes go there, the answer is decoded. `since`
    /// names a method added after the trait's first version, as
    /// `(name, version)`, which the object may lack.
    ///
    /// # Errors
    ///
    /// The object's error, how its process failed, or a malformed answer.
    #[doc(hidden)]
    #[cold]
    #[inline(never)]
    pub fn call_remote<T: crate::wire::Decode>(
        &self,
        method: usize,
        since: Option<(&'static str, &'static str)>,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<T, CallError> {
        let Place::Remote(remote, id) = &self.place else {
            unreachable!("called for objects in another process only")
        };
        if self.plugin.failure().is_some() {
            return Err(self.plugin.disabled());
        }
        let mut args = Vec::new();
        encode(&mut args);
        let result = remote
            .call_object(*id, method, args)
            .map_err(|error| self.plugin.lacking(error, since))
            .and_then(|bytes| {
                let mut input = bytes.as_slice();
                T::decode(&mut input)
                    .ok()
                    .filter(|_| input.is_empty())
                    .ok_or_else(|| {
                        CallError::failed(
                            self.plugin.name(),
                            "its process sent an answer that does not decode".to_owned(),
                        )
                    })
            });
        if let Err(error) = &result
            && error.kind() == crate::CallErrorKind::Panicked
        {
            // As in-process: a plugin that panicked is not called again.
            self.plugin
                .disable(format!("panicked: {}", error.message()));
        }
        result
    }

    /// The error of a call to the method `method`, added to the object's
    /// trait in `since`, which this object lacks: its plugin was built with
    /// an earlier version of the trait.
    #[doc(hidden)]
    #[cold]
    #[inline(never)]
    pub fn missing(&self, method: &'static str, since: &'static str) -> CallError {
        self.plugin.missing(method, since)
    }

    /// Starts a call of the `async fn` method number `method` of an object
    /// in another process: the arguments `encode` writes go there, the
    /// answer is decoded.
    #[doc(hidden)]
    pub fn call_remote_async<'a, F, T, S, C>(
        &'a self,
        method: usize,
        since: Option<(&'static str, &'static str)>,
        args: Vec<u8>,
        convert: C,
    ) -> crate::PluginFuture<'a, F, T, S, C>
    where
        T: crate::wire::Decode + Send + 'static,
        C: Fn(F) -> T,
        S: FnOnce(
            *mut c_void,
            *const crate::future::FfiWaker,
        ) -> RResult<crate::future::FfiStart<F>, RawError>,
    {
        let Place::Remote(remote, id) = &self.place else {
            unreachable!("called for objects in another process only")
        };
        crate::PluginFuture::remote(
            &self.plugin,
            || remote.call_object_async(*id, method, args),
            since,
            convert,
        )
    }

    /// Its plugin's state, for the objects its methods return.
    #[doc(hidden)]
    pub fn plugin(&self) -> &Arc<PluginState> {
        &self.plugin
    }

    /// The object, for its method table's functions.
    #[doc(hidden)]
    #[inline]
    pub fn this(&self) -> *const c_void {
        self.this
    }

    /// The object's method table.
    ///
    /// # Safety
    ///
    /// `M` must be the table of the trait the object was made for, and the
    /// object must live in this process.
    #[doc(hidden)]
    #[inline]
    pub unsafe fn methods<M>(&self) -> &M {
        // SAFETY: the caller's contract; the table is a static.
        unsafe { &*self.methods.cast::<M>() }
    }

    /// Runs one call into the object unless its plugin is disabled; a
    /// panic disables the plugin.
    #[doc(hidden)]
    #[inline]
    pub fn call<T>(&self, entry: impl FnOnce() -> RResult<T, RawError>) -> Result<T, CallError> {
        if self.plugin.failure().is_some() {
            return Err(self.plugin.disabled());
        }
        match entry() {
            RResult::ROk(value) => Ok(value),
            RResult::RErr(error) => Err(self.plugin.failed(error)),
        }
    }
}

impl Drop for Object {
    /// Drops the object in the plugin's code, unless the plugin is disabled
    /// (after a panic its state may be broken: the object is left as it is).
    fn drop(&mut self) {
        if self.plugin.failure().is_some() {
            return;
        }
        match &self.place {
            Place::Local(drop_object) => {
                if let RResult::RErr(error) = drop_object(self.this) {
                    drop(self.plugin.failed(error));
                }
            }
            Place::Remote(remote, id) => {
                if let Err(error) = remote.drop_object(*id)
                    && error.kind() == crate::CallErrorKind::Panicked
                {
                    // As in-process: a plugin that panicked is not called
                    // again.
                    log::warn!(
                        target: &crate::logging::log_target(self.plugin.name()),
                        "{error}; the plugin is disabled for the rest of this process"
                    );
                    self.plugin
                        .disable(format!("panicked: {}", error.message()));
                }
            }
        }
    }
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Object")
            .field("plugin", &self.plugin.name())
            .finish_non_exhaustive()
    }
}

/// An object a plugin's process keeps for its host, served by number: the
/// generated handle, in that process, implements it.
#[doc(hidden)]
pub trait ServeObject: Send + Sync {
    /// Decodes the arguments of method number `method` from `input`, calls
    /// it, and encodes the outcome into `out`.
    ///
    /// # Errors
    ///
    /// Arguments that do not decode.
    fn serve(&self, method: usize, input: &[u8], out: &mut Vec<u8>) -> Result<(), WireError>;
}

/// The objects this process (an isolated plugin's) keeps for its host.
static KEPT: std::sync::Mutex<std::collections::BTreeMap<u64, Arc<dyn ServeObject>>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());
static NEXT: std::sync::OnceLock<std::sync::atomic::AtomicU64> = std::sync::OnceLock::new();

/// Keeps `object` for the host; its number. Numbers start at a random
/// point in each process, so that a handle to an object of a process that
/// was restarted names no object of the new one.
#[doc(hidden)]
pub fn keep_object(object: Box<dyn ServeObject>) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let next = NEXT.get_or_init(|| {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        std::sync::atomic::AtomicU64::new(random)
    });
    let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    KEPT.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, Arc::from(object));
    id
}

/// Serves a call to the kept object number `id`; an object this process
/// does not keep (a restarted process's host asking for an earlier one's)
/// is an error outcome, not the end of the process.
///
/// # Errors
///
/// Arguments that do not decode.
#[doc(hidden)]
pub fn serve_object(
    id: u64,
    method: usize,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let object = KEPT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .cloned();
    match object {
        Some(object) => object.serve(method, input, out),
        None => {
            crate::wire::encode_outcome::<()>(
                &Err(CallError::failed(
                    "",
                    format!("its process keeps no object number {id} (it was restarted?)"),
                )),
                out,
            );
            Ok(())
        }
    }
}

/// Drops the kept object number `id`, in the plugin's code.
#[doc(hidden)]
pub fn drop_object(id: u64) {
    let object = KEPT.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    drop(object);
}

/// What a plugin's call to the application's callback unwinds with when
/// that callback panicked or could not be reached: the plugin's guard
/// reports it as [`RawErrorKind::Callback`](crate::abi::RawErrorKind), with
/// this message. The application sees its call fail (not panic: the plugin
/// did nothing wrong, and stays enabled); a plugin's object that called the
/// callback passes it on, unwinding its caller in turn.
#[doc(hidden)]
#[derive(Debug)]
pub struct CallbackFailed(pub String);

/// Unwinds the plugin's code from a call to the application's callback
/// `name` (`Trait::method`) that returned `error`: see [`CallbackFailed`].
/// A panic is said once, where it was first seen; a failure carries the
/// message it already has.
#[doc(hidden)]
#[cold]
#[inline(never)]
pub fn callback_failed(name: &str, error: &RawError) -> ! {
    let message = match error.kind() {
        crate::error::RawErrorKind::Panicked => format!(
            "the application's callback `{name}` panicked: {}",
            error.message()
        ),
        crate::error::RawErrorKind::Failed | crate::error::RawErrorKind::Callback => {
            error.message().to_owned()
        }
    };
    // Not `panic!`: no panic hook runs, nothing is printed; the guard of
    // the plugin's call catches it.
    std::panic::resume_unwind(Box::new(CallbackFailed(message)))
}

/// How a call to the application's callback failed, for a plugin that
/// calls one with [`try_callback`]: the callback panicked (the application
/// caught it and carries on), or, in an isolated plugin's process, the
/// host could not be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackError {
    message: String,
}

impl CallbackError {
    /// What failed, naming the callback.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CallbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CallbackError {}

/// Runs `f`, which calls the application's callbacks, and returns how a
/// callback failed instead of unwinding: for a plugin's own threads, which
/// no call's guard covers. Other panics go on unwinding.
///
/// A callback's method returns what its trait declares; when the
/// application's code panics, the plugin's code unwinds from the callback's
/// call. Inside a method of the interface, that ends the method's call,
/// which the application sees failed (the plugin stays enabled).
///
/// # Errors
///
/// [`CallbackError`]: a callback `f` called panicked in the application,
/// or could not be reached.
pub fn try_callback<T>(f: impl FnOnce() -> T) -> Result<T, CallbackError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(value) => Ok(value),
        Err(payload) => match payload.downcast::<CallbackFailed>() {
            Ok(failed) => Err(CallbackError { message: failed.0 }),
            Err(other) => std::panic::resume_unwind(other),
        },
    }
}

/// An error a method of an object trait returns as its message: how the
/// application's error reaches a plugin that calls the application's
/// object of that trait.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be made from an error's message",
    note = "a method of a `#[dropin::object]` trait that returns an error as its message \
            returns `dropin::BoxError`, `Box<dyn Error + Send + Sync>`, `Box<dyn Error + Send>`, \
            `Box<dyn Error>`, `String` or `std::io::Error`: the application may implement the \
            trait, and a plugin gets its error as a message"
)]
pub trait MessageError {
    /// The error that says `message`.
    fn from_message(message: String) -> Self;
}

impl MessageError for Box<dyn std::error::Error + Send + Sync> {
    fn from_message(message: String) -> Self {
        message.into()
    }
}

impl MessageError for Box<dyn std::error::Error + Send> {
    fn from_message(message: String) -> Self {
        let error: Box<dyn std::error::Error + Send + Sync> = message.into();
        error
    }
}

impl MessageError for Box<dyn std::error::Error> {
    fn from_message(message: String) -> Self {
        message.into()
    }
}

impl MessageError for String {
    fn from_message(message: String) -> Self {
        message
    }
}

impl MessageError for std::io::Error {
    fn from_message(message: String) -> Self {
        std::io::Error::other(message)
    }
}

/// The error `E` that says `message`.
#[doc(hidden)]
pub fn message_error<E: MessageError>(message: String) -> E {
    E::from_message(message)
}

/// `Box<dyn Trait>` of a `#[dropin::object]` trait: what the generated code
/// needs to pass the application's objects to a plugin (callbacks), in
/// either mode.
///
/// # Safety
///
/// Only the object macro implements it, with the trait's own method table.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an object of a `#[dropin::object]` trait",
    label = "the application's objects cross the plugin boundary as `&dyn Trait` or `Box<dyn Trait>`",
    note = "declare the trait in the interface crate with `#[dropin::object]`"
)]
pub unsafe trait ObjectBox: crate::Stable<Ffi = RawObject> + Sized {
    /// The descriptor of `&dyn Trait` as an argument, lent for the call:
    /// not the owned object's, so that a plugin that would keep what the
    /// application only lends is refused at load.
    const LENT: &'static crate::TypeDesc;

    /// An object lent for a call: `fat` points to a `*const dyn Trait`
    /// that outlives the call. Dropping what this returns drops nothing.
    fn lend(fat: *const c_void) -> RawObject;

    /// Serves a call from another process to the object `raw` (the
    /// application's own): decodes the arguments of method `method`,
    /// calls it, encodes the outcome as a service's.
    ///
    /// # Errors
    ///
    /// Arguments that do not decode, or no such method.
    fn serve_raw(
        raw: &RawObject,
        method: usize,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), WireError>;

    /// The object number `id` that the host keeps for this process (an
    /// isolated plugin's): its methods are calls over the channel to the
    /// host, and its drop, if `owned`, drops the host's object.
    fn remote(id: u64, owned: bool) -> Self;
}

/// How one trait's objects are served to another process
/// ([`ObjectBox::serve_raw`]).
type ServeRaw = fn(&RawObject, usize, &[u8], &mut Vec<u8>) -> Result<(), WireError>;

/// The application's object that the host keeps for an isolated plugin's
/// process, served by number.
#[doc(hidden)]
pub struct Served {
    raw: RawObject,
    lent: bool,
    serve: ServeRaw,
    /// Set when the object is released: an `async fn` of it being awaited
    /// is dropped, on the thread that serves it.
    cancelled: Arc<std::sync::atomic::AtomicBool>,
    serving: std::sync::Mutex<Option<std::thread::Thread>>,
}

impl Served {
    /// The application's object, owned by the host from now on.
    pub fn owned<B: ObjectBox>(object: B) -> Self {
        Self {
            raw: object.into_ffi(),
            lent: false,
            serve: B::serve_raw,
            cancelled: Arc::default(),
            serving: std::sync::Mutex::new(None),
        }
    }

    /// The application's object lent for a call: `fat` as
    /// [`ObjectBox::lend`] takes it.
    ///
    /// # Safety
    ///
    /// What `fat` points to must outlive this value.
    pub unsafe fn lent<B: ObjectBox>(fat: *const c_void) -> Self {
        Self {
            raw: B::lend(fat),
            lent: true,
            serve: B::serve_raw,
            cancelled: Arc::default(),
            serving: std::sync::Mutex::new(None),
        }
    }

    /// Whether the object is lent for a call, not given.
    pub fn is_lent(&self) -> bool {
        self.lent
    }

    /// Serves one call from the plugin's process.
    ///
    /// # Errors
    ///
    /// Arguments that do not decode, or no such method.
    pub fn serve(&self, method: usize, input: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
        *self.serving.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current());
        let served = crate::future::cancellable(Arc::clone(&self.cancelled), || {
            (self.serve)(&self.raw, method, input, out)
        });
        *self.serving.lock().unwrap_or_else(|e| e.into_inner()) = None;
        served
    }

    /// Gives up an `async fn` of the object being awaited for the plugin's
    /// process (the object is being released): the application's future is
    /// dropped, and its call fails. A synchronous method runs to its end.
    pub fn cancel(&self) {
        self.cancelled
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = &*self.serving.lock().unwrap_or_else(|e| e.into_inner()) {
            thread.unpark();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let RResult::RErr(error) = (self.raw.drop)(self.raw.this) {
            log::warn!(
                "dropping the application's callback panicked: {}",
                error.message()
            );
        }
    }
}

impl fmt::Debug for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Served").finish_non_exhaustive()
    }
}

/// What lends the application's objects to one call of an isolated
/// plugin, and takes them back when the call returns: a lent object is
/// no longer served after that, and its release waits for a call to it
/// that is being served.
#[doc(hidden)]
pub struct Lending<'a> {
    remote: &'a dyn Remote,
    lent: Vec<u64>,
    given: Vec<u64>,
}

impl<'a> Lending<'a> {
    /// Lends nothing yet, through `remote`.
    pub fn new(remote: &'a dyn Remote) -> Self {
        Self {
            remote,
            lent: Vec::new(),
            given: Vec::new(),
        }
    }

    /// After the call: objects given to a process that never got them
    /// (the plugin is disabled) or that ended (crashed, timed out) are
    /// dropped now.
    pub fn settle<T>(&mut self, result: &Result<T, CallError>) {
        use crate::CallErrorKind as K;
        if let Err(error) = result
            && matches!(error.kind(), K::Disabled | K::Crashed | K::TimedOut)
        {
            for id in self.given.drain(..) {
                self.remote.release_callback(id);
            }
        }
    }

    /// Lends the object `fat` points to for the call; its number.
    ///
    /// # Safety
    ///
    /// What `fat` points to must outlive this value.
    pub unsafe fn lend<B: ObjectBox>(&mut self, fat: *const c_void) -> u64 {
        // SAFETY: the caller's promise; this value releases it first.
        let id = self.remote.keep_callback(unsafe { Served::lent::<B>(fat) });
        self.lent.push(id);
        id
    }

    /// Gives the application's object to the plugin's process; its number.
    pub fn give<B: ObjectBox>(&mut self, object: B) -> u64 {
        let id = self.remote.keep_callback(Served::owned(object));
        self.given.push(id);
        id
    }
}

impl Drop for Lending<'_> {
    fn drop(&mut self) {
        for id in self.lent.drain(..) {
            self.remote.release_callback(id);
        }
    }
}

impl fmt::Debug for Lending<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lending").field("lent", &self.lent).finish()
    }
}

/// In an isolated plugin's process: how the application's objects, which
/// its host keeps, are reached (the channel its services use).
static CALLBACKS: std::sync::OnceLock<Box<dyn crate::services::ServiceClient>> =
    std::sync::OnceLock::new();

/// Sets how this process (an isolated plugin's) reaches the application's
/// objects that its host keeps; once.
#[doc(hidden)]
pub fn set_callback_client(client: Box<dyn crate::services::ServiceClient>) {
    let _ = CALLBACKS.set(client);
}

/// Calls method `method` of the application's object number `id`, which
/// the host keeps: the arguments `encode` writes go there, the answer is
/// decoded.
#[doc(hidden)]
pub fn call_callback<T: crate::wire::Decode + crate::Stable>(
    id: u64,
    method: usize,
    encode: impl FnOnce(&mut Vec<u8>),
) -> RResult<T::Ffi, RawError> {
    let Some(client) = CALLBACKS.get() else {
        return RResult::RErr(RawError::new(
            crate::error::RawErrorKind::Failed,
            "the host's objects cannot be reached from this process".to_owned(),
            None,
        ));
    };
    let mut args = Vec::new();
    encode(&mut args);
    match client.callback(id, method, args) {
        Ok(bytes) => crate::services::decode_service::<T>(&bytes),
        Err(why) => RResult::RErr(RawError::new(crate::error::RawErrorKind::Failed, why, None)),
    }
}

/// Tells the host that this process no longer holds the application's
/// object number `id`.
#[doc(hidden)]
pub fn drop_callback(id: u64) {
    if let Some(client) = CALLBACKS.get()
        && let Err(why) = client.drop_callback(id)
    {
        log::debug!("the host's object {id} was not dropped: {why}");
    }
}
