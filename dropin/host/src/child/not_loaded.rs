//! Child-process layer: why a child process did not load a plugin (a probe,
//! or an isolated plugin's process), as the kind of [`LoadError`] the host
//! reports for it.

use dropin::Interface;

use crate::{
    error::{LoadError, LoadErrorKind},
    load::Policy,
};

/// The fields a description and a root module must agree on, in the order
/// [`agreement`] compares them.
pub(crate) const AGREED_FIELDS: [&str; 3] = ["plugin name", "plugin version", "interface version"];

/// The first field on which `described` (name, version, interface version)
/// and what `plugin`'s root module says differ, as the error kind; `None`
/// if they agree. The host and an isolated plugin's process both ask.
pub(crate) fn agreement<I: Interface>(
    described: [&str; 3],
    plugin: &crate::load::Plugin<I>,
) -> Option<LoadErrorKind> {
    let found = [
        plugin.name().to_owned(),
        plugin.version().to_string(),
        plugin.interface_version().to_string(),
    ];
    AGREED_FIELDS
        .iter()
        .zip(described.iter().zip(found))
        .find(|(_, (described, found))| *described != found)
        .map(|(field, (described, found))| LoadErrorKind::Disagrees {
            field,
            described: (*described).to_owned(),
            found,
        })
}

/// Why a child process did not load a plugin, as the kind of [`LoadError`]
/// the host reports for it: the checks and `init` that fail in that
/// process fail with the same kind, and the same words, as in the host. The host's own values (its interface, versions and policy) are
/// the host's, not the child's: only what the child found crosses.
#[derive(dropin::Stable, Debug, Clone)]
pub(crate) enum NotLoaded {
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
    Disagrees {
        field: String,
        described: String,
        found: String,
    },
    /// Anything else, in words (without the file's name).
    Other {
        reason: String,
    },
}

impl NotLoaded {
    /// What the child tells the host of `error`.
    pub(crate) fn of(error: &LoadError) -> Self {
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
            K::AnotherMajor { found, .. } => Self::AnotherMajor {
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
            K::Disagrees {
                field,
                described,
                found,
            } => Self::Disagrees {
                field: (*field).to_owned(),
                described: described.clone(),
                found: found.clone(),
            },
            other => Self::Other {
                reason: crate::ErrorChain(other).to_string(),
            },
        }
    }

    /// The kind of error the host reports for the file: the host's own
    /// values filled in from `I` and `policy`. What the child says in words
    /// ([`Self::Other`]), or that the host's kinds cannot hold (a
    /// requirement that does not parse, a field no check names), is the
    /// kind `other` makes of the words.
    pub(crate) fn into_kind<I: Interface>(
        self,
        policy: &Policy,
        other: fn(String) -> LoadErrorKind,
    ) -> LoadErrorKind {
        let host_major = semver::Version::parse(I::VERSION).map_or(0, |version| version.major);
        match self {
            Self::Open { message } => LoadErrorKind::Open { message },
            Self::NotAPlugin => LoadErrorKind::NotAPlugin {
                interface: I::NAME,
                export: I::EXPORT_MACRO,
            },
            Self::AbiStable { detail } => LoadErrorKind::AbiStable { detail },
            Self::IncompatibleInterface { found } => LoadErrorKind::IncompatibleInterface {
                interface: I::NAME.to_owned(),
                expected: policy.accepted.clone(),
                host: I::VERSION.to_owned(),
                found,
            },
            Self::AnotherMajor { found } => LoadErrorKind::AnotherMajor {
                interface: I::NAME.to_owned(),
                host: I::VERSION.to_owned(),
                series: crate::load::Side::of::<I>().series(),
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
                expected: I::NAME.to_owned(),
                found,
                found_version,
            },
            Self::Signature { found, detail } => LoadErrorKind::Signature {
                interface: I::NAME.to_owned(),
                host: I::VERSION.to_owned(),
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
                Err(_) => other(format!(
                    "plugin '{name}' requires a host matching {required:?}, which is not a \
                     version requirement"
                )),
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
                None => other(format!("invalid {field} {value:?}: {reason}")),
            },
            Self::Init { message } => LoadErrorKind::Init { message },
            Self::Disagrees {
                field,
                described,
                found,
            } => match AGREED_FIELDS.iter().find(|known| **known == field) {
                Some(field) => LoadErrorKind::Disagrees {
                    field,
                    described,
                    found,
                },
                None => other(format!(
                    "its description says {field} {described:?}, but its root module says \
                     {found:?}"
                )),
            },
            Self::Other { reason } => other(reason),
        }
    }
}
