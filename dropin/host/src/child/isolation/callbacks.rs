//! The application's objects that the host keeps for an isolated plugin's
//! process (callbacks), by number: lent for one call, or given to the
//! plugin until its process drops them or ends.

use std::{
    collections::{BTreeMap, hash_map::RandomState},
    hash::{BuildHasher, Hasher},
    sync::{Arc, Mutex, RwLock, atomic::AtomicU64},
};

use dropin::{
    __private::Served,
    abi::{RResult, RawError, RawErrorKind},
};

/// One kept object: `None` once released. A call to it holds it shared,
/// so that a release waits for the calls being served.
type Entry = Arc<RwLock<Option<Served>>>;

/// A kept object, and the process a call gave it to (0 until one did).
struct Kept {
    entry: Entry,
    process: u64,
}

/// The objects kept for one plugin's processes.
pub(super) struct Callbacks {
    kept: Mutex<BTreeMap<u64, Kept>>,
    /// Counts the objects kept; a number is the count hashed with a key of
    /// this host's, so that a process cannot guess the number of an object
    /// lent to another call from its own.
    count: AtomicU64,
    key: RandomState,
}

impl Callbacks {
    pub(super) fn new() -> Self {
        Self {
            kept: Mutex::new(BTreeMap::new()),
            count: AtomicU64::new(0),
            key: RandomState::new(),
        }
    }

    /// Keeps `served`; its number.
    pub(super) fn keep(&self, served: Served) -> u64 {
        let mut kept = self.lock();
        let id = loop {
            let mut hasher = self.key.build_hasher();
            hasher.write_u64(
                self.count
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            );
            let id = hasher.finish();
            if !kept.contains_key(&id) {
                break id;
            }
        };
        kept.insert(
            id,
            Kept {
                entry: Arc::new(RwLock::new(Some(served))),
                process: 0,
            },
        );
        id
    }

    /// The objects numbered `ids` were given to the process numbered
    /// `process`, by a call sent to it.
    pub(super) fn sent(&self, ids: &[u64], process: u64) {
        let mut kept = self.lock();
        for id in ids {
            if let Some(kept) = kept.get_mut(id) {
                kept.process = process;
            }
        }
    }

    /// Stops serving the object number `id` and drops it, once the calls
    /// to it being served return.
    pub(super) fn release(&self, id: u64) {
        let entry = self.lock().remove(&id).map(|kept| kept.entry);
        if let Some(entry) = entry {
            // An application's future being awaited for the process gives
            // up, or the release would wait for as long as it does.
            if let Some(served) = &*entry.read().unwrap_or_else(|e| e.into_inner()) {
                served.cancel();
            }
            let served = entry.write().unwrap_or_else(|e| e.into_inner()).take();
            drop(served);
        }
    }

    /// Drops the objects given to the plugin's processes, which ended:
    /// those given to the process numbered `process`, or, with `None`, to
    /// any (the plugin ended for good). Never waits (an object being served
    /// is dropped by the call that serves it, when it returns). Lent
    /// objects stay until their call releases them, which waits for the
    /// calls being served; so do given ones no call has sent yet, which
    /// their call releases if it fails.
    pub(super) fn release_given(&self, process: Option<u64>) {
        let given: Vec<Kept> = {
            let mut kept = self.lock();
            let ids: Vec<u64> = kept
                .iter()
                .filter(|(_, kept)| process.is_none_or(|process| kept.process == process))
                // An entry still in the map is never locked for writing.
                .filter(|(_, kept)| {
                    kept.entry
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .as_ref()
                        .is_none_or(|served| !served.is_lent())
                })
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| kept.remove(id)).collect()
        };
        drop(given);
    }

    /// Serves a call from the plugin's process to the object number `id`;
    /// the outcome as a service's.
    pub(super) fn serve(&self, id: u64, method: usize, input: &[u8], out: &mut Vec<u8>) {
        let entry = self.lock().get(&id).map(|kept| Arc::clone(&kept.entry));
        let served = entry
            .as_ref()
            .map(|entry| entry.read().unwrap_or_else(|e| e.into_inner()));
        let outcome = match served.as_deref() {
            Some(Some(served)) => served
                .serve(method, input, out)
                .map_err(|error| format!("the host could not read the call: {error}")),
            _ => Err(format!(
                "the host keeps no object number {id} for this plugin (lent to a call that returned?)"
            )),
        };
        if let Err(message) = outcome {
            out.clear();
            let outcome: RResult<(), RawError> =
                RResult::RErr(RawError::new(RawErrorKind::Failed, message, None));
            dropin::abi::encode_service(&outcome, out);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Kept>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}
