//! What the host and an isolated process say to each other, each message
//! one frame ([`super::super::frame`]): the setup, the answer to it, saved
//! state.

use dropin::{CallError, CallErrorKind, abi::Remote};

use crate::{
    error::{LoadError, LoadErrorKind},
    load::Policy,
};

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

/// Why an isolated process did not load its plugin, as the kind of
/// [`LoadError`] the host reports for it: the checks and `init` that fail
/// in that process fail with the same kind, and the same words, as in the
/// host. The host's own values (its interface, versions and policy) are
/// the host's, not the child's: only what the child found crosses.
#[derive(dropin::Stable)]
pub(super) enum NotLoaded {
    Open {
        message: String,
    },
    NotAPlugin,
    AbiStable {
        detail: String,
    },
    IncompatibleInterface {
        found: String,
    },
    AnotherMajor {
        series: String,
        found: String,
    },
    Foreign {
        found: String,
        found_version: String,
    },
    DropinVersion {
        found: String,
    },
    Layout {
        found: String,
        summary: String,
    },
    WrongInterface {
        found: String,
        found_version: String,
    },
    Signature {
        found: String,
        detail: String,
    },
    PanicAbort {
        name: String,
    },
    NoLayout,
    UnsupportedHost {
        name: String,
        required: String,
    },
    InvalidMetadata {
        field: String,
        value: String,
        reason: String,
    },
    Init {
        message: String,
    },
    /// Anything else, in words (without the file's name).
    Other {
        reason: String,
    },
}

impl NotLoaded {
    /// What the child tells the host of `error`.
    pub(super) fn of(error: &LoadError) -> Self {
        use crate::LoadErrorKind as K;
        match error.kind() {
            K::Open { message } => Self::Open {
                message: message.clone(),
            },
            K::NotAPlugin { .. } => Self::NotAPlugin,
            K::AbiStable { detail } => Self::AbiStable {
                detail: detail.clone(),
            },
            K::IncompatibleInterface { found, .. } => Self::IncompatibleInterface {
                found: found.clone(),
            },
            K::AnotherMajor { series, found, .. } => Self::AnotherMajor {
                series: series.clone(),
                found: found.clone(),
            },
            K::Foreign {
                found,
                found_version,
                ..
            } => Self::Foreign {
                found: found.clone(),
                found_version: found_version.clone(),
            },
            K::DropinVersion { found, .. } => Self::DropinVersion {
                found: found.clone(),
            },
            K::Layout { found, summary, .. } => Self::Layout {
                found: found.clone(),
                summary: summary.clone(),
            },
            K::WrongInterface {
                found,
                found_version,
                ..
            } => Self::WrongInterface {
                found: found.clone(),
                found_version: found_version.clone(),
            },
            K::Signature { found, detail, .. } => Self::Signature {
                found: found.clone(),
                detail: detail.clone(),
            },
            K::PanicAbort { name } => Self::PanicAbort { name: name.clone() },
            K::NoLayout => Self::NoLayout,
            K::UnsupportedHost { name, required, .. } => Self::UnsupportedHost {
                name: name.clone(),
                required: required.to_string(),
            },
            K::InvalidMetadata {
                field,
                value,
                reason,
            } => Self::InvalidMetadata {
                field: (*field).to_owned(),
                value: value.clone(),
                reason: reason.clone(),
            },
            K::Init { message } => Self::Init {
                message: message.clone(),
            },
            other => Self::Other {
                reason: crate::ErrorChain(other).to_string(),
            },
        }
    }

    /// The kind of error the host reports for the file: the host's own
    /// values filled in from `I` and `policy`. What the child says that
    /// the host's kinds cannot hold (a requirement that does not parse, a
    /// field no check names) is reported in words.
    pub(super) fn into_kind<I: Interface>(self, policy: &Policy) -> LoadErrorKind {
        let host_major = semver::Version::parse(I::VERSION).map_or(0, |version| version.major);
        match self {
            Self::Open { message } => LoadErrorKind::Open { message },
            Self::NotAPlugin => LoadErrorKind::NotAPlugin {
                interface: I::NAME,
                export: I::EXPORT_MACRO,
            },
            Self::AbiStable { detail } => LoadErrorKind::AbiStable { detail },
            Self::IncompatibleInterface { found } => LoadErrorKind::IncompatibleInterface {
                interface: I::NAME,
                expected: policy.accepted.clone(),
                host: I::VERSION,
                found,
            },
            Self::AnotherMajor { series, found } => LoadErrorKind::AnotherMajor {
                interface: I::NAME,
                host: I::VERSION,
                series,
                found,
            },
            Self::Foreign {
                found,
                found_version,
            } => LoadErrorKind::Foreign {
                interface: I::NAME,
                host: I::VERSION,
                host_major,
                found,
                found_version,
            },
            Self::DropinVersion { found } => LoadErrorKind::DropinVersion {
                found,
                host: dropin::abi::DROPIN_VERSION,
            },
            Self::Layout { found, summary } => LoadErrorKind::Layout {
                host: dropin::abi::DROPIN_VERSION,
                found,
                summary,
            },
            Self::WrongInterface {
                found,
                found_version,
            } => LoadErrorKind::WrongInterface {
                expected: I::NAME,
                found,
                found_version,
            },
            Self::Signature { found, detail } => LoadErrorKind::Signature {
                interface: I::NAME,
                host: I::VERSION,
                found,
                detail,
            },
            Self::PanicAbort { name } => LoadErrorKind::PanicAbort { name },
            Self::NoLayout => LoadErrorKind::NoLayout,
            Self::UnsupportedHost { name, required } => match required.parse() {
                Ok(required) => LoadErrorKind::UnsupportedHost {
                    name,
                    required,
                    host: policy.host_version.clone(),
                },
                Err(_) => LoadErrorKind::Isolated {
                    reason: format!(
                        "plugin '{name}' requires a host matching {required:?}, which is not a \
                         version requirement"
                    ),
                },
            },
            Self::InvalidMetadata {
                field,
                value,
                reason,
            } => match crate::load::METADATA_FIELDS
                .iter()
                .find(|known| **known == field)
            {
                Some(field) => LoadErrorKind::InvalidMetadata {
                    field,
                    value,
                    reason,
                },
                None => LoadErrorKind::Isolated {
                    reason: format!("invalid {field} {value:?}: {reason}"),
                },
            },
            Self::Init { message } => LoadErrorKind::Init { message },
            Self::Other { reason } => LoadErrorKind::Isolated { reason },
        }
    }
}
