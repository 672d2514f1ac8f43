//! What the host and an isolated process say to each other, each message
//! one frame ([`super::super::frame`]): the setup, the answer to it, saved
//! state.

use dropin::{CallError, CallErrorKind, abi::Remote};

use super::*;

/// What the host tells the child before anything else; on the wire, its
/// fields in order (the encoding `#[derive(dropin::Stable)]` gives).
#[derive(dropin::Stable)]
pub(super) struct Setup {
    pub(super) path: Vec<u8>,
    pub(super) copy: Vec<u8>,
    pub(super) config: String,
    pub(super) accepted: String,
    pub(super) host_version: String,
    pub(super) allow_panic_abort: bool,
    pub(super) allow_executable_stack: bool,
    /// What the earlier generation saved, for the plugin's `init`.
    pub(super) previous: Option<Vec<u8>>,
    pub(super) previous_version: u32,
    /// The services the host serves on file descriptor 3, if any: their
    /// trait's name and the version of the interface crate, tab-separated.
    pub(super) services: Option<String>,
}

/// What the child answers once its plugin is loaded; on the wire, its
/// fields in order.
#[derive(dropin::Stable)]
pub(super) struct Ready {
    pub(super) name: String,
    pub(super) version: String,
    pub(super) interface_version: String,
    pub(super) host_requirement: String,
    pub(super) provided: u64,
    /// Whether the plugin's `init` received the state it was handed.
    pub(super) took_state: bool,
}

/// The method number that asks an isolated process for its plugin's saved
/// state; no interface has that many methods.
pub(super) const SAVE_METHOD: u32 = u32::MAX;

/// A saved state on the wire: the version, then the bytes.
#[derive(dropin::Stable)]
pub(super) struct Saved {
    pub(super) version: u32,
    pub(super) bytes: Vec<u8>,
}

/// What an isolated plugin saves for its next generation.
///
/// # Errors
///
/// The plugin's error, or how its process failed.
pub(crate) fn save_state(
    remote: &dyn Remote,
    plugin: &str,
) -> Result<Option<crate::load::Saved>, CallError> {
    let answer = remote.call(SAVE_METHOD as usize, Vec::new())?;
    let saved = message::<Option<Saved>>(&answer).map_err(|_| {
        CallError::from_parts(
            CallErrorKind::Failed,
            plugin,
            "its process sent a saved state that does not decode".to_owned(),
            None,
        )
    })?;
    Ok(saved.map(|Saved { version, bytes }| (version, bytes)))
}

/// An isolated process's answer to the setup: its plugin is ready, or why
/// it is not.
#[derive(dropin::Stable)]
pub(super) enum Answer {
    Started(Ready),
    NotLoaded(NotLoaded),
}
