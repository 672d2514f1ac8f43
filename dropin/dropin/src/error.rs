//! Errors: what crosses the boundary when a plugin fails, and what the
//! application sees.

use std::{
    any::Any,
    fmt,
    panic::{AssertUnwindSafe, catch_unwind},
    ptr::NonNull,
};

use abi_stable::{StableAbi, std_types::RStr};

/// The error type a plugin's methods may return: anything that converts into
/// a boxed error, a `String` and a `&str` included.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a plugin call failed, as the plugin reports it.
///
/// Adding a variant is a breaking change of the framework's ABI: a host must
/// never receive a discriminant it does not know.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawErrorKind {
    /// The method returned an error.
    Failed,
    /// The method panicked; the panic was caught inside the plugin.
    Panicked,
    /// A callback of the application that the method called failed (the
    /// message says which, and how); the plugin did nothing wrong.
    Callback,
}

/// The error half of every method's result at the boundary: one pointer to
/// the plugin's allocation, which frees itself through the plugin's own code.
///
/// One pointer, so that a method's `RResult<T, RawError>` with a word-sized
/// `T` comes back in registers; no `RString` or `RBox`, whose vtables
/// abi_stable would check on every load (measured: a boxed error doubled
/// `load/plugin_x100`).
#[repr(transparent)]
#[derive(StableAbi)]
pub struct RawError(NonNull<RawErrorData>);

/// What a [`RawError`] points to.
#[doc(hidden)]
#[repr(C)]
#[derive(StableAbi)]
#[allow(missing_debug_implementations)]
pub struct RawErrorData {
    kind: RawErrorKind,
    // Borrowed from the allocation that holds this struct, until `free`.
    message: RStr<'static>,
    location: RStr<'static>,
    /// Frees the allocation, with the allocator of the library that made it.
    free: extern "C" fn(NonNull<RawErrorData>),
}

/// The allocation behind a [`RawError`], in the library that made it; the
/// data comes first so that a pointer to one is a pointer to the other.
#[repr(C)]
struct Owned {
    data: RawErrorData,
    message: Box<str>,
    location: Box<str>,
}

extern "C" fn free_owned(data: NonNull<RawErrorData>) {
    // SAFETY: `data` came from `RawError::new` in this library, which leaked
    // a `Box<Owned>` whose first field it points to; `RawError::drop` calls
    // this exactly once.
    drop(unsafe { Box::from_raw(data.cast::<Owned>().as_ptr()) });
}

impl RawError {
    /// An error of `kind`.
    pub fn new(kind: RawErrorKind, message: String, location: Option<String>) -> Self {
        let mut owned = Box::new(Owned {
            data: RawErrorData {
                kind,
                message: RStr::from_str(""),
                location: RStr::from_str(""),
                free: free_owned,
            },
            message: message.into_boxed_str(),
            location: location.unwrap_or_default().into_boxed_str(),
        });
        // SAFETY: the strings live on the heap, owned by the same allocation
        // as the struct that borrows them, until `free_owned` drops both;
        // the accessors never hand them out for longer than `&self`.
        unsafe {
            owned.data.message = RStr::from_raw_parts(owned.message.as_ptr(), owned.message.len());
            owned.data.location =
                RStr::from_raw_parts(owned.location.as_ptr(), owned.location.len());
        }
        Self(NonNull::from(Box::leak(owned)).cast())
    }

    fn data(&self) -> &RawErrorData {
        // SAFETY: the pointer is valid until `drop` frees it.
        unsafe { self.0.as_ref() }
    }

    /// Failed or panicked.
    pub fn kind(&self) -> RawErrorKind {
        self.data().kind
    }

    /// The error's message, or the panic's.
    pub fn message(&self) -> &str {
        self.data().message.as_str()
    }

    /// Where the panic happened (`src/lib.rs:10:5`); empty if unknown or not
    /// a panic.
    pub fn location(&self) -> &str {
        self.data().location.as_str()
    }
}

impl Drop for RawError {
    fn drop(&mut self) {
        (self.data().free)(self.0);
    }
}

impl fmt::Debug for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawError")
            .field("kind", &self.kind())
            .field("message", &self.message())
            .field("location", &self.location())
            .finish()
    }
}

// SAFETY: the error is immutable until it is freed, and freeing it from
// another thread is what every allocator supports.
unsafe impl Send for RawError {}
// SAFETY: as above: shared access only reads.
unsafe impl Sync for RawError {}

/// What kind of failure a [`CallError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallErrorKind {
    /// The plugin's method returned an error.
    Failed,
    /// The plugin's method panicked (the panic was caught inside the
    /// plugin). The plugin is disabled from then on.
    Panicked,
    /// The plugin panicked in an earlier call and is not called again.
    Disabled,
    /// The plugin was built against an earlier minor version of the
    /// interface, before the method existed.
    Missing,
    /// The plugin runs isolated in a process of its own, and that process
    /// ended during the call (a crash, an `abort`, an `exit`, a stack
    /// overflow) or earlier; the message says how.
    Crashed,
    /// The plugin runs isolated and did not answer within its call timeout;
    /// its process was killed.
    TimedOut,
}

