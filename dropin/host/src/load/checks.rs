//! The checks of a mapped library and of what a probe read: the root
//! module, the interface and its versions, every method's signature, the
//! host requirement, names; and the one-line messages they give.

use std::path::Path;

use abi_stable::library::{LibHeader, LibraryError, RootModuleError};
use dropin::{Interface, abi::lossy};
use semver::{Version, VersionReq};

use crate::{
    error::{LoadError, LoadErrorKind},
    inspect::verify::{VerifyError, verify_library},
};

use super::*;

/// The target of this module's log records: the module it was split from,
/// which `RUST_LOG` filters name.
const LOG_TARGET: &str = "dropin_host::load";

/// Checks the object headers of `copy`, the private snapshot of `path`.
///
/// # Errors
///
/// [`LoadErrorKind::InvalidLibrary`] with what is wrong; an executable stack
/// only if the policy does not allow it.
pub(crate) fn verify(path: &Path, copy: &Path, policy: &Policy) -> Result<(), LoadError> {
    judge_headers(path, verify_library(copy), policy)
}

/// What [`verify_library`] `found` in the private snapshot of `path` means
/// under `policy`.
pub(crate) fn judge_headers(
    path: &Path,
    found: Result<(), VerifyError>,
    policy: &Policy,
) -> Result<(), LoadError> {
    match found {
        Ok(()) => Ok(()),
        Err(VerifyError::ExecutableStack) if policy.allow_executable_stack => Ok(()),
        Err(source) => Err(LoadErrorKind::InvalidLibrary { source }.at(path.to_owned())),
    }
}

/// What a dropin root module says about a plugin, as bytes: read by the
/// host from a module it opened, or reported by a probe process that opened
/// the library (a corrupted library could hold any bytes in either case).
pub(crate) struct Facts<'a> {
    pub(crate) plugin_name: &'a [u8],
    pub(crate) plugin_version: &'a [u8],
    pub(crate) interface_name: &'a [u8],
    pub(crate) interface_version: &'a [u8],
    pub(crate) host_requirement: &'a [u8],
    pub(crate) panic_abort: bool,
}

/// [`Facts`] that passed the host's policy.
pub(crate) struct Checked<'a> {
    pub(crate) name: &'a str,
    pub(crate) version: Version,
    pub(crate) interface_version: Version,
    pub(crate) declared_interface: &'a str,
    pub(crate) host_requirement: Option<VersionReq>,
}

/// Whether an abi_stable root module named `name`, of `version`, with or
/// without a layout, can be a dropin plugin for this host.
///
/// # Errors
///
/// [`LoadErrorKind::Foreign`], [`LoadErrorKind::DropinVersion`] or
/// [`LoadErrorKind::NoLayout`].
pub(crate) fn check_root<I: Interface>(
    path: &Path,
    name: &[u8],
    version: &[u8],
    has_layout: bool,
) -> Result<(), LoadError> {
    let found = String::from_utf8_lossy(version).into_owned();
    if name != b"dropin" {
        let host = Version::parse(I::VERSION).map_or(0, |version| version.major);
        return Err(LoadErrorKind::Foreign {
            interface: I::NAME,
            host: I::VERSION,
            host_major: host,
            found: String::from_utf8_lossy(name).into_owned(),
            found_version: found,
        }
        .at(path.to_owned()));
    }
    // abi_stable refuses an older dropin minor but not a newer one; the
    // method table and `init` are opaque to its layout check, so only the
    // same major and minor may load.
    if !same_minor(&found, dropin::abi::DROPIN_VERSION) {
        return Err(LoadErrorKind::DropinVersion {
            found,
            host: dropin::abi::DROPIN_VERSION,
        }
        .at(path.to_owned()));
    }
    if !has_layout {
        // abi_stable would skip its layout check for such a library.
        return Err(LoadErrorKind::NoLayout.at(path.to_owned()));
    }
    Ok(())
}

