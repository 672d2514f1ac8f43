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

pub mod abi;
#[cfg(feature = "config")]
mod config;
pub mod description;
mod error;
mod future;
mod guest;
mod handle;
mod logging;
mod module;
mod object;
mod services;
mod values;
pub mod wire;

/// Lets a struct or enum of an interface crate cross the plugin boundary.
///
/// The derive generates a `#[repr(C)]` mirror of the type whose fields are
/// their types' stable representations, the conversions both ways, and the
/// descriptor the host compares with its own before it binds a method that
/// uses the type. Every field must itself be [`Stable`](trait@Stable); generic
/// types, unions and enums without variants are refused.
///
/// ```
/// #[derive(Debug, PartialEq, dropin::Stable)]
/// pub struct Point {
///     pub x: f64,
///     pub label: Option<String>,
/// }
///
/// #[derive(Debug, PartialEq, dropin::Stable)]
/// pub enum Shape {
///     Dot(Point),
///     Segment { from: Point, to: Point },
///     Empty,
/// }
///
/// use dropin::Stable;
/// let shape = Shape::Dot(Point { x: 1.0, label: None });
/// assert_eq!(Shape::from_ffi(shape.into_ffi()), Shape::Dot(Point { x: 1.0, label: None }));
/// ```
///
/// Adding, removing, renaming or reordering a field or a variant changes the
/// descriptor: hosts refuse plugins built with the other version, so such a
/// change needs a new major version of the interface.
#[doc(inline)]
pub use dropin_macros::Stable;
pub use values::{FieldDesc, Stable, Text, TypeDesc, VariantDesc};

/// Declares a plugin interface on a trait.
///
/// ```
/// use dropin::BoxError;
///
/// /// Scores a text.
/// #[dropin::interface(name = "scorer", version = "1.1.0")]
/// pub trait Scorer: Send + Sync {
///     /// The score of `text`, from 0 to 100.
///     fn score(&self, text: &str) -> Result<u8, BoxError>;
///
///     /// Scores of several texts at once (added in 1.1).
///     #[since("1.1")]
///     fn scores(&self, texts: Vec<String>) -> Result<Vec<u8>, BoxError> {
///         texts.iter().map(|text| self.score(text)).collect()
///     }
/// }
///
/// # fn main() {
/// use dropin::Interface;
/// assert_eq!(ScorerPlugin::NAME, "scorer");
/// assert_eq!(ScorerPlugin::METHODS[1].since.as_str(), "1.1.0");
/// # }
/// ```
///
/// The attribute keeps the trait, adds a required
/// `fn init(context: &Context<'_>) -> Result<Self, BoxError> where Self: Sized`
/// to it, and generates beside it:
///
/// - `export_<trait>!` (`export_scorer!`), which a plugin invokes once at its
///   crate root: `export_scorer!(MyScorer)`, or with
///   `name = "...", version = "...", host = "..."` in that order. It exports
///   the root module, runs every method under the panic guard, installs the
///   log bridge and creates the plugin's state with `init`. A plugin name with
///   whitespace or a host requirement that is not semver fails to compile.
/// - `<Trait>Plugin` (`ScorerPlugin`), the application's typed handle: each
///   method of the trait, returning `Result<T, CallError>` (every `String` of
///   a result, alone or in an `Option`, a `Result`'s value, a `Vec`, a tuple,
///   an array or a map, comes back as a [`Text`]). It implements [`Interface`], which is what
///   `dropin_host::Loader` is generic over.
/// - a hidden module with the `extern "C"` side of every method.
///
/// **Options**: `name = "..."` (default: the crate's package name) is the
/// interface's name, checked at load and used in messages; `version = "..."`
/// (default: the crate's version) is the version plugins record.
///
/// **Methods** take `&self` and arguments of types that implement
/// [`Stable`](trait@Stable) (`&str`, `&[u8]`, `Option<&str>` and
/// `Option<&[u8]>` may be borrowed, as arguments only); they return such a type or nothing. A `Result<T, BoxError>`
/// (including aliases like `io::Result<T>`) sends its error's message: the
/// application gets a [`CallError`] of kind `Failed`. A `Result<T, E>` whose
/// `E` is `Stable` is a typed error: the application's handle returns it as
/// the value it is, inside the framework's own `Result` (`Result<Result<T,
/// E>, CallError>`), to match on. A method added in a
/// minor release goes after all earlier ones, with `#[since("1.1")]` and
/// usually a default body. Anything else is a compile error on the offending
/// tokens that says what to use instead.
///
/// **Where**: declare the trait at the root of its crate, or in a module the
/// root re-exports with `pub use module::*`: the export macro refers to the
/// hidden module through `$crate`.
#[doc(inline)]
pub use dropin_macros::interface;

