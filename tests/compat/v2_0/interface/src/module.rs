//! The root module: what a plugin exports and the host reads.

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr, RString},
};

use crate::{GreetError, LogLevel, LogSink};

/// The version of this interface crate, as recorded in every plugin built
/// against it (the [`GreeterMod::interface_version`] field).
pub const INTERFACE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The root module every greeter plugin exports.
///
/// This is an abi_stable prefix type: the host only ever sees it through
/// [`GreeterModRef`], a pointer to a `'static` instance inside the plugin.
///
/// # Rules for changing this type
///
/// - A **minor** release of this crate may only append fields after the last
///   one. A field appended later is not part of the prefix: the host reads it
///   through an accessor returning `Option`, `None` for plugins built before
///   it existed. Never mark a field `missing_field(panic)`.
/// - Everything else is a **major** release: removing, reordering or renaming
///   a field, changing a field's type or a function's signature, changing
///   [`GreetError`], [`LogRecord`](crate::LogRecord) or [`LogSink`], or
///   moving `last_prefix_field`.
/// - Types used by fields must themselves be `StableAbi` (`RString`, `RStr`,
///   `RResult`, ...): never `String`, `&str`, `Box` or `Vec`.
#[repr(C)]
#[derive(StableAbi, Debug)]
#[sabi(kind(Prefix(prefix_ref = GreeterModRef)))]
pub struct GreeterMod {
    /// The plugin's name: how users select it and how the host's registry
    /// keys it. One line, no whitespace. Part of the 1.0 prefix.
    pub name: RStr<'static>,

    /// The plugin's own version, a semver string (by default its package
    /// version). Part of the 1.0 prefix.
    pub version: RStr<'static>,

    /// The version of `greeter-interface` the plugin was built against, a
    /// semver string. The host checks it against its own version. Part of the
    /// 1.0 prefix.
    pub interface_version: RStr<'static>,

    /// Called by the host exactly once after loading and before any other
    /// function: installs the log bridge (records at or below `max_level` go
    /// to `sink`) and creates the plugin's state. An error here means the
    /// plugin must not be called. Part of the 1.0 prefix.
    pub init: extern "C" fn(sink: LogSink, max_level: LogLevel) -> RResult<(), GreetError>,

    /// Returns the plugin's greeting. Never unwinds: a panic inside the plugin
    /// comes back as a [`GreetError`] of kind
    /// [`Panicked`](crate::GreetErrorKind::Panicked).
    ///
    /// This is the last field of the 1.0 prefix: every plugin of any 1.x
    /// interface has it, so the host reads it without an `Option`. Fields of
    /// later minor versions go after it.
    #[sabi(last_prefix_field)]
    pub greet: extern "C" fn(loud: bool) -> RResult<RString, GreetError>,

    /// Added in 1.1: greets the person called `name`. Never unwinds.
    ///
    /// Not part of the prefix: the host reads it as `Option`, `None` for a
    /// plugin built against 1.0.
    pub greet_to: extern "C" fn(name: RStr<'_>) -> RResult<RString, GreetError>,

    /// Added in 1.1: the versions of the host the plugin supports, as a semver
    /// requirement (`">=0.2, <0.4"`); empty for any host. The host refuses the
    /// plugin, before initialising it, when its own version does not match.
    ///
    /// Not part of the prefix: `None` for a plugin built against 1.0, which
    /// supports any host.
    pub host_requirement: RStr<'static>,
}

impl RootModule for GreeterModRef {
    declare_root_module_statics! {GreeterModRef}

    const BASE_NAME: &'static str = "greeter";
    const NAME: &'static str = "greeter";
    // abi_stable refuses a library whose interface major differs from ours.
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
