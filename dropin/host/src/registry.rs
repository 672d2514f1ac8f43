//! Stage 4: the registry that holds what loaded, by name.

use std::{collections::BTreeMap, fmt};

use dropin::Interface;

use crate::{
    load::{LoadError, Plugin},
    snapshot::SnapshotDir,
};

/// Loaded plugins of one interface, by name.
///
/// The registry also owns the private folder the plugins were loaded from
/// (see [`Plugin::loaded_from`]); it is removed when the registry is dropped.
pub struct Registry<I: Interface> {
    plugins: BTreeMap<String, Plugin<I>>,
    pub(crate) snapshots: Option<SnapshotDir>,
}

impl<I: Interface> Registry<I> {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            plugins: BTreeMap::new(),
            snapshots: None,
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
    pub(crate) fn insert(&mut self, plugin: Plugin<I>) {
        let previous = self.plugins.insert(plugin.name().to_owned(), plugin);
        debug_assert!(previous.is_none(), "a plugin name was registered twice");
    }
}

impl<I: Interface> Default for Registry<I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I: Interface> fmt::Debug for Registry<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.plugins.values()).finish()
    }
}

/// What loading a folder produced: the plugins that loaded and, for every
/// other candidate file, why it was rejected.
#[derive(Debug)]
pub struct LoadReport<I: Interface> {
    /// The plugins that loaded.
    pub registry: Registry<I>,
    /// The candidate files that did not load, in path order.
    pub rejected: Vec<LoadError>,
}
