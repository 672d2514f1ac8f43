//! An example plugin interface, declared with dropin: key-value stores.
//! Its errors are values of the interface: the application matches on
//! them, apart from the framework's own failures.
//!
//! Plugins implement [`Store`] and invoke [`export_store!`]; applications
//! load them as [`StorePlugin`]s.

use std::collections::BTreeMap;

pub use dropin::{BoxError, Context};

/// Why a store refused a request.
#[derive(Debug, Clone, PartialEq, Eq, dropin::Stable)]
pub enum StoreError {
    /// Nothing is stored under the key.
    NotFound { key: String },
    /// The store takes no writes.
    ReadOnly,
    /// Added in place, without a new version: the change a host refuses.
    Full,
}

/// A key-value store.
#[dropin::interface(name = "store")]
pub trait Store: Send + Sync {
    /// The value stored under `key`.
    fn get(&self, key: &str) -> Result<String, StoreError>;

    /// Stores `value` under `key`; the value it replaced, if any.
    fn put(&self, key: &str, value: &str) -> Result<Option<String>, StoreError>;

    /// Every key that starts with `prefix` (every key, without one), and
    /// its value.
    fn entries(&self, prefix: Option<&str>) -> BTreeMap<String, String>;
}
