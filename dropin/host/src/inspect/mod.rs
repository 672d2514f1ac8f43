//! Inspection: what the bytes of a private copy say, read as data before
//! the dynamic loader sees them. The object-file headers and tables the
//! loader would trust, a plugin's description, and which build of the host
//! is running.

pub(crate) mod build_id;
pub mod description;
pub mod verify;
