//! A plugin interface whose one function does nothing: the floor of what a
//! call into a plugin costs.

use abi_stable::{
    StableAbi, declare_root_module_statics, library::RootModule, package_version_strings,
    sabi_types::VersionStrings, std_types::RStr,
};

/// The root module of a no-op plugin.
#[repr(C)]
#[derive(StableAbi, Debug)]
#[sabi(kind(Prefix(prefix_ref = NoopModRef)))]
pub struct NoopMod {
    /// The plugin's name.
    pub name: RStr<'static>,
    /// The plugin's version.
    pub version: RStr<'static>,
    /// The version of this crate the plugin was built against.
    pub interface_version: RStr<'static>,
    /// Returns its argument.
    #[sabi(last_prefix_field)]
    pub noop: extern "C" fn(u64) -> u64,
}

impl RootModule for NoopModRef {
    declare_root_module_statics! {NoopModRef}

    const BASE_NAME: &'static str = "noop";
    const NAME: &'static str = "noop";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The version of this interface crate.
pub const INTERFACE_VERSION: &str = env!("CARGO_PKG_VERSION");
