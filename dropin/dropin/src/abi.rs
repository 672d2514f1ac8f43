//! The seam between the runtime and a host: what a loader reads from a
//! plugin's library, and what it exchanges with a plugin's code, in-process
//! or across a process boundary. Applications and plugins never need it.
//!
//! `dropin-host` builds on this module, and on a few methods of public types
//! that are hidden from the application's documentation because only a host
//! calls them: [`PluginCore`](crate::PluginCore)'s constructors and
//! `set_refusal`, [`Services`](crate::Services)' `table_for`, `caller_for`,
//! `serve` and `shared_remote`, and [`Interface`](crate::Interface)'s
//! `bind_remote` and `remote_services`. They belong here too; moving them is
//! the next step of this seam.
//!
//! It changes only with dropin's minor version, which a plugin and its host
//! must share: the loader refuses another (see [`DROPIN_VERSION`]).
//!
//! - The root module every plugin exports ([`ModuleRef`]), its method table
//!   ([`MethodEntry`], with each method's [`MethodDesc`](crate::MethodDesc))
//!   and the optional extensions found by [`EXTENSIONS_V2_SYMBOL`]
//!   ([`ExtensionsV2`]), or, in plugins built before it, by
//!   [`EXTENSIONS_SYMBOL`] ([`Extensions`]); [`ExtensionsRef`] is either.
//! - What a failed call carries across the boundary ([`RawError`],
//!   [`RawErrorKind`], in abi_stable's [`RResult`]).
//! - A plugin's handle to a process of its own ([`Remote`]), its `init` and
//!   saved state ([`initialize`], [`save_state`]), the host's services seen
//!   from either side ([`RawServices`], [`Caller`], [`Refusal`],
//!   [`ServiceClient`]), and the encodings a call and a service call cross a
//!   process boundary in ([`encode_outcome`], [`decode_outcome`],
//!   [`encode_service`]; values themselves in [`wire`](crate::wire)).

pub use abi_stable::std_types::RResult;

pub use crate::{
    error::{RawError, RawErrorKind},
    handle::{Remote, dir_bytes as path_bytes, initialize, save_state},
    module::{
        EXTENSIONS_SYMBOL, EXTENSIONS_V2_SYMBOL, Extensions, ExtensionsRef, ExtensionsV2,
        MethodEntry, ModuleRef,
    },
    services::{Caller, RawServices, Refusal, ServiceClient, encode_service},
    values::{items, lossy},
    wire::{decode_outcome, encode_outcome},
};

/// The version of this crate, which a plugin and its host must share (the
/// loader refuses another major or minor).
pub const DROPIN_VERSION: &str = env!("CARGO_PKG_VERSION");
