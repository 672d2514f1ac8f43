//! The hand-written plugin, as greeter plugins were written before dropin:
//! the plugin's state behind a `OnceLock`, every entry point under
//! `catch_unwind`.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::OnceLock,
};

use abi_stable::{
    export_root_module,
    prefix_type::PrefixTypeTrait,
    std_types::{RResult, RString},
};
use raw_interface::{RawMod, RawModRef};

struct Plugin;

impl Plugin {
    #[inline]
    fn noop(&self, x: u64) -> u64 {
        x
    }
}

static STATE: OnceLock<Plugin> = OnceLock::new();

#[inline]
fn guard<T>(f: impl FnOnce(&Plugin) -> T) -> RResult<T, RString> {
    match catch_unwind(AssertUnwindSafe(|| STATE.get().map(f))) {
        Ok(Some(value)) => RResult::ROk(value),
        Ok(None) => RResult::RErr(RString::from("called before init")),
        Err(_) => RResult::RErr(RString::from("panicked")),
    }
}

extern "C" fn noop(x: u64) -> RResult<u64, RString> {
    guard(|plugin| plugin.noop(x))
}

extern "C" fn greet() -> RResult<RString, RString> {
    guard(|_| RString::from("Hello!".to_owned()))
}

/// Exports the root module, with the plugin's state created.
#[export_root_module]
pub fn root_module() -> RawModRef {
    let _ = STATE.set(Plugin);
    RawMod { noop, greet }.leak_into_prefix()
}