/// Declares the services a host application offers its plugins, on a trait
/// in the interface crate, beside `#[dropin::interface]`:
///
/// ```
/// /// What a scoring host offers its scorers.
/// #[dropin::services]
/// pub trait ScoringHost: Send + Sync {
///     /// The weight the application gives `feature`.
///     fn weight(&self, feature: &str) -> Result<f64, dropin::BoxError>;
/// }
/// # fn main() {}
/// ```
///
/// The trait stays as written: the application implements it. Beside it:
///
/// - `<Trait>Handle` (`ScoringHostHandle`), the plugins' handle: each
///   service as a method returning `Result<T, ServiceError>`. A plugin gets
///   it in `init` with `context.services::<ScoringHostHandle>()` and may keep
///   it, clone it and call it from any thread.
/// - `ScoringHostHandle::provided_by(host)`, which turns the application's
///   implementation into the [`Services`] it hands to the loader
///   (`dropin_host::LoaderBuilder::services`).
///
/// Services follow the rules of interface methods: the same types, the same
/// `#[since("1.1")]` for services added in a minor release, appended after
/// the others. A plugin built against a newer minor that calls a service its
/// host lacks gets a [`ServiceError`] of kind
/// [`Missing`](ServiceErrorKind::Missing), never a crash. A service the
/// application implements runs on the calling plugin's thread (or, for an
/// isolated plugin, on a thread of the host that serves its process);
/// [`calling_plugin`] says which plugin called; a panic there is caught and
/// reaches the plugin as an error of kind
/// [`Panicked`](ServiceErrorKind::Panicked).
#[doc(inline)]
pub use dropin_macros::services;

#[cfg(feature = "config")]
pub use config::{ConfigError, ConfigErrorKind};
/// Declares a trait whose objects a plugin hands the application: a value
/// with methods and state of its own (a table, a session, a decoder).
///
/// ```
/// #[dropin::object]
/// pub trait Table: Send + Sync {
///     /// The value stored under `key`.
///     fn get(&self, key: &str) -> Option<String>;
/// }
///
/// #[dropin::interface(name = "store", version = "1.0.0")]
/// pub trait Store: Send + Sync {
///     /// Opens the table `name`.
///     fn open(&self, name: &str) -> Result<Box<dyn Table>, dropin::BoxError>;
/// }
/// # fn main() {}
/// ```
///
/// A method of an interface returns such an object as `Box<dyn Table>`
/// (alone, in an `Option`, or in a `Result`'s `Ok`). The application's handle
/// returns a `TableHandle` in its place, whose methods are the trait's,
/// each returning `Result<T, CallError>` like the plugin's; dropping it
/// drops the object, in the plugin's code. The object's methods follow the
/// rules of an interface's; a panic in one disables its plugin, and a
/// disabled plugin's objects are not called (nor dropped). The trait's
/// methods are part of the signature of every method that returns it: a
/// plugin built with another version of the trait is refused at load.
///
/// Isolated, the object stays in the plugin's process and the handle
/// refers to it by number; its drop reaches that process. An object lives
/// in the process that made it: after that process is restarted or a
/// reload replaces it, its handles fail, saying so; open the object again.
///
/// The application passes its own objects of such a trait to a plugin
/// (callbacks): an interface method that takes `&dyn Trait` borrows one for
/// the call, one that takes `Box<dyn Trait>` gives it to the plugin, which
/// may keep it and call it from its own threads. The plugin calls the
/// trait's methods as declared. A panic in the application's callback is
/// caught in the application: the plugin's code unwinds from the call to
/// the callback, and the plugin's method fails (see [`try_callback`] for a
/// plugin's own threads); the plugin stays enabled. Isolated, the host
/// keeps the callback by number for the plugin's process, whose calls to it
/// cross the channel host services use.
///
/// An object trait evolves like an interface: methods added in a later
/// minor version carry `#[since]`, and a call to one that an object made
/// with an earlier version lacks fails as `Missing`.
///
/// Not yet: objects inside collections, an object trait whose methods
/// return objects of itself (directly or through another), callbacks taken
/// by an object's methods.
///
/// An object trait's `async fn` is declared as `async fn` and becomes a
/// boxed future in the trait, which stays usable as `Box<dyn Trait>`; a
/// plugin implements it with `async fn` under `#[dropin::object]` on its
/// `impl` block, which boxes its futures the same way. The handle's method
/// returns a future (a [`PluginFuture`]).
#[doc(inline)]
pub use dropin_macros::object;
pub use error::{BoxError, CallError, CallErrorKind};
pub use future::PluginFuture;
pub use guest::{Context, SavedState};
pub use handle::{Interface, PluginCore};
pub use logging::log_target;
pub use module::MethodDesc;
pub use object::{CallbackError, Object, try_callback};
pub use services::{ServiceError, ServiceErrorKind, Services, ServicesHandle, calling_plugin};