/// The application's side of an interface, as the checks of a plugin's
/// facts and methods need it: this build's interface (`Side::of`), or the
/// one an application's description names, read from its executable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Side<'a> {
    /// The interface's name.
    pub(crate) name: &'a str,
    /// Its version, as the application was built with it.
    pub(crate) version: &'a str,
    /// The macro a plugin exports itself with.
    pub(crate) export: &'a str,
    /// Its methods, in declaration order.
    pub(crate) methods: SideMethods<'a>,
    /// How many of them, from the first, every plugin must have.
    pub(crate) required: usize,
}

/// The methods of a [`Side`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum SideMethods<'a> {
    /// This build's descriptors.
    Built(&'static [dropin::MethodDesc]),
    /// As a description lists them.
    Described(&'a [dropin::description::Method]),
}

impl Side<'static> {
    /// The interface `I` as this build has it.
    pub(crate) fn of<I: Interface>() -> Self {
        Self {
            name: I::NAME,
            version: I::VERSION,
            export: I::EXPORT_MACRO,
            methods: SideMethods::Built(I::METHODS),
            required: I::REQUIRED,
        }
    }
}

impl Side<'_> {
    fn method_count(&self) -> usize {
        match self.methods {
            SideMethods::Built(methods) => methods.len(),
            SideMethods::Described(methods) => methods.len(),
        }
    }

    /// Method `i`, as a description has it.
    fn method(&self, i: usize) -> Option<std::borrow::Cow<'_, dropin::description::Method>> {
        use std::borrow::Cow;
        match self.methods {
            SideMethods::Built(methods) => methods
                .get(i)
                .map(|desc| Cow::Owned(dropin::description::Method::of(desc))),
            SideMethods::Described(methods) => methods.get(i).map(Cow::Borrowed),
        }
    }

    /// The versions that may load beside this side's, such as `2.x` or
    /// `0.3.x`.
    pub(crate) fn series(&self) -> String {
        match Version::parse(self.version) {
            Ok(host) if host.major == 0 => format!("0.{}.x", host.minor),
            Ok(host) => format!("{}.x", host.major),
            Err(_) => self.version.to_owned(),
        }
    }
}

/// The fields [`check_facts`] names in a
/// [`LoadErrorKind::InvalidMetadata`].
pub(crate) const METADATA_FIELDS: [&str; 5] = [
    "plugin name",
    "interface name",
    "interface version",
    "plugin version",
    "host requirement",
];

/// Checks what a plugin says about itself against the host's policy: a
/// valid name, this host's interface, versions it accepts, a host
/// requirement this host meets, and how it was built. The method signatures
/// are checked apart, where the method table is at hand.
///
/// # Errors
///
/// The [`LoadError`] of the first check that fails.
pub(crate) fn check_facts<'a>(
    side: &Side<'_>,
    path: &Path,
    facts: &Facts<'a>,
    policy: &Policy,
) -> Result<Checked<'a>, LoadError> {
    let invalid = |field, value: &str, reason: String| {
        LoadErrorKind::InvalidMetadata {
            field,
            value: value.to_owned(),
            reason,
        }
        .at(path.to_owned())
    };
    // The plugin's strings are checked to be UTF-8 before any is used as a
    // `str`.
    let text = |field, value: &'a [u8]| {
        std::str::from_utf8(value).map_err(|e| {
            invalid(
                field,
                &String::from_utf8_lossy(value),
                format!("expected UTF-8: {e}"),
            )
        })
    };
    let name = text("plugin name", facts.plugin_name)?;
    check_name(name).map_err(|reason| invalid("plugin name", name, reason))?;
    let interface_name = text("interface name", facts.interface_name)?;
    let declared_interface = text("interface version", facts.interface_version)?;
    if interface_name != side.name {
        return Err(LoadErrorKind::WrongInterface {
            expected: side.name.to_owned(),
            found: interface_name.to_owned(),
            found_version: declared_interface.to_owned(),
        }
        .at(path.to_owned()));
    }
    let version = text("plugin version", facts.plugin_version)?;
    let version = Version::parse(version)
        .map_err(|e| invalid("plugin version", version, format!("expected semver: {e}")))?;
    let interface_version = Version::parse(declared_interface).map_err(|e| {
        invalid(
            "interface version",
            declared_interface,
            format!("expected semver: {e}"),
        )
    })?;
    if let Ok(host) = Version::parse(side.version)
        && !same_series(&host, &interface_version)
    {
        return Err(LoadErrorKind::AnotherMajor {
            interface: side.name.to_owned(),
            host: side.version.to_owned(),
            series: side.series(),
            found: interface_version.to_string(),
        }
        .at(path.to_owned()));
    }
    if !policy.accepted.matches(&interface_version) {
        return Err(LoadErrorKind::IncompatibleInterface {
            interface: side.name.to_owned(),
            expected: policy.accepted.clone(),
            host: side.version.to_owned(),
            found: interface_version.to_string(),
        }
        .at(path.to_owned()));
    }
    let requirement = text("host requirement", facts.host_requirement)?;
    let host_requirement = match requirement.trim() {
        "" => None,
        requirement => Some(VersionReq::parse(requirement).map_err(|e| {
            invalid(
                "host requirement",
                requirement,
                format!("expected a semver requirement: {e}"),
            )
        })?),
    };
    if let Some(required) = &host_requirement
        && !required.matches(&policy.host_version)
    {
        return Err(LoadErrorKind::UnsupportedHost {
            name: name.to_owned(),
            required: required.clone(),
            host: policy.host_version.clone(),
        }
        .at(path.to_owned()));
    }
    if facts.panic_abort && !policy.allow_panic_abort {
        return Err(LoadErrorKind::PanicAbort {
            name: name.to_owned(),
        }
        .at(path.to_owned()));
    }
    Ok(Checked {
        name,
        version,
        interface_version,
        declared_interface,
        host_requirement,
    })
}

