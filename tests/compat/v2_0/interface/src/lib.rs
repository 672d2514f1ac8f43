//! The stable-ABI contract between the greeter host and its plugins.
//!
//! A plugin is a `cdylib` that exports one root module, [`GreeterMod`], through
//! abi_stable. The host opens the library, lets abi_stable check that the
//! module's layout matches the one compiled into the host, checks the versions
//! recorded in it, and from then on calls the plugin through plain function
//! pointers: no serialisation, no process boundary.
//!
//! # Writing a plugin
//!
//! A plugin implements the plain Rust trait [`Greeter`] and invokes
//! [`export_plugin!`] once. It needs no `unsafe` and no abi_stable import:
//!
//! ```
//! use greeter_interface::{BoxError, Greeter, export_plugin};
//!
//! struct Hello;
//!
//! impl Greeter for Hello {
//!     fn init() -> Result<Self, BoxError> {
//!         Ok(Hello)
//!     }
//!
//!     fn greet(&self) -> Result<String, BoxError> {
//!         Ok("Hello!".to_owned())
//!     }
//! }
//!
//! export_plugin!(name = "hello", greeter = Hello);
//! # fn main() {}
//! ```
//!
//! with, in its `Cargo.toml`, `crate-type = ["cdylib"]` and a dependency on
//! this crate. The macro records the plugin's name, the plugin's version (its
//! package version) and the version of this crate it was built against;
//! it runs every call under `catch_unwind`, so a panic becomes a
//! [`GreetError`] naming the plugin instead of aborting the host; and it
//! forwards the plugin's `log` records to the host's logger.
//!
//! # Compatibility
//!
//! The contract is versioned with this crate's version ([`INTERFACE_VERSION`]).
//! The rules for changing it are written on the fields of [`GreeterMod`].

#![deny(missing_docs)]

mod error;
mod export;
mod logging;
mod module;

pub use error::{GreetError, GreetErrorKind};
pub use export::{BoxError, Greeter};
pub use logging::{LogLevel, LogRecord, LogSink};
pub use module::{GreeterMod, GreeterModRef, INTERFACE_VERSION};

/// The `log` crate this interface forwards from; plugins may log through it
/// (`greeter_interface::log::info!`) or through their own `log` 0.4 dependency.
pub use log;

/// What [`export_plugin!`] expands to refers to; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::export::PluginState;
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
    pub use abi_stable::prefix_type::PrefixTypeTrait;
    pub use abi_stable::std_types::{RResult, RStr, RString};
}
