//! store-interface 1.2.0, frozen: its `Table` gained `first` after the
//! host's 1.1.
//!
//! An example plugin interface, declared with dropin: key-value stores.
//! Its errors are values of the interface: the application matches on
//! them, apart from the framework's own failures.
//!
//! Plugins implement [`Store`] and invoke [`export_store!`]; applications
//! load them as [`StorePlugin`]s.

use std::collections::BTreeMap;

pub use dropin::{BoxError, Context, log, object, try_callback};

/// Why a store refused a request.
#[derive(Debug, Clone, PartialEq, Eq, dropin::Stable)]
pub enum StoreError {
    /// Nothing is stored under the key.
    NotFound { key: String },
    /// The store takes no writes.
    ReadOnly,
}

/// A key-value store.
#[dropin::interface(name = "store")]
pub trait Store: Send + Sync {
    /// The value stored under `key`.
    fn get(&self, key: &str) -> Result<String, StoreError>;

    /// Stores `value` under `key`; the value it replaced, if any.
    fn put(&self, key: &str, value: &str) -> Result<Option<String>, StoreError>;

    /// Stores each of `entries` (key and value), in order; how many.
    fn put_all(&self, entries: &[(String, String)]) -> Result<u64, StoreError>;

    /// Every key that starts with `prefix` (every key, without one), and
    /// its value.
    fn entries(&self, prefix: Option<&str>) -> BTreeMap<String, String>;

    /// Opens the table `name`: the entries whose keys start with `name/`,
    /// read through an object of their own.
    fn open(&self, name: &str) -> Result<Box<dyn Table>, StoreError>;

    /// Calls `visitor` with each entry whose key starts with `prefix`, in
    /// key order, until it returns `false`: a callback the application
    /// lends for the call. How many entries it visited.
    fn scan(&self, prefix: &str, visitor: &dyn Visitor) -> u64;

    /// Keeps `watcher`, and tells it of every later `put` from a thread of
    /// the store's own: a callback the application gives the plugin.
    fn watch(&self, watcher: Box<dyn Watcher>);

    /// Drops every watcher the store keeps; how many.
    fn unwatch(&self) -> u64;

    /// The value stored under `key`, as a future that is ready at once.
    async fn fetch(&self, key: &str) -> Result<String, StoreError>;

    /// The value stored under `key` once there is one: a future that a
    /// later `put` wakes, from whichever thread makes it. Dropping it
    /// cancels the wait.
    async fn wait_for(&self, key: &str) -> String;

    /// Every entry whose key starts with `prefix`, in key order, then each
    /// one stored later, as it is stored: an async stream.
    #[since("1.1")]
    fn follow(&self, prefix: &str) -> Box<dyn Feed>;

    /// Stores every entry `source` yields, until it yields none: an async
    /// stream of the application's, lent for the call. How many.
    #[since("1.1")]
    fn import(&self, source: &dyn Feed) -> u64;
}

/// A stream of a store's entries, which the plugin produces as they come.
#[dropin::object]
pub trait Feed: Send + Sync {
    /// The next entry (key and value), once there is one.
    async fn next(&self) -> Option<(String, String)>;
}

/// What the application does with each entry `Store::scan` visits.
#[dropin::object]
pub trait Visitor: Send + Sync {
    /// One entry; `false` stops the scan.
    fn entry(&self, key: &str, value: &str) -> bool;
}

/// What the application learns of a store's changes, later, from the
/// store's own thread.
#[dropin::object]
pub trait Watcher: Send + Sync {
    /// `key` now holds `value`.
    fn changed(&self, key: &str, value: &str);
}

/// A table of a store: an object the store hands out, with state of its
/// own, which the store's code drops when the application drops its
/// handle.
#[dropin::object]
pub trait Table: Send + Sync {
    /// The value stored under `key` in this table.
    fn get(&self, key: &str) -> Option<String>;

    /// How many reads this table served.
    fn reads(&self) -> u64;

    /// The table's entries, produced one by one as the application asks
    /// (an object returned by an object).
    fn rows(&self) -> Box<dyn Rows>;

    /// How many entries the table has: added in 1.1, so that a table of a
    /// store built with 1.0 lacks it, and a call says so.
    #[since("1.1")]
    fn count(&self) -> u64;

    /// The first entry's key (without the table's prefix), if any: added
    /// in 1.2, which the host does not know.
    #[since("1.2")]
    fn first(&self) -> Option<String>;
}

/// A sequence of a table's entries, which the plugin produces lazily.
#[dropin::object]
pub trait Rows: Send + Sync {
    /// The next key (without the table's prefix) and value, if any.
    fn next(&self) -> Option<(String, String)>;
}
