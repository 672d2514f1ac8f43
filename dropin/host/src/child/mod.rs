//! Child processes: the probe, which opens a library the lock file does not
//! approve in a process of its own and says whether it survived, and isolation,
//! which runs a plugin in a process of its own and calls it there.

mod frame;
pub(crate) use frame::{deadline_in, exit_by};
pub mod isolation;
pub(crate) mod not_loaded;
pub mod probe;
pub(crate) mod role;
