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
    handle::PluginState,
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

/// What every object handle holds: the plugin's object and its plugin's
/// state, shared with the plugin's handle (a panic in an object disables
/// its plugin, and a disabled plugin's objects are not called).
pub struct Object {
    raw: RawObject,
    plugin: Arc<PluginState>,
}

impl Object {
    /// An object that the plugin of `plugin` returned in this process.
    #[doc(hidden)]
    pub fn local(raw: RawObject, plugin: &Arc<PluginState>) -> Self {
        Self {
            raw,
            plugin: Arc::clone(plugin),
        }
    }

    /// Its plugin's state, for the objects its methods return.
    #[doc(hidden)]
    pub fn plugin(&self) -> &Arc<PluginState> {
        &self.plugin
    }

    /// The object, for its method table's functions.
    #[doc(hidden)]
    pub fn this(&self) -> *const c_void {
        self.raw.this
    }

    /// The object's method table.
    ///
    /// # Safety
    ///
    /// `M` must be the table of the trait the object was made for.
    #[doc(hidden)]
    pub unsafe fn methods<M>(&self) -> &M {
        // SAFETY: the caller's contract; the table is a static.
        unsafe { &*self.raw.methods.cast::<M>() }
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
        if let RResult::RErr(error) = (self.raw.drop)(self.raw.this) {
            drop(self.plugin.failed(error));
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