/// The `log` crate plugins' records are forwarded from; a plugin may log
/// through it or through its own `log` 0.4 dependency.
pub use log;

/// What the macros expand to and what `dropin-host` builds on; not part of
/// the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::__export_plugin as export;
    pub use crate::error::{RawError, RawErrorKind};
    pub use crate::future::{
        Async, FfiFuture, FfiStart, FfiWaker, Foreign, RemoteAnswer, block_on, cancellable, extend,
        extend_option, into_ffi_future, start_ffi_future,
    };
    // Deprecated only to make a warning where a plugin names it.
    #[allow(deprecated)]
    pub use crate::guest::built_with_panic_abort;
    pub use crate::guest::{
        Exported, Exports, PluginCell, assert_host_requirement, assert_plugin_name, call,
        call_static, failed, guarded, init_extended, init_extended_v2, module, save,
    };
    pub use crate::handle::PluginState;
    pub use crate::handle::{Remote, dir_bytes as path_bytes, initialize, save_state};
    pub use crate::object::{
        CallbackFailed, Lending, MessageError, ObjectBox, RawObject, ServeObject, Served,
        call_callback, callback_failed, drop_callback, drop_object, keep_object, message_error,
        serve_object, set_callback_client,
    };
    pub use crate::services::{
        Caller, Provider, RawServices, Refusal, ServiceClient, ServicesCore, Shared,
        decode_service, encode_service, remote_service, serve_with, shared,
    };
    pub use crate::values::{items, lossy};
    pub use crate::wire::{decode_outcome, encode_outcome};
    pub use std::{boxed::Box, ffi::c_void, sync::Arc};

    /// What a remote handle's function pointers are set to: never called,
    /// since every method of such a handle goes through its `Remote` first.
    pub extern "C" fn trap() {
        std::process::abort();
    }
    pub use crate::module::{
        BuildInfo, EXTENSIONS_SYMBOL, EXTENSIONS_V2_SYMBOL, Extensions, ExtensionsV2, MethodEntry,
        ModuleRef,
    };
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
    pub use abi_stable::std_types::{ROption, RResult, RSlice, RStr};
    pub use core::mem::transmute;

    pub use crate::abi::DROPIN_VERSION;
    pub use crate::description::{
        APPLICATION_MAGIC, MAGIC as DESCRIPTION_MAGIC, Methods as DescribedMethods,
        Parts as DescriptionParts, encode as encode_description, encoded_len as description_len,
    };
}
