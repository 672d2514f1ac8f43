//! Registry layer, step 9: the registry that holds what loaded, by name, and every
//! generation of each plugin a reload replaced.
//!
//! A library can never be safely unloaded, so a reload never frees
//! anything: the new generation is added beside the old ones and the name
//! points to it from then on. That is what makes reading the registry free
//! of locks: whatever a reader found (a table of names, a generation) stays
//! valid, unchanged, for as long as the registry exists. Writers take a
//! mutex among themselves; readers do one atomic load per step.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    marker::PhantomData,
    ops::Deref,
    path::PathBuf,
    ptr::NonNull,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicPtr, AtomicUsize, Ordering},
    },
};

use dropin::Interface;

use crate::{error::LoadError, load::Plugin, trust::snapshot::SnapshotDir, trust::source::Stamp};

/// Loaded plugins of one interface, by name, each at its current
/// generation.
///
/// Calls and lookups take no lock: a [`Loader::reload`](crate::Loader::reload)
/// switches a name to a new generation with one atomic store, while other
/// threads go on calling. Every generation stays in memory (its library
/// mapped) until the registry is dropped, so a `&Plugin` taken before a
/// reload stays valid and keeps calling the generation it was taken from.
///
/// The registry also owns the private folder the plugins were loaded from
/// (see [`Plugin::loaded_from`]); it is removed when the registry is dropped.
pub struct Registry<I: Interface> {
    /// The table readers use: always one of `tables`.
    table: AtomicPtr<Table<I>>,
    /// Every table ever published, the current one last. A table is
    /// replaced, never changed, once others may read it: adding a plugin
    /// through `&self` publishes a copy.
    tables: Mutex<Vec<Pinned<Table<I>>>>,
    pub(crate) snapshots: OnceLock<SnapshotDir>,
    /// Held by a reload from start to switch: one at a time.
    pub(crate) reloading: Mutex<()>,
    /// Files a load or reload looked at and settled (refused them, or
    /// found the bytes already serving), as they were then: not tried
    /// again until they change.
    pub(crate) settled: Mutex<HashMap<PathBuf, Stamp>>,
    /// Shared references to plugins cross threads: the registry is `Sync`
    /// only if they may.
    plugins: PhantomData<Plugin<I>>,
}

struct Table<I: Interface> {
    slots: BTreeMap<String, Arc<Slot<I>>>,
}

/// One plugin name and its generations.
pub(crate) struct Slot<I: Interface> {
    /// The current generation: always one of `generations`.
    current: AtomicPtr<Plugin<I>>,
    /// Every generation, oldest first; none is freed before the slot is.
    generations: Mutex<Vec<Pinned<Plugin<I>>>>,
    /// Builds that failed a reload after their library was mapped: mapped
    /// for good too.
    failed_mapped: AtomicUsize,
}

/// A value on the heap that never moves and is freed only when this is
/// dropped. References to it are made from its pointer, never through this
/// value, so that moving this value (into a vector, say) leaves them valid.
struct Pinned<T>(NonNull<T>);

impl<T> Pinned<T> {
    fn new(value: T) -> Self {
        Self(NonNull::from(Box::leak(Box::new(value))))
    }

    fn pointer(&self) -> *mut T {
        self.0.as_ptr()
    }

    fn get(&self) -> &T {
        // SAFETY: valid until `drop`; only shared references are made while
        // others may read it.
        unsafe { self.0.as_ref() }
    }
}

