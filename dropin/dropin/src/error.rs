//! Errors: what crosses the boundary when a plugin fails, and what the
//! application sees.

use std::fmt;

use abi_stable::{StableAbi, std_types::RString};

/// The error type a plugin's methods may return: anything that converts into
/// a boxed error, a `String` and a `&str` included.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a plugin call failed, as the plugin reports it.
///
/// Adding a variant is a breaking change of the framework's ABI: a host must
/// never receive a discriminant it does not know.
#[doc(hidden)]
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawErrorKind {
    /// The method returned an error.
    Failed,
    /// The method panicked; the panic was caught inside the plugin.
    Panicked,
}

/// The error half of every method's result at the boundary.
#[doc(hidden)]
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct RawError {
    /// Failed or panicked.
    pub kind: RawErrorKind,
    /// The error's message, or the panic's.
    pub message: RString,
    /// Where the panic happened (`src/lib.rs:10:5`); empty if unknown or not
    /// a panic.
    pub location: RString,
}

/// Why a call into a plugin returned no result.
///
/// Every variant names the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// The plugin's method returned an error.
    Failed {
        /// The plugin's name.
        plugin: String,
        /// The error's message.
        message: String,
    },
    /// The plugin's method panicked (the panic was caught inside the
    /// plugin). The plugin is disabled from then on.
    Panicked {
        /// The plugin's name.
        plugin: String,
        /// The panic's message.
        message: String,
        /// Where it panicked, if known (`src/lib.rs:10:5`).
        location: Option<String>,
    },
    /// The plugin panicked in an earlier call and is not called again.
    Disabled {
        /// The plugin's name.
        plugin: String,
        /// The earlier panic.
        reason: String,
    },
    /// The plugin was built against an earlier minor version of the
    /// interface, before the method existed.
    Missing {
        /// The plugin's name.
        plugin: String,
        /// The method's name.
        method: &'static str,
        /// The interface version that added it.
        since: &'static str,
        /// The interface version the plugin was built against.
        built_against: String,
    },
}

impl CallError {
    /// The name of the plugin that failed.
    pub fn plugin(&self) -> &str {
        match self {
            Self::Failed { plugin, .. }
            | Self::Panicked { plugin, .. }
            | Self::Disabled { plugin, .. }
            | Self::Missing { plugin, .. } => plugin,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed { plugin, message } => write!(f, "plugin '{plugin}' failed: {message}"),
            Self::Panicked {
                plugin, message, ..
            } => write!(f, "plugin '{plugin}' panicked: {message}"),
            Self::Disabled { plugin, reason } => write!(
                f,
                "plugin '{plugin}' is disabled after an earlier panic ({reason})"
            ),
            Self::Missing {
                plugin,
                method,
                since,
                built_against,
            } => write!(
                f,
                "plugin '{plugin}' has no method `{method}`: it was added in interface {since}, \
                 the plugin was built against {built_against}"
            ),
        }
    }
}

impl std::error::Error for CallError {}