/// Compares the plugin's method table with the host's: every method both
/// know must have the same name and signature, and the plugin must have
/// every method of the interface version it declares. Methods only the host
/// knows are missing from the plugin; methods only the plugin knows are never
/// called.
pub(crate) fn check_methods(
    side: &Side<'_>,
    methods: &[dropin::description::Method],
    interface_version: &Version,
) -> Result<(), String> {
    for (i, found) in methods.iter().enumerate().take(side.method_count()) {
        let expected = side.method(i).expect("within the side's methods");
        if let Some(difference) = expected.difference(found) {
            return Err(difference);
        }
    }
    if let Some(missing) = side.method(methods.len())
        && (methods.len() < side.required
            || Version::parse(&missing.since).is_ok_and(|since| since <= *interface_version))
    {
        return Err(format!(
            "it declares interface {interface_version} but lacks method `{}`, added in {}",
            missing.name, missing.since
        ));
    }
    Ok(())
}

/// A plugin's `description`, read from the file at `path`, judged against
/// `side` under `policy`, as data: its facts, then every method's
/// signature. Nothing of the plugin runs.
pub(crate) fn judge_description<'a>(
    side: &Side<'_>,
    path: &Path,
    description: &'a dropin::description::Description,
    policy: &Policy,
) -> Result<Checked<'a>, LoadError> {
    let facts = Facts {
        plugin_name: description.plugin_name.as_bytes(),
        plugin_version: description.plugin_version.as_bytes(),
        interface_name: description.interface_name.as_bytes(),
        interface_version: description.interface_version.as_bytes(),
        host_requirement: description.host_requirement.as_bytes(),
        panic_abort: description.panic_abort,
    };
    let checked = check_facts(side, path, &facts, policy)?;
    check_methods(side, &description.methods, &checked.interface_version)
        .map_err(|detail| signature_error(side, path, &checked.interface_version, detail))?;
    Ok(checked)
}

/// Why the file at `path` is not a plugin of `side`'s interface, when what
/// reading its description found is `error`.
pub(crate) fn unreadable_description(
    side: &Side<'_>,
    path: &Path,
    error: crate::inspect::description::DescriptionReadError,
) -> LoadError {
    match error {
        crate::inspect::description::DescriptionReadError::Missing => {
            LoadErrorKind::NoDescription {
                interface: side.name.to_owned(),
                export: side.export.to_owned(),
            }
        }
        source => LoadErrorKind::InvalidDescription { source },
    }
    .at(path.to_owned())
}

