//! The no-op plugin.

use abi_stable::{export_root_module, prefix_type::PrefixTypeTrait, std_types::RStr};
use noop_interface::{INTERFACE_VERSION, NoopMod, NoopModRef};

extern "C" fn noop(x: u64) -> u64 {
    x
}

/// Exports the root module.
#[export_root_module]
pub fn root_module() -> NoopModRef {
    NoopMod {
        name: RStr::from_str("noop"),
        version: RStr::from_str(env!("CARGO_PKG_VERSION")),
        interface_version: RStr::from_str(INTERFACE_VERSION),
        noop,
    }
    .leak_into_prefix()
}
