//! A store that keeps its values in memory, for as long as its process
//! lives. With `read-only` as its configuration, it refuses every write.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use store_interface::{BoxError, Context, Store, StoreError, Table, export_store, log};

type Values = Arc<Mutex<BTreeMap<String, String>>>;

struct Memory {
    values: Values,
    read_only: bool,
}

/// The entries under `name/`, and how many reads it served.
struct Named {
    name: String,
    values: Values,
    reads: AtomicU64,
}

impl Table for Named {
    fn get(&self, key: &str) -> Option<String> {
        // A key that breaks the table, for the tests of a panicking object.
        assert!(key != "panic", "table {} cannot read `panic`", self.name);
        self.reads.fetch_add(1, Ordering::Relaxed);
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.get(&format!("{}/{key}", self.name)).cloned()
    }

    fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        // A table that breaks as it closes, for the tests of a panicking
        // drop.
        assert!(self.name != "breaks", "table breaks as it closes");
        log::info!(
            "table {} closed after {} reads",
            self.name,
            self.reads.load(Ordering::Relaxed)
        );
    }
}

impl Store for Memory {
    fn init(context: &Context<'_>) -> Result<Self, BoxError> {
        Ok(Memory {
            values: Values::default(),
            read_only: context.config().trim() == "read-only",
        })
    }

    fn get(&self, key: &str) -> Result<String, StoreError> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_owned(),
            })
    }

    fn put(&self, key: &str, value: &str) -> Result<Option<String>, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        Ok(values.insert(key.to_owned(), value.to_owned()))
    }

    fn open(&self, name: &str) -> Result<Box<dyn Table>, StoreError> {
        if name.is_empty() || name.contains('/') {
            return Err(StoreError::NotFound {
                key: name.to_owned(),
            });
        }
        Ok(Box::new(Named {
            name: name.to_owned(),
            values: Arc::clone(&self.values),
            reads: AtomicU64::new(0),
        }))
    }

    fn entries(&self, prefix: Option<&str>) -> BTreeMap<String, String> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values
            .iter()
            .filter(|(key, _)| key.starts_with(prefix.unwrap_or("")))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}

export_store!(Memory, name = "memory");
