//! The error a plugin entry point returns.

use std::fmt;

use abi_stable::{StableAbi, std_types::RString};

/// Why a call into a plugin failed.
///
/// Adding a variant is a breaking change of the interface: a host must never
/// receive a discriminant it does not know.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GreetErrorKind {
    /// The plugin returned an error.
    Failed,
    /// The plugin panicked; the panic was caught inside the plugin.
    Panicked,
}

/// The error of every plugin entry point: what failed, in which plugin.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct GreetError {
    kind: GreetErrorKind,
    plugin: RString,
    message: RString,
}

impl GreetError {
    /// An error of `kind` in the plugin named `plugin`.
    pub fn new(kind: GreetErrorKind, plugin: &str, message: impl Into<RString>) -> Self {
        Self {
            kind,
            plugin: plugin.into(),
            message: message.into(),
        }
    }

    /// Whether the plugin failed or panicked.
    pub fn kind(&self) -> GreetErrorKind {
        self.kind
    }

    /// The name of the plugin that failed.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The plugin's error message, or the panic message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for GreetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            GreetErrorKind::Failed => "failed",
            GreetErrorKind::Panicked => "panicked",
        };
        write!(f, "plugin '{}' {what}: {}", self.plugin, self.message)
    }
}

impl std::error::Error for GreetError {}
