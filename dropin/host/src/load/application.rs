//! An application as its executable describes it: what it expects of a
//! plugin, judged against a plugin's description with the loader's own
//! checks, with neither program running.

use std::path::Path;

use dropin::description::{Description, Method};
use semver::{Version, VersionReq};

use crate::{
    error::LoadError,
    inspect::description::{DescriptionReadError, read_application},
};

use super::{Policy, Side, SideMethods, default_interface_req, judge_description};

/// One interface whose plugins an application loads, as the application's
/// executable describes it ([`read_application`]): the interface's name,
/// version and methods as the application was built with them, and the
/// versions it accepts by default (its major).
///
/// [`judge`](Self::judge) is the check [`Loader`](crate::Loader) makes of a
/// plugin's description before anything opens the file, made for that
/// application: `dropin check --host APP` is built on it.
#[derive(Debug, Clone)]
pub struct Application {
    description: Description,
    version: Version,
    required: usize,
    accepted: VersionReq,
    host_version: Option<Version>,
    allow_panic_abort: bool,
}

impl Application {
    /// The interfaces the program at `path` loads plugins of, one
    /// [`Application`] each, read from its executable without running it.
    ///
    /// # Errors
    ///
    /// [`DescriptionReadError`] if the executable cannot be read, holds no
    /// application's description, or holds one that is not valid (an
    /// interface version that is not semver).
    pub fn read(path: &Path) -> Result<Vec<Self>, DescriptionReadError> {
        read_application(path)?
            .into_iter()
            .map(Self::from_description)
            .collect()
    }

    /// The application that `description` (an application's, as
    /// [`read_application`] gives it) describes.
    ///
    /// # Errors
    ///
    /// [`DescriptionReadError::InvalidApplication`] if its interface
    /// version is not semver.
    pub fn from_description(description: Description) -> Result<Self, DescriptionReadError> {
        let version = Version::parse(&description.interface_version).map_err(|_| {
            DescriptionReadError::InvalidApplication {
                expected: "an interface version that is semver",
            }
        })?;
        // As the interface macro counts them: the methods of the first
        // release of the interface's major (or 0.x minor).
        let first = if version.major == 0 {
            format!("0.{}.0", version.minor)
        } else {
            format!("{}.0.0", version.major)
        };
        let required = description
            .methods
            .iter()
            .take_while(|method| method.since == first)
            .count();
        Ok(Self {
            accepted: default_interface_req(&version),
            description,
            version,
            required,
            host_version: None,
            allow_panic_abort: false,
        })
    }

    /// What the executable says of the interface.
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The interface's name.
    pub fn interface(&self) -> &str {
        &self.description.interface_name
    }

    /// The interface's version the application was built with.
    pub fn interface_version(&self) -> &Version {
        &self.version
    }

    /// The interface's methods as the application was built with them.
    pub fn methods(&self) -> &[Method] {
        &self.description.methods
    }

    /// The interface versions accepted: by default the application's major,
    /// as a loader's default.
    pub fn accepted(&self) -> &VersionReq {
        &self.accepted
    }

    /// Accepts only the interface versions of `req` (as
    /// [`LoaderBuilder::accept_interface`](crate::LoaderBuilder::accept_interface):
    /// another major never passes, whatever `req` says).
    #[must_use]
    pub fn accept_interface(mut self, req: VersionReq) -> Self {
        self.accepted = req;
        self
    }

    /// The application's own version, matched against plugins' host
    /// requirements. Its executable does not say it: without this, host
    /// requirements are not checked ([`Judged::unchecked_host_requirement`]).
    #[must_use]
    pub fn host_version(mut self, version: Version) -> Self {
        self.host_version = Some(version);
        self
    }

    /// Accepts plugins built with `panic = "abort"`, as
    /// [`LoaderBuilder::allow_panic_abort`](crate::LoaderBuilder::allow_panic_abort).
    #[must_use]
    pub fn allow_panic_abort(mut self, allow: bool) -> Self {
        self.allow_panic_abort = allow;
        self
    }

    /// Whether the plugin `description`, read from the file at `path`,
    /// passes this application's checks of descriptions: its interface and
    /// versions, every method's signature, its host requirement (if the
    /// application's version is known) and how it was built. The same
    /// checks, and the same errors, as a loader's before it opens a file.
    ///
    /// # Errors
    ///
    /// The [`LoadError`] a loader of this application would give.
    pub fn judge(&self, path: &Path, description: &Description) -> Result<Judged, LoadError> {
        let side = Side {
            name: &self.description.interface_name,
            version: &self.description.interface_version,
            // Named only when a file has no description, which the caller
            // reads and reports itself.
            export: "",
            methods: SideMethods::Described(&self.description.methods),
            required: self.required,
        };
        let policy = Policy {
            accepted: self.accepted.clone(),
            host_version: self.host_version.clone().unwrap_or(Version::new(0, 0, 0)),
            allow_panic_abort: self.allow_panic_abort,
            allow_executable_stack: false,
        };
        // Without the application's version, a requirement (that is one:
        // a malformed one is refused whatever the version) is left out of
        // the check and said to be unchecked.
        let requirement = description.host_requirement.trim();
        let unchecked = (self.host_version.is_none()
            && !requirement.is_empty()
            && VersionReq::parse(requirement).is_ok())
        .then(|| description.host_requirement.clone());
        let judged = if unchecked.is_some() {
            let mut without = description.clone();
            without.host_requirement.clear();
            judge_description(&side, path, &without, &policy).map(|_| ())
        } else {
            judge_description(&side, path, description, &policy).map(|_| ())
        };
        judged?;
        let provided = description.methods.len();
        let missing = self
            .description
            .methods
            .iter()
            .enumerate()
            .skip(self.required.max(provided))
            .map(|(_, method)| (method.name.clone(), method.since.clone()))
            .collect();
        Ok(Judged {
            missing_capabilities: missing,
            unchecked_host_requirement: unchecked,
        })
    }
}

/// A plugin's description that passed an [`Application`]'s checks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Judged {
    /// The application's methods, added after its interface's first
    /// release, that the plugin lacks, as `(name, since)`.
    pub missing_capabilities: Vec<(String, String)>,
    /// The plugin's host requirement, when the application's version was
    /// not given and it could not be checked.
    pub unchecked_host_requirement: Option<String>,
}
