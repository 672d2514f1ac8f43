//! Finds dropin plugins in a folder, checks them, loads them and keeps them
//! in a registry, for any interface declared with `#[dropin::interface]`.
//!
//! A plugin is a dynamic library (`.so`, `.dylib`, `.dll`). A library runs
//! its own code as soon as it is opened and can never be safely unloaded, so
//! what is checked before, during and after loading is what this crate is
//! about. Each plugin goes through these stages:
//!
//! 1. **Discovery** ([`discover`]): the candidate files of a folder: the
//!    platform's library suffix, not hidden.
//! 2. **Verification**: the file's permissions ([`check_permissions`]: only
//!    the host's user or root may write it); a private copy, hashed while it
//!    is made, which is what gets checked and opened, so the bytes cannot
//!    change in between; the hash against the folder's [`Lockfile`], if any;
//!    and the copy's object-file headers ([`verify_library`]): every segment
//!    must lie inside the file before the dynamic loader sees it.
//! 3. **Loading and version check** ([`Loader`]): abi_stable checks dropin's
//!    root module; then the plugin's interface name and version, the
//!    signature of every method it shares with the host, its host
//!    requirement and how it was built; then it initialises.
//! 4. **Registry** ([`Registry`]): loaded plugins by name; a second plugin
//!    with a taken name is rejected.
//! 5. **Calls**: a [`Plugin`] dereferences to the interface's typed handle,
//!    whose methods call through function pointers.
//!
//! Every file either loads or yields a [`LoadError`] that names it and says
//! what was expected and what was found; one bad file never stops the others.
//!
//! # Example
//!
//! With an interface crate that declares `Transform` (see the `dropin`
//! crate), an application loads every plugin of a folder and calls them:
//!
//! ```no_run
//! # mod transform_interface {
//! #     #[dropin::interface]
//! #     pub trait Transform: Send + Sync {
//! #         fn apply(&self, text: &str) -> String;
//! #     }
//! # }
//! use dropin_host::{ErrorChain, Loader};
//! use transform_interface::TransformPlugin;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let report = Loader::<TransformPlugin>::builder().dir("plugins").build().load()?;
//!     for error in &report.rejected {
//!         eprintln!("rejected: {}", ErrorChain(error));
//!     }
//!     for plugin in report.registry.iter() {
//!         println!("{}: {}", plugin.name(), plugin.apply("hello")?);
//!     }
//!     Ok(())
//! }
//! ```

#![deny(missing_docs)]

// The layers are in ARCHITECTURE.md; a test holds the imports to them.
mod chain;
mod child;
mod digest;
mod ended;
mod error;
mod exit_guard;
mod inspect;
mod load;
mod loader;
mod registry;
mod sys;
mod trust;
mod watch;

pub use chain::ErrorChain;
pub use child::{isolation, probe};
pub use error::LoadError;
pub use exit_guard::PLUGIN_EXIT_STATUS;
pub use inspect::verify::{ObjectFormat, VerifyError, verify_library};
pub use load::{Plugin, default_interface_req};
pub use loader::{
    DEFAULT_MAX_FILE_SIZE, DEFAULT_MAX_MAPPED, DEFAULT_MAX_RETAINED, Loader, LoaderBuilder,
    LoaderError, LockMode, Recording, ReloadError, ReloadReport, Reloaded,
};
pub use registry::{Live, LoadReport, Registry, Retained};
pub use trust::{
    discover::{DiscoverError, discover, is_candidate_name},
    lockfile::{LOCKFILE_NAME, LockEntry, Lockfile, LockfileError},
    permissions::{PermissionError, Writers, check_permissions},
    source::is_deceptive,
};
pub use watch::{DEFAULT_SETTLE, Watch, WatchError, WatchEvent};
