//! Trust: which files are candidates, and what is known of a file before
//! any of it runs. A candidate is opened once, its owner and mode checked on
//! the handle, copied into a private folder and hashed as it is copied,
//! compared with the lock file, and kept in the snapshot cache. Nothing of a
//! plugin runs in this layer.

pub(crate) mod cache;
pub mod discover;
pub mod lockfile;
pub mod permissions;
pub(crate) mod snapshot;
pub mod source;
pub mod trusted_file;