impl<T> Drop for Pinned<T> {
    fn drop(&mut self) {
        // SAFETY: made by `Box::leak` in `new`, freed once, here; whoever
        // holds this value exclusively has no reader left.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

// SAFETY: a `Pinned<T>` owns its `T` like a `Box<T>`, and hands out shared
// references to it across threads: it needs what both need.
unsafe impl<T: Send + Sync> Send for Pinned<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Pinned<T> {}

impl<I: Interface> Slot<I> {
    fn new(mut plugin: Plugin<I>) -> Self {
        plugin.generation = 1;
        let first = Pinned::new(plugin);
        Self {
            current: AtomicPtr::new(first.pointer()),
            generations: Mutex::new(vec![first]),
            failed_mapped: AtomicUsize::new(0),
        }
    }

    /// The current generation.
    #[inline]
    pub(crate) fn current(&self) -> &Plugin<I> {
        // SAFETY: `current` always points to one of `generations`, none of
        // which is freed before `self` is, and a published generation is
        // never mutated.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    /// Makes `plugin` the current generation; returns its number. Callers
    /// serialize through `reloading`.
    pub(crate) fn switch(&self, mut plugin: Plugin<I>) -> u32 {
        let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        plugin.generation = generations
            .last()
            .map_or(1, |last| last.get().generation + 1);
        let generation = plugin.generation;
        let next = Pinned::new(plugin);
        let pointer = next.pointer();
        generations.push(next);
        self.current.store(pointer, Ordering::Release);
        generation
    }

    /// How many builds failed a reload after their library was mapped.
    pub(crate) fn failed_mapped(&self) -> usize {
        self.failed_mapped.load(Ordering::Relaxed)
    }

    pub(crate) fn note_failed_mapped(&self) {
        self.failed_mapped.fetch_add(1, Ordering::Relaxed);
    }

    /// How many earlier generations keep a library mapped in this process.
    pub(crate) fn retained(&self) -> usize {
        let generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        let (_, earlier) = generations.split_last().expect("a slot has a generation");
        earlier
            .iter()
            .filter(|plugin| !plugin.get().is_isolated())
            .count()
    }

    /// The private copies the earlier in-process generations were loaded
    /// from.
    fn retained_files(&self) -> Vec<PathBuf> {
        let generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        let (_, earlier) = generations.split_last().expect("a slot has a generation");
        earlier
            .iter()
            .map(Pinned::get)
            .filter(|plugin| !plugin.is_isolated())
            .map(|plugin| plugin.loaded_from().to_owned())
            .collect()
    }
}

impl<I: Interface> Registry<I> {
    /// An empty registry.
    pub fn new() -> Self {
        let first = Pinned::new(Table {
            slots: BTreeMap::new(),
        });
        Self {
            table: AtomicPtr::new(first.pointer()),
            tables: Mutex::new(vec![first]),
            snapshots: OnceLock::new(),
            reloading: Mutex::new(()),
            settled: Mutex::new(HashMap::new()),
            plugins: PhantomData,
        }
    }

    #[inline]
    fn table(&self) -> &Table<I> {
        // SAFETY: `table` always points to one of `tables`, none of which is
        // freed before `self` is; a table is mutated only through `&mut
        // self`, when no reader can exist.
        unsafe { &*self.table.load(Ordering::Acquire) }
    }

    /// The plugin called `name`, at its current generation.
    pub fn get(&self, name: &str) -> Option<&Plugin<I>> {
        self.table().slots.get(name).map(|slot| slot.current())
    }

    /// The plugin called `name` as a [`Live`] reference, which follows its
    /// reloads: each use reaches the generation current at that moment,
    /// for the cost of one atomic load.
    pub fn live(&self, name: &str) -> Option<Live<'_, I>> {
        self.table().slots.get(name).map(|slot| Live { slot })
    }

    /// Every plugin at its current generation, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Plugin<I>> {
        self.table().slots.values().map(|slot| slot.current())
    }

    /// How many plugins are loaded.
    pub fn len(&self) -> usize {
        self.table().slots.len()
    }

    /// Whether no plugin is loaded.
    pub fn is_empty(&self) -> bool {
        self.table().slots.is_empty()
    }

    /// What the generations that reloads replaced keep in memory, per
    /// plugin with at least one, in name order. Only libraries mapped in
    /// this process count: the process of an isolated plugin's earlier
    /// generation ended at the switch.
    pub fn retained(&self) -> Vec<Retained> {
        let mapped = crate::sys::mapped_bytes();
        self.table()
            .slots
            .iter()
            .filter_map(|(name, slot)| {
                let files = slot.retained_files();
                let failed = slot.failed_mapped();
                if files.is_empty() && failed == 0 {
                    return None;
                }
                let bytes = files
                    .iter()
                    .map(|file| {
                        // As the kernel names it: links resolved.
                        let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone());
                        match &mapped {
                            Some(mapped) => mapped.get(&file).copied().unwrap_or(0),
                            None => std::fs::metadata(&file).map_or(0, |meta| meta.len()),
                        }
                    })
                    .sum();
                Some(Retained {
                    name: name.clone(),
                    generations: files.len(),
                    failed,
                    bytes,
                })
            })
            .collect()
    }

