//! A store built against store-interface 1.2.0: its tables have `count`,
//! and `first`, which the host does not know.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use store_interface::{
    BoxError, Context, Feed, Rows, Store, StoreError, Table, Visitor, Watcher, export_store,
};

type Values = Arc<Mutex<BTreeMap<String, String>>>;

struct Kept {
    values: Values,
}

struct Named {
    name: String,
    values: Values,
}

impl Named {
    fn keys(&self) -> Vec<(String, String)> {
        let prefix = format!("{}/", self.name);
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values
            .iter()
            .filter_map(|(key, value)| Some((key.strip_prefix(&prefix)?.to_owned(), value.clone())))
            .collect()
    }
}

impl Table for Named {
    fn get(&self, key: &str) -> Option<String> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.get(&format!("{}/{key}", self.name)).cloned()
    }

    fn reads(&self) -> u64 {
        0
    }

    fn rows(&self) -> Box<dyn Rows> {
        Box::new(Listed(Mutex::new(self.keys())))
    }

    fn count(&self) -> u64 {
        self.keys().len() as u64
    }

    fn first(&self) -> Option<String> {
        self.keys().into_iter().next().map(|(key, _)| key)
    }
}

/// A feed with nothing in it.
struct Empty;

#[store_interface::object]
impl Feed for Empty {
    async fn next(&self) -> Option<(String, String)> {
        None
    }
}

struct Listed(Mutex<Vec<(String, String)>>);

impl Rows for Listed {
    fn next(&self) -> Option<(String, String)> {
        let mut rows = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (!rows.is_empty()).then(|| rows.remove(0))
    }
}

impl Store for Kept {
    fn init(_: &Context<'_>) -> Result<Self, BoxError> {
        Ok(Kept {
            values: Values::default(),
        })
    }

    fn get(&self, key: &str) -> Result<String, StoreError> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.get(key).cloned().ok_or_else(|| StoreError::NotFound {
            key: key.to_owned(),
        })
    }

    fn put(&self, key: &str, value: &str) -> Result<Option<String>, StoreError> {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        Ok(values.insert(key.to_owned(), value.to_owned()))
    }

    fn put_all(&self, entries: &[(String, String)]) -> Result<u64, StoreError> {
        for (key, value) in entries {
            self.put(key, value)?;
        }
        Ok(entries.len() as u64)
    }

    fn entries(&self, prefix: Option<&str>) -> BTreeMap<String, String> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values
            .iter()
            .filter(|(key, _)| key.starts_with(prefix.unwrap_or("")))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    fn open(&self, name: &str) -> Result<Box<dyn Table>, StoreError> {
        Ok(Box::new(Named {
            name: name.to_owned(),
            values: Arc::clone(&self.values),
        }))
    }

    fn scan(&self, _: &str, _: &dyn Visitor) -> u64 {
        0
    }

    fn watch(&self, _: Box<dyn Watcher>) {}

    fn follow(&self, _: &str) -> Box<dyn Feed> {
        Box::new(Empty)
    }

    fn import(&self, _: &dyn Feed) -> u64 {
        0
    }

    fn unwatch(&self) -> u64 {
        0
    }

    async fn fetch(&self, key: &str) -> Result<String, StoreError> {
        self.get(key)
    }

    async fn wait_for(&self, key: &str) -> String {
        self.get(key).unwrap_or_default()
    }
}

export_store!(Kept, name = "new-store");
