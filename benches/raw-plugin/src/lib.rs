//! The hand-written plugin: every entry point under `catch_unwind`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::{
    export_root_module,
    prefix_type::PrefixTypeTrait,
    std_types::{RResult, RString},
};
use raw_interface::{RawMod, RawModRef};

#[inline]
fn guard<T>(f: impl FnOnce() -> T) -> RResult<T, RString> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => RResult::ROk(value),
        Err(_) => RResult::RErr(RString::from("panicked")),
    }
}

extern "C" fn noop(x: u64) -> RResult<u64, RString> {
    guard(|| x)
}

extern "C" fn greet() -> RResult<RString, RString> {
    guard(|| RString::from("Hello!".to_owned()))
}

/// Exports the root module.
#[export_root_module]
pub fn root_module() -> RawModRef {
    RawMod { noop, greet }.leak_into_prefix()
}