    pub(crate) fn slot(&self, name: &str) -> Option<&Slot<I>> {
        self.table().slots.get(name).map(|slot| &**slot)
    }

    /// Adds `plugin` while nothing else can read the registry; the caller
    /// has checked that its name is free.
    pub(crate) fn insert(&mut self, plugin: Plugin<I>) {
        let tables = self.tables.get_mut().unwrap_or_else(|e| e.into_inner());
        let table = tables.last().expect("a registry has a table").pointer();
        // SAFETY: `&mut self`: no reference to any table exists but this.
        let table = unsafe { &mut *table };
        let previous = table
            .slots
            .insert(plugin.name().to_owned(), Arc::new(Slot::new(plugin)));
        debug_assert!(previous.is_none(), "a plugin name was registered twice");
    }

    /// Adds `plugin` while others may be reading: publishes a new table.
    /// Refuses, giving the plugin back, if its name was taken meanwhile.
    pub(crate) fn add(&self, plugin: Plugin<I>) -> Result<(), Box<Plugin<I>>> {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let current = tables.last().expect("a registry has a table").get();
        if current.slots.contains_key(plugin.name()) {
            return Err(Box::new(plugin));
        }
        let mut slots = current.slots.clone();
        slots.insert(plugin.name().to_owned(), Arc::new(Slot::new(plugin)));
        let next = Pinned::new(Table { slots });
        let pointer = next.pointer();
        tables.push(next);
        self.table.store(pointer, Ordering::Release);
        Ok(())
    }
}

impl<I: Interface> Default for Registry<I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I: Interface> fmt::Debug for Registry<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A plugin of a [`Registry`] by name, following its reloads: it
/// dereferences to the generation current at that moment. Taking it costs a
/// name lookup; using it, one atomic load.
pub struct Live<'r, I: Interface> {
    slot: &'r Slot<I>,
}

impl<'r, I: Interface> Live<'r, I> {
    /// The current generation.
    #[inline]
    pub fn current(&self) -> &'r Plugin<I> {
        self.slot.current()
    }
}

impl<I: Interface> Clone for Live<'_, I> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I: Interface> Copy for Live<'_, I> {}

impl<I: Interface> Deref for Live<'_, I> {
    type Target = Plugin<I>;

    #[inline]
    fn deref(&self) -> &Plugin<I> {
        self.slot.current()
    }
}

impl<I: Interface> fmt::Debug for Live<'_, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Live").field(self.current()).finish()
    }
}

/// What the earlier generations of one plugin keep mapped: see
/// [`Registry::retained`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retained {
    /// The plugin's name.
    pub name: String,
    /// How many earlier generations keep a library mapped.
    pub generations: usize,
    /// How many builds failed a reload after their library was mapped
    /// (their `init` failed, say): mapped for good too, and counted
    /// against [`LoaderBuilder::max_retained`](crate::LoaderBuilder::max_retained).
    pub failed: usize,
    /// The bytes of memory the earlier generations map (on Linux, as
    /// `/proc/self/maps` counts them; elsewhere, their files' sizes).
    pub bytes: u64,
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