/// Why a call into a plugin returned no result. It names the plugin.
///
/// One pointer wide, so that a method's `Result<T, CallError>` stays small on
/// the success path; the details are behind the accessors.
#[derive(Clone, PartialEq, Eq)]
pub struct CallError(Box<Details>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Details {
    kind: CallErrorKind,
    plugin: String,
    message: String,
    location: Option<String>,
    method: Option<(&'static str, &'static str, String)>,
}

impl CallError {
    pub(crate) fn failed(plugin: &str, message: String) -> Self {
        Self::new(CallErrorKind::Failed, plugin, message, None, None)
    }

    pub(crate) fn panicked(plugin: &str, message: String, location: Option<String>) -> Self {
        Self::new(CallErrorKind::Panicked, plugin, message, location, None)
    }

    pub(crate) fn disabled(plugin: &str, reason: String) -> Self {
        Self::new(CallErrorKind::Disabled, plugin, reason, None, None)
    }

    pub(crate) fn missing(
        plugin: &str,
        method: &'static str,
        since: &'static str,
        built_against: &str,
    ) -> Self {
        let message = format!(
            "has no method `{method}`: it was added in interface {since}, the plugin was \
             built against {built_against}"
        );
        let method = Some((method, since, built_against.to_owned()));
        Self::new(CallErrorKind::Missing, plugin, message, None, method)
    }

    /// An error of `kind` from its parts: how an isolated plugin's errors
    /// are rebuilt in the host.
    #[doc(hidden)]
    pub fn from_parts(
        kind: CallErrorKind,
        plugin: &str,
        message: String,
        location: Option<String>,
    ) -> Self {
        Self::new(kind, plugin, message, location, None)
    }

    fn new(
        kind: CallErrorKind,
        plugin: &str,
        message: String,
        location: Option<String>,
        method: Option<(&'static str, &'static str, String)>,
    ) -> Self {
        Self(Box::new(Details {
            kind,
            plugin: plugin.to_owned(),
            message,
            location,
            method,
        }))
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> CallErrorKind {
        self.0.kind
    }

    /// The name of the plugin that failed.
    pub fn plugin(&self) -> &str {
        &self.0.plugin
    }

    /// The plugin's error message ([`Failed`](CallErrorKind::Failed)), the
    /// panic's ([`Panicked`](CallErrorKind::Panicked)), the earlier panic
    /// ([`Disabled`](CallErrorKind::Disabled)), or what is missing.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Where the plugin panicked (`src/lib.rs:10:5`), if it did and the
    /// location is known.
    pub fn location(&self) -> Option<&str> {
        self.0.location.as_deref()
    }

    /// For [`Missing`](CallErrorKind::Missing): the method, the interface
    /// version that added it, and the one the plugin was built against.
    pub fn missing_method(&self) -> Option<(&'static str, &'static str, &str)> {
        self.0
            .method
            .as_ref()
            .map(|(method, since, built)| (*method, *since, built.as_str()))
    }
}

impl fmt::Debug for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Details {
            kind,
            plugin,
            message,
            location,
            ..
        } = &*self.0;
        match kind {
            CallErrorKind::Failed => write!(f, "plugin '{plugin}' failed: {message}"),
            // Where, as Rust's own panic message says it.
            CallErrorKind::Panicked => match location {
                Some(location) => write!(f, "plugin '{plugin}' panicked at {location}: {message}"),
                None => write!(f, "plugin '{plugin}' panicked: {message}"),
            },
            CallErrorKind::Disabled => write!(
                f,
                "plugin '{plugin}' is disabled after an earlier panic ({message})"
            ),
            CallErrorKind::Missing => write!(f, "plugin '{plugin}' {message}"),
            CallErrorKind::Crashed => write!(f, "plugin '{plugin}' crashed: {message}"),
            CallErrorKind::TimedOut => write!(f, "plugin '{plugin}' timed out: {message}"),
        }
    }
}

impl std::error::Error for CallError {}

/// The message of a caught panic's `payload`, which is dropped here:
/// dropping it may run another crate's code (its `Drop`), and a second panic
/// there is caught, its own payload leaked rather than dropped.
pub(crate) fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let message = catch_unwind(AssertUnwindSafe(|| {
        if let Some(message) = payload.downcast_ref::<&str>() {
            (*message).to_owned()
        } else if let Some(message) = payload.downcast_ref::<String>() {
            message.clone()
        } else {
            "panic with a non-string payload".to_owned()
        }
    }))
    .unwrap_or_else(|_| "panic with a message that could not be formatted".to_owned());
    if let Err(second) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(second);
    }
    message
}
