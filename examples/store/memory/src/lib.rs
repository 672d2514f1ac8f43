//! A store that keeps its values in memory, for as long as its process
//! lives. With `read-only` as its configuration, it refuses every write.

use std::{collections::BTreeMap, sync::Mutex};

use store_interface::{BoxError, Context, Store, StoreError, export_store};

struct Memory {
    values: Mutex<BTreeMap<String, String>>,
    read_only: bool,
}

impl Store for Memory {
    fn init(context: &Context<'_>) -> Result<Self, BoxError> {
        Ok(Memory {
            values: Mutex::default(),
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
