//! Finds greeter plugins in a folder, checks them, loads them and calls them
//! in-process through a stable ABI.
//!
//! A plugin is a dynamic library (`.so`, `.dylib`, `.dll`) built against
//! [`greeter_interface`]. A library runs its own code as soon as it is opened
//! and can never be safely unloaded, so what is checked before, during and
//! after loading is what this crate is about. Each plugin goes through these
//! stages:
//!
//! 1. **Discovery** ([`discover`]): the candidate files of a folder: the
//!    platform's library suffix, not hidden.
//! 2. **Verification**: the file's permissions ([`check_permissions`]: only
//!    the host's user or root may write it); a private copy, hashed while it
//!    is made, which is what gets checked and opened, so the bytes cannot
//!    change in between; the hash against the folder's [`Lockfile`], if any;
//!    and the copy's object-file headers ([`verify_library`]): every segment
//!    must lie inside the file before the dynamic loader sees it (a truncated
//!    library would crash it).
//! 3. **Loading and version check** ([`Loader`]): abi_stable checks its own
//!    ABI, the interface's major version and the root module's full layout;
//!    then this crate applies its semver policy to the versions the plugin
//!    declares and lets the plugin initialise.
//! 4. **Registry** ([`Registry`]): loaded plugins by name; a second plugin
//!    with a taken name is rejected.
//! 5. **Calls** ([`GreeterPlugin::greet`]): a plain call through the root
//!    module's function pointer.
//!
//! Every file either loads or yields a [`LoadError`] that names it and says
//! what was expected and what was found; one bad file never stops the others.
//!
//! ```no_run
//! use greeter_host::{GreeterInterface, Loader};
//!
//! let report = Loader::<GreeterInterface>::builder().dir("plugins").build().load()?;
//! for plugin in report.registry.iter() {
//!     match plugin.greet() {
//!         Ok(greeting) => println!("{}: {greeting}", plugin.name()),
//!         Err(error) => eprintln!("{error}"),
//!     }
//! }
//! # Ok::<(), greeter_host::LoaderError>(())
//! ```
//!
//! The loader is generic: another interface crate reuses all of it by
//! implementing [`PluginInterface`] for a marker type.

#![deny(missing_docs)]

/// This crate's version: by default, the host version that plugins' host
/// requirements are matched against.
pub const HOST_VERSION: &str = env!("CARGO_PKG_VERSION");

mod chain;
mod discover;
mod greeter;
mod load;
mod lockfile;
mod permissions;
mod registry;
mod snapshot;
mod verify;

pub use chain::ErrorChain;
pub use discover::{DiscoverError, discover, is_candidate_name};
pub use greeter::{CallError, Capability, GreeterInterface, GreeterPlugin, log_target};
pub use load::{LoadError, Metadata, Plugin, PluginInterface, default_interface_req};
pub use lockfile::{LOCKFILE_NAME, LockEntry, Lockfile, LockfileError};
pub use permissions::{PermissionError, Writers, check_permissions};
pub use registry::{LoadReport, Loader, LoaderBuilder, LoaderError, LockMode, Registry};
pub use verify::{ObjectFormat, VerifyError, verify_library};
