//! Stage 4: the loader that runs discover → verify → load over a folder, and
//! the registry that holds what loaded.

use std::{
    collections::BTreeMap,
    fmt,
    marker::PhantomData,
    path::{Path, PathBuf},
};

use semver::{Version, VersionReq};

use crate::{
    discover::{DiscoverError, discover},
    load::{self, LoadError, Plugin, PluginInterface, Policy, default_interface_req},
};

/// Loaded plugins of one interface, by name.
pub struct Registry<I: PluginInterface> {
    plugins: BTreeMap<String, Plugin<I>>,
}

impl<I: PluginInterface> Registry<I> {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            plugins: BTreeMap::new(),
        }
    }

    /// The plugin called `name`.
    pub fn get(&self, name: &str) -> Option<&Plugin<I>> {
        self.plugins.get(name)
    }

    /// Every plugin, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Plugin<I>> {
        self.plugins.values()
    }

    /// How many plugins are loaded.
    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    /// Whether no plugin is loaded.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// Adds `plugin`; the caller has checked that its name is free.
    fn insert(&mut self, plugin: Plugin<I>) {
        let previous = self.plugins.insert(plugin.name().to_owned(), plugin);
        debug_assert!(previous.is_none(), "a plugin name was registered twice");
    }
}

impl<I: PluginInterface> Default for Registry<I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I: PluginInterface> fmt::Debug for Registry<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.plugins.values()).finish()
    }
}

/// What loading a folder produced: the plugins that loaded and, for every
/// other candidate file, why it was rejected.
#[derive(Debug)]
pub struct LoadReport<I: PluginInterface> {
    /// The plugins that loaded.
    pub registry: Registry<I>,
    /// The candidate files that did not load, in path order.
    pub rejected: Vec<LoadError>,
}

/// Loads the plugins of interface `I` from a folder.
///
/// ```no_run
/// use greeter_host::{GreeterInterface, Loader};
///
/// let report = Loader::<GreeterInterface>::builder().dir("plugins").build().load()?;
/// for plugin in report.registry.iter() {
///     println!("{}: {}", plugin.name(), plugin.greet()?.as_str());
/// }
/// for error in &report.rejected {
///     eprintln!("rejected: {error}");
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Loader<I: PluginInterface> {
    dir: PathBuf,
    policy: Policy,
    interface: PhantomData<fn() -> I>,
}

impl<I: PluginInterface> fmt::Debug for Loader<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loader")
            .field("interface", &I::NAME)
            .field("dir", &self.dir)
            .field("accepted", &self.policy.accepted)
            .field("host_version", &self.policy.host_version)
            .finish()
    }
}

impl<I: PluginInterface> Loader<I> {
    /// Starts configuring a loader.
    pub fn builder() -> LoaderBuilder<I> {
        LoaderBuilder {
            dir: PathBuf::from("plugins"),
            accepted: None,
            host_version: None,
            interface: PhantomData,
        }
    }

    /// The plugins folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The interface versions this loader accepts.
    pub fn accepted_interface(&self) -> &VersionReq {
        &self.policy.accepted
    }

    /// The host version plugins' host requirements are matched against.
    pub fn host_version(&self) -> &Version {
        &self.policy.host_version
    }

    /// Loads every candidate file of the folder. A file that fails is
    /// reported in [`LoadReport::rejected`] and does not stop the others.
    ///
    /// # Errors
    ///
    /// [`DiscoverError`] if the folder itself cannot be listed.
    pub fn load(&self) -> Result<LoadReport<I>, DiscoverError> {
        let mut report = LoadReport {
            registry: Registry::new(),
            rejected: Vec::new(),
        };
        for path in discover(&self.dir)? {
            if let Err(error) = self.load_file(&mut report.registry, &path) {
                log::debug!("rejected: {error}");
                report.rejected.push(error);
            }
        }
        Ok(report)
    }

    /// Loads one file into `registry`.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] naming the file and the check that failed.
    pub fn load_file(&self, registry: &mut Registry<I>, path: &Path) -> Result<(), LoadError> {
        let plugin = load::open::<I>(path, &self.policy)?;
        // Checked before the plugin's own initialisation runs: a duplicate
        // never gets to set anything up.
        if let Some(first) = registry.get(plugin.name()) {
            return Err(LoadError::DuplicateName {
                path: path.to_owned(),
                name: plugin.name().to_owned(),
                first: first.path().to_owned(),
            });
        }
        load::initialize(&plugin)?;
        log::info!(
            "loaded {} plugin '{}' {} from {}",
            I::NAME,
            plugin.name(),
            plugin.version(),
            path.display()
        );
        registry.insert(plugin);
        Ok(())
    }
}

/// Options for a [`Loader`].
pub struct LoaderBuilder<I: PluginInterface> {
    dir: PathBuf,
    accepted: Option<VersionReq>,
    host_version: Option<Version>,
    interface: PhantomData<fn() -> I>,
}

impl<I: PluginInterface> fmt::Debug for LoaderBuilder<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoaderBuilder")
            .field("dir", &self.dir)
            .field("accepted", &self.accepted)
            .field("host_version", &self.host_version)
            .finish()
    }
}

impl<I: PluginInterface> LoaderBuilder<I> {
    /// The plugins folder (default: `plugins`, relative to the working
    /// directory).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    /// The interface versions to accept (default: the host's own major,
    /// see [`default_interface_req`]). It can only narrow what abi_stable
    /// accepts: plugins of another major are refused regardless.
    pub fn accept_interface(mut self, req: VersionReq) -> Self {
        self.accepted = Some(req);
        self
    }

    /// The version of the host application, matched against the host
    /// requirement a plugin may declare (default: this crate's version).
    pub fn host_version(mut self, version: Version) -> Self {
        self.host_version = Some(version);
        self
    }

    /// The configured loader.
    pub fn build(self) -> Loader<I> {
        let accepted = self.accepted.unwrap_or_else(|| {
            let own = Version::parse(I::VERSION).expect("the interface crate's version is semver");
            default_interface_req(&own)
        });
        let host_version = self.host_version.unwrap_or_else(|| {
            Version::parse(crate::HOST_VERSION).expect("this crate's version is semver")
        });
        Loader {
            dir: self.dir,
            policy: Policy {
                accepted,
                host_version,
            },
            interface: PhantomData,
        }
    }
}
