//! A store built against a `StoreError` that gained a variant in place: it
//! is always full.

use std::collections::BTreeMap;

use store_interface::{BoxError, Context, Store, StoreError, export_store};

struct Full;

impl Store for Full {
    fn init(_: &Context<'_>) -> Result<Self, BoxError> {
        Ok(Full)
    }

    fn get(&self, key: &str) -> Result<String, StoreError> {
        Err(StoreError::NotFound {
            key: key.to_owned(),
        })
    }

    fn put(&self, _: &str, _: &str) -> Result<Option<String>, StoreError> {
        Err(StoreError::Full)
    }

    fn entries(&self, _: Option<&str>) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}

export_store!(Full, name = "full");
