//! The baseline of the `call` and `greet` benchmarks: the no-op and the
//! greeting written by hand against abi_stable, with the same guarantees the
//! generated code gives (a panic inside the plugin comes back as an error,
//! a plugin that panicked is not called again). This is how greeter plugins
//! were written before dropin.

use std::sync::OnceLock;

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RString},
};

/// The root module of a hand-written plugin.
#[repr(C)]
#[derive(StableAbi, Debug)]
#[sabi(kind(Prefix(prefix_ref = RawModRef)))]
pub struct RawMod {
    /// Returns its argument.
    pub noop: extern "C" fn(u64) -> RResult<u64, RString>,
    /// Returns `Hello!`.
    #[sabi(last_prefix_field)]
    pub greet: extern "C" fn() -> RResult<RString, RString>,
}

impl RootModule for RawModRef {
    declare_root_module_statics! {RawModRef}

    const BASE_NAME: &'static str = "raw";
    const NAME: &'static str = "raw";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The host's side: the module and whether the plugin panicked.
#[allow(missing_debug_implementations)]
pub struct RawPlugin {
    module: RawModRef,
    failure: OnceLock<String>,
}

impl RawPlugin {
    /// Wraps a loaded module.
    pub fn new(module: RawModRef) -> Self {
        Self {
            module,
            failure: OnceLock::new(),
        }
    }

    /// Calls `noop`.
    ///
    /// # Errors
    ///
    /// The plugin panicked, now or before.
    #[inline]
    pub fn noop(&self, x: u64) -> Result<u64, String> {
        self.call(|| (self.module.noop())(x))
    }

    /// Calls `greet`.
    ///
    /// # Errors
    ///
    /// The plugin panicked, now or before.
    #[inline]
    pub fn greet(&self) -> Result<RString, String> {
        self.call(|| (self.module.greet())())
    }

    #[inline]
    fn call<T>(&self, entry: impl FnOnce() -> RResult<T, RString>) -> Result<T, String> {
        if let Some(failure) = self.failure.get() {
            return Err(failure.clone());
        }
        match entry() {
            RResult::ROk(value) => Ok(value),
            RResult::RErr(error) => Err(self.failed(error)),
        }
    }

    #[cold]
    #[inline(never)]
    fn failed(&self, error: RString) -> String {
        let _ = self.failure.set(error.to_string());
        error.into_string()
    }
}
