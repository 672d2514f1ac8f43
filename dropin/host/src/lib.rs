//! Finds dropin plugins in a folder, checks them, loads them and keeps them
//! in a registry, for any interface declared with `#[dropin::interface]`.
//!
//! A plugin is a dynamic library (`.so`, `.dylib`, `.dll`). A library runs
//! its own code as soon as it is opened and can never be safely unloaded, so
//! what is checked before, during and after loading is what this crate is
//! about. Each candidate file goes through these steps, in this order (the
//! repository's ARCHITECTURE.md names the module of each; SECURITY.md says
//! what each guarantees):
//!
//! 1. **Discover** ([`discover`]): the platform's library suffix, not hidden.
//! 2. **Open once**: one handle; a regular file, its owner and mode
//!    ([`check_permissions`]) and its size checked on that handle.
//! 3. **Private copy**: copied from the handle and hashed while copied;
//!    only the copy is checked and opened (or a verified copy kept from an
//!    earlier run, with [`LoaderBuilder::snapshot_cache`]).
//! 4. **Lock file** ([`Lockfile`]): an unlisted file or other bytes are
//!    refused before anything opens them.
//! 5. **Headers and tables** ([`VerifyError`]): what the dynamic loader
//!    would trust, read as data.
//! 6. **Probe** ([`probe`]): bytes the lock file does not approve are opened
//!    first in a child process, and what it read is judged before the host
//!    maps anything.
//! 7. **Map and check** ([`Loader`]): abi_stable's checks of dropin's root
//!    module, the interface and its versions, every method's signature, the
//!    host requirement, how it was built.
//! 8. **Initialise**: `init`, in the host or, isolated ([`isolation`]), in a
//!    process of the plugin's own.
//! 9. **Keep** ([`Registry`]): by name; a second plugin with a taken name is
//!    rejected. A [`Plugin`] dereferences to the interface's typed handle.
//!
//! Every file either loads or yields a [`LoadError`] that names it and says
//! what was expected and what was found; one bad file never stops the others.
//!
//! # In-process or isolated: who vouches
//!
//! A plugin that runs in the application's process can do anything the
//! process can, and no check makes its machine code memory-safe. So the
//! loader that runs plugins in-process comes from an `unsafe fn`,
//! [`LoaderBuilder::build`], whose `# Safety` contract is that the
//! application vouches for the files it lets run there; the checks above
//! narrow which files get that far. That is the one `unsafe` block of an
//! application: calls through a loaded plugin are safe. A loader from
//! [`LoaderBuilder::build_isolated`] runs every plugin in a process of its
//! own, where dropin contains what it does, and needs no `unsafe`.
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
//!     let builder = Loader::<TransformPlugin>::builder().dir("plugins");
//!     // SAFETY: the plugins in `plugins/` are our own builds, which we
//!     // trust to run in this process as our own code.
//!     let report = unsafe { builder.build() }.load()?;
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
pub use error::{LoadError, LoadErrorKind};
pub use exit_guard::PLUGIN_EXIT_STATUS;
pub use inspect::description::{
    DescriptionReadError, description_of, read_application, read_description,
};
pub use inspect::verify::{ObjectFormat, VerifyError};
pub use load::{Application, Judged, Plugin};
pub use loader::{
    CONFIG_FILE_NAME, ConfigFileError, DEFAULT_MAX_FILE_SIZE, DEFAULT_MAX_MAPPED,
    DEFAULT_MAX_RETAINED, Described, DescribedFile, Loader, LoaderBuilder, LoaderError, LockMode,
    MAX_CONFIG_SIZE, RESTART_BACKOFF, Recording, ReloadError, ReloadReport, Reloaded, Survey,
    describe_file, parse_duration, parse_size,
};
pub use registry::{Live, LoadReport, Registry, Retained};
pub use trust::{
    discover::{DiscoverError, discover},
    lockfile::{LOCKFILE_NAME, LockEntry, Lockfile, LockfileError},
    permissions::{PermissionError, Writers, check_permissions},
    source::is_deceptive,
    trusted_file::{TrustedFileError, read_trusted_text},
};
pub use watch::{DEFAULT_SETTLE, Watch, WatchError, WatchEvent};
