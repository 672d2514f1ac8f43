//! Stable-ABI plugins for Rust: declare a plugin interface as a trait, build
//! plugins as dynamic libraries, load them in an application and call them
//! in-process at the cost of a function call.
//!
//! # Core concepts
//!
//! - **Interface**: a Rust trait under [`#[dropin::interface]`](macro@interface),
//!   in a crate of its own that plugins and applications both depend on. The
//!   attribute generates everything that crosses the boundary: the method
//!   table of the root module, the plugin author's `export_<trait>!` macro,
//!   and the application's typed handle (`<Trait>Plugin`).
//! - **Plugin**: a `cdylib` that implements the trait and invokes the export
//!   macro. No `unsafe`, no ABI types: every method runs under
//!   `catch_unwind`, its `log` records reach the host's logger, and its state
//!   is created once by `init` from a [`Context`].
//! - **Version check**: every method records the interface version that added
//!   it and the descriptor of its signature ([`Stable`]). A host loads a
//!   plugin of the same interface major: one built against an earlier minor
//!   lacks the later methods (calling one is [`CallErrorKind::Missing`]), one
//!   built against a later minor has methods the host ignores, and a changed
//!   signature is refused before any call.
//! - **Loading**: the `dropin-host` crate finds plugin files in a folder,
//!   checks them, loads them and keeps them in a registry by name.
//! - **Calls**: the handle's methods return `Result<T, CallError>`; a panic
//!   in a plugin comes back as [`CallErrorKind::Panicked`] and disables it.
//!
//! # Example
//!
//! The interface crate (`Cargo.toml`: a dependency on `dropin`):
//!
//! ```
//! use dropin::BoxError;
//!
//! /// Turns text into other text.
//! #[dropin::interface]
//! pub trait Transform: Send + Sync {
//!     /// Transforms `text`.
//!     fn apply(&self, text: &str) -> Result<String, BoxError>;
//! }
//! # fn main() {}
//! ```
//!
//! A plugin crate (`crate-type = ["cdylib"]`, a dependency on the interface
//! crate only), here in the same file:
//!
//! ```
//! # use dropin::BoxError;
//! # #[dropin::interface]
//! # pub trait Transform: Send + Sync {
//! #     fn apply(&self, text: &str) -> Result<String, BoxError>;
//! # }
//! use dropin::Context;
//!
//! struct Upper;
//!
//! impl Transform for Upper {
//!     fn init(_: &Context<'_>) -> Result<Self, BoxError> {
//!         Ok(Upper)
//!     }
//!
//!     fn apply(&self, text: &str) -> Result<String, BoxError> {
//!         Ok(text.to_uppercase())
//!     }
//! }
//!
//! export_transform!(Upper, name = "upper");
//!
//! # fn main() {
//! let upper = Upper::init(&Context::new("upper", ".".as_ref(), "")).unwrap();
//! assert_eq!(upper.apply("shout").unwrap(), "SHOUT");
//! # }
//! ```
//!
//! An application loads them with `dropin_host::Loader::<TransformPlugin>`
//! and calls `plugin.apply("text")`, which returns
//! `Result<Text, CallError>`.

#![deny(missing_docs)]

mod abi;
mod error;
mod guest;
mod handle;
mod logging;
mod module;

pub use abi::{FieldDesc, Stable, Text, TypeDesc, VariantDesc};
pub use dropin_macros::{Stable, interface};
pub use error::{BoxError, CallError, CallErrorKind};
pub use guest::Context;
pub use handle::{Interface, PluginCore};
pub use logging::log_target;
pub use module::MethodDesc;

/// The `log` crate plugins' records are forwarded from; a plugin may log
/// through it or through its own `log` 0.4 dependency.
pub use log;

/// What the macros expand to and what `dropin-host` builds on; not part of
/// the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::__export_plugin as export;
    pub use crate::error::{RawError, RawErrorData, RawErrorKind};
    pub use crate::guest::{
        Exported, Exports, PluginCell, assert_host_requirement, assert_plugin_name, call, failed,
        module,
    };
    pub use crate::handle::initialize;
    pub use crate::module::{BuildInfo, InitArgs, MethodEntry, Module, ModuleRef};
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
    pub use abi_stable::std_types::{RResult, RSlice, RStr, RString};
    pub use core::mem::transmute;
    pub use core::option::Option;

    /// The version of this crate, which a plugin and its host must share
    /// (the loader refuses another major or minor).
    pub const DROPIN_VERSION: &str = env!("CARGO_PKG_VERSION");
}