/// A [`check_methods`] failure as the error it is for `path`.
pub(crate) fn signature_error(
    side: &Side<'_>,
    path: &Path,
    interface_version: &Version,
    detail: String,
) -> LoadError {
    LoadErrorKind::Signature {
        interface: side.name.to_owned(),
        host: side.version.to_owned(),
        found: interface_version.to_string(),
        detail,
    }
    .at(path.to_owned())
}

/// Whether two versions are of one compatible series: the same major, and
/// for 0.x the same minor too.
pub(super) fn same_series(a: &Version, b: &Version) -> bool {
    a.major == b.major && (a.major != 0 || a.minor == b.minor)
}

/// Whether two versions have the same major and minor.
pub(crate) fn same_minor(a: &str, b: &str) -> bool {
    match (Version::parse(a), Version::parse(b)) {
        (Ok(a), Ok(b)) => a.major == b.major && a.minor == b.minor,
        _ => false,
    }
}

pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("expected a non-empty name".to_owned());
    }
    if name.len() > 64 {
        return Err(format!("expected at most 64 bytes, found {}", name.len()));
    }
    // Names are printed and typed by people: nothing that hides, reorders
    // or moves text may be in one.
    if name
        .chars()
        .any(|c| c.is_whitespace() || crate::trust::source::is_deceptive(c))
    {
        return Err(
            "expected no whitespace, control, bidirectional or zero-width characters".to_owned(),
        );
    }
    Ok(())
}

/// The [`LoadError`] for what abi_stable reported about `copy`, the private
/// snapshot of `path`; `interface` and its export macro are named when the
/// library has no root module.
pub(crate) fn classify(
    path: &Path,
    copy: &Path,
    header: Option<&LibHeader>,
    error: LibraryError,
    (interface, export): (&'static str, &'static str),
) -> LoadError {
    let path = path.to_owned();
    let found = || {
        header.map_or_else(
            || "an unknown version".to_owned(),
            |header| lossy(&header.version_strings().version).into_owned(),
        )
    };
    match error {
        LibraryError::OpenError { err, .. } => LoadErrorKind::Open {
            // The loader's message names the private copy; users know the
            // original.
            message: clean(err.to_string())
                .replace(&*copy.to_string_lossy(), &path.to_string_lossy()),
        }
        .at(path),
        LibraryError::GetSymbolError { .. } => {
            LoadErrorKind::NotAPlugin { interface, export }.at(path)
        }
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => LoadErrorKind::Layout {
            host: dropin::abi::DROPIN_VERSION,
            found: actual_version.to_string(),
            summary: "built with an incompatible release of dropin".to_owned(),
        }
        .at(path),
        LibraryError::AbiInstability(report) => {
            let report = clean(report.to_string());
            log::debug!(target: LOG_TARGET, "{}: full layout report:\n{report}", path.display());
            LoadErrorKind::Layout {
                host: dropin::abi::DROPIN_VERSION,
                found: found(),
                summary: summarize_layout_report(&report),
            }
            .at(path)
        }
        LibraryError::RootModule { err, .. } => LoadErrorKind::Init {
            message: match err {
                RootModuleError::Returned(error) => clean(error.to_string()),
                RootModuleError::Unwound => "the root module constructor panicked".to_owned(),
            },
        }
        .at(path),
        other => LoadErrorKind::AbiStable {
            detail: one_line(&clean(other.to_string())),
        }
        .at(path),
    }
}

