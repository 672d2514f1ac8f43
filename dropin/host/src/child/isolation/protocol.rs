//! What the host and an isolated process say to each other, each message
//! one frame ([`super::super::frame`]): the setup, the answer to it, saved
//! state.

use super::*;

/// What the host tells the child before anything else; on the wire, its
/// fields in order (the encoding `#[derive(dropin::Stable)]` gives).
#[derive(dropin::Stable)]
pub(super) struct Setup {
    pub(super) path: Vec<u8>,
    pub(super) copy: Vec<u8>,
    pub(super) config: String,
    /// The file `config` is from, as path bytes, if it is from one.
    pub(super) config_file: Option<Vec<u8>>,
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
    /// Whether the host put a channel at file descriptor 3: for the host's
    /// services, and the application's objects the plugin is passed.
    pub(super) channel: bool,
    /// What the file's description says of the plugin: its name, version
    /// and interface version, which the root module must say too before
    /// the plugin's `init` runs with what the host prepared for that name.
    pub(super) described_name: String,
    pub(super) described_version: String,
    pub(super) described_interface_version: String,
    /// How the memory shared for calls, at the descriptor after the
    /// channels, is laid out: how many slots, of how many bytes each.
    pub(super) slots: u32,
    pub(super) stride: u32,
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

/// What the host asks an isolated process, once it is set up: to call a
/// method of its plugin with encoded arguments, or for the state its
/// plugin saves for its next generation.
#[derive(dropin::Stable)]
pub(super) enum Request {
    Call {
        method: u32,
        args: Vec<u8>,
    },
    Save,
    /// A call to an object the process keeps, by number.
    Object {
        id: u64,
        method: u32,
        args: Vec<u8>,
    },
    /// The host dropped its handle to the object.
    DropObject {
        id: u64,
    },
}

/// A saved state on the wire: the version, then the bytes.
#[derive(dropin::Stable)]
pub(super) struct Saved {
    pub(super) version: u32,
    pub(super) bytes: Vec<u8>,
}

/// An isolated process's answer to the setup: its plugin is ready, or why
/// it is not.
#[derive(dropin::Stable)]
pub(super) enum Answer {
    Started(Ready),
    NotLoaded(NotLoaded),
}

/// What an isolated process asks its host over the channel at file
/// descriptor 3, one call at a time; each is answered with an outcome as a
/// service's (`dropin::abi::encode_service`).
#[derive(dropin::Stable)]
pub(super) enum Back {
    /// A call to the host's service number `method`.
    Service { method: u32, args: Vec<u8> },
    /// A call to the application's object number `id`, which the host
    /// keeps for this process.
    Callback { id: u64, method: u32, args: Vec<u8> },
    /// This process no longer holds the application's object number `id`.
    DropCallback { id: u64 },
}
