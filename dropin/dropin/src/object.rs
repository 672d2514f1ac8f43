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
    /// The object: a `Box<dyn Trait>`, boxed again to be one pointer wide.
    pub this: *mut c_void,
    /// The trait's method table (a `#[repr(C)]` struct of functions).
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
    /// arguments `encode` writes go there, the answer is decoded.
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
        let result = remote.call_object(*id, method, args).and_then(|bytes| {
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