/// abi_stable's layout report runs to hundreds of lines. What differs is in
/// its `Error:` entries, each optionally followed by `Expected:` and `Found:`
/// headers with the value on the next lines. A changed field type shows up as
/// an entry naming the field (`field_name:version`), then a "mismatched type"
/// entry naming the types: they are merged into one, listed first.
pub(super) fn summarize_layout_report(report: &str) -> String {
    const SHOWN: usize = 2;
    #[derive(Default)]
    struct Entry<'a> {
        error: &'a str,
        expected: Option<&'a str>,
        found: Option<&'a str>,
    }
    let mut entries: Vec<Entry<'_>> = Vec::new();
    let mut lines = report
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    while let Some(line) = lines.next() {
        if let Some(error) = line.strip_prefix("Error:") {
            entries.push(Entry {
                error: error.trim(),
                ..Entry::default()
            });
        } else if let Some(entry) = entries.last_mut() {
            match line {
                "Expected:" => entry.expected = lines.next(),
                "Found:" => entry.found = lines.next(),
                _ => {}
            }
        }
    }
    let mut field = None;
    let mut first = Vec::new();
    let mut rest = Vec::new();
    for entry in &entries {
        if let Some(name) = entry
            .expected
            .and_then(|value| value.strip_prefix("field_name:"))
        {
            field = Some(name);
            if entry.error == "field references different lifetimes" {
                continue;
            }
        }
        let mut text = entry.error.to_owned();
        if let Some(expected) = entry.expected {
            text.push_str(&format!(": expected {expected}"));
        }
        if let Some(found) = entry.found {
            text.push_str(&format!(", found {found}"));
        }
        match (entry.error, field) {
            ("mismatched type", Some(name)) => first.push(format!("field `{name}`: {text}")),
            _ => rest.push(text),
        }
    }
    first.append(&mut rest);
    if first.is_empty() {
        return one_line(report);
    }
    let mut summary = first[..first.len().min(SHOWN)].join("; ");
    if first.len() > SHOWN {
        summary.push_str(&format!(" (and {} more)", first.len() - SHOWN));
    }
    summary
}

/// abi_stable's messages quote names from the library's own layout, which
/// a corrupted library fills with any bytes: they are made valid UTF-8
/// before anything else looks at them.
pub(super) fn clean(text: String) -> String {
    match String::from_utf8_lossy(text.as_bytes()) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(cleaned) => cleaned,
    }
}

pub(super) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_accepts_its_own_major_only() {
        let req = default_interface_req(&Version::new(1, 1, 0));
        for ok in ["1.0.0", "1.1.0", "1.2.3"] {
            assert!(req.matches(&Version::parse(ok).unwrap()), "{ok}");
        }
        for bad in ["0.9.0", "2.0.0"] {
            assert!(!req.matches(&Version::parse(bad).unwrap()), "{bad}");
        }
        let req = default_interface_req(&Version::new(0, 3, 1));
        assert!(req.matches(&Version::new(0, 3, 0)));
        assert!(!req.matches(&Version::new(0, 4, 0)));
    }

    #[test]
    fn only_the_same_dropin_minor_loads() {
        assert!(same_minor("0.1.3", "0.1.0"));
        assert!(!same_minor("0.2.0", "0.1.0"));
        assert!(!same_minor("0.0.9", "0.1.0"));
        assert!(!same_minor("1.1.0", "1.0.0"));
        assert!(!same_minor("bogus", "0.1.0"));
    }

    #[test]
    fn names_must_be_one_printable_word() {
        assert!(check_name("hello-2").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("two words").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name("evil\u{202e}olleh").is_err());
        assert!(check_name("zero\u{200b}width").is_err());
    }

    #[test]
    fn layout_reports_are_cut_to_their_error_lines() {
        let report = "\nlayout\n    Error:mismatched type\n    Expected:\n        GreeterMod\n    \
                      Found:\n        ShoutMod\n  noise\n Error: too many fields\nError: third\n";
        assert_eq!(
            summarize_layout_report(report),
            "mismatched type: expected GreeterMod, found ShoutMod; too many fields (and 1 more)"
        );
        let report = "Error:incompatible type size\nExpected:\n 64\nFound:\n 56\n\
                      Error:field references different lifetimes\nExpected:\n field_name:version\n \
                      type:RStr<'a>\nFound:\n field_name:version\n type:u64\n\
                      Error:mismatched type\nExpected:\n RStr<'a>\nFound:\n u64\n";
        assert_eq!(
            summarize_layout_report(report),
            "field `version`: mismatched type: expected RStr<'a>, found u64; \
             incompatible type size: expected 64, found 56"
        );
        assert_eq!(summarize_layout_report("a\n  b  c\n"), "a b c");
    }
}
