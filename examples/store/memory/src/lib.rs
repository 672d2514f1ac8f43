//! A store that keeps its values in memory, for as long as its process
//! lives. With `read-only` as its configuration, it refuses every write.

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context as TaskContext, Poll, Waker},
};

use store_interface::{
    BoxError, Context, Feed, Rows, Store, StoreError, Table, Visitor, Watcher, export_store, log,
};

type Values = Arc<Mutex<BTreeMap<String, String>>>;

struct Memory {
    values: Values,
    read_only: bool,
    /// The application's watchers, told of each `put` from a thread of the
    /// store's own, and the number of the next `put`.
    watchers: Arc<Mutex<Watchers>>,
    /// The tasks waiting for a key (`wait_for`) or an entry (`follow`),
    /// woken by each `put`.
    waiting: Waiting,
}

type Waiting = Arc<Mutex<Vec<Waker>>>;

/// A store's entries under a prefix, in key order, each produced when the
/// application asks and there is one: after the last it produced.
struct Follow {
    prefix: String,
    values: Values,
    waiting: Waiting,
    after: Mutex<Option<String>>,
    produced: AtomicU64,
}

#[store_interface::object]
impl Feed for Follow {
    async fn next(&self) -> Option<(String, String)> {
        std::future::poll_fn(|context| {
            use std::ops::Bound;
            // Registered before the look, so that a `put` in between wakes
            // it.
            self.waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(context.waker().clone());
            let mut after = self.after.lock().unwrap_or_else(|e| e.into_inner());
            let from = match after.as_ref() {
                Some(key) => Bound::Excluded(key.clone()),
                None => Bound::Included(self.prefix.clone()),
            };
            let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
            match values
                .range((from, Bound::Unbounded))
                .next()
                .filter(|(key, _)| key.starts_with(&self.prefix))
            {
                Some((key, value)) => {
                    *after = Some(key.clone());
                    self.produced.fetch_add(1, Ordering::Relaxed);
                    Poll::Ready(Some((key.clone(), value.clone())))
                }
                None => Poll::Pending,
            }
        })
        .await
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        log::info!(
            "feed {} closed after {}",
            self.prefix,
            self.produced.load(Ordering::Relaxed)
        );
    }
}

/// Runs `future` to its end on this thread: the store needs no runtime of
/// its own to await the application's futures.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = TaskContext::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

/// A wait for a key to be stored: ready once it is, woken by `put`.
struct WaitFor<'a> {
    store: &'a Memory,
    key: &'a str,
    done: bool,
}

impl Future for WaitFor<'_> {
    type Output = String;

    fn poll(mut self: Pin<&mut Self>, context: &mut TaskContext<'_>) -> Poll<String> {
        // Registered before the look, so that a `put` in between wakes it.
        self.store
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(context.waker().clone());
        let values = self.store.values.lock().unwrap_or_else(|e| e.into_inner());
        match values.get(self.key) {
            Some(value) => {
                let value = value.clone();
                drop(values);
                self.done = true;
                Poll::Ready(value)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for WaitFor<'_> {
    fn drop(&mut self) {
        if !self.done {
            log::info!("wait for {} cancelled", self.key);
        }
    }
}

/// Each watcher with the number of the first `put` it is told of.
#[derive(Default)]
struct Watchers {
    kept: Vec<(u64, Box<dyn Watcher>)>,
    puts: u64,
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

    fn count(&self) -> u64 {
        let prefix = format!("{}/", self.name);
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.keys().filter(|key| key.starts_with(&prefix)).count() as u64
    }

    fn rows(&self) -> Box<dyn Rows> {
        Box::new(Cursor {
            name: self.name.clone(),
            values: Arc::clone(&self.values),
            after: Mutex::new(None),
            produced: AtomicU64::new(0),
        })
    }
}

/// A table's entries in key order, each found when asked for: after the
/// last key it produced.
struct Cursor {
    name: String,
    values: Values,
    after: Mutex<Option<String>>,
    produced: AtomicU64,
}

impl Rows for Cursor {
    fn next(&self) -> Option<(String, String)> {
        use std::ops::Bound;
        let prefix = format!("{}/", self.name);
        let mut after = self.after.lock().unwrap_or_else(|e| e.into_inner());
        let from = match after.as_ref() {
            Some(key) => Bound::Excluded(key.clone()),
            None => Bound::Included(prefix.clone()),
        };
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        let (key, value) = values
            .range((from, Bound::Unbounded))
            .next()
            .filter(|(key, _)| key.starts_with(&prefix))?;
        *after = Some(key.clone());
        self.produced.fetch_add(1, Ordering::Relaxed);
        Some((key[prefix.len()..].to_owned(), value.clone()))
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        log::info!(
            "rows of table {} closed after {}",
            self.name,
            self.produced.load(Ordering::Relaxed)
        );
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
            read_only: context.config_text().trim() == "read-only",
            watchers: Arc::default(),
            waiting: Waiting::default(),
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
        let replaced = values.insert(key.to_owned(), value.to_owned());
        drop(values);
        let waiting = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()));
        for waker in waiting {
            waker.wake();
        }
        let put = {
            let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
            watchers.puts += 1;
            watchers.puts - 1
        };
        let watchers = Arc::clone(&self.watchers);
        let (key, value) = (key.to_owned(), value.to_owned());
        // Told later, from the store's own thread, by the watchers that
        // were kept before this `put`. No call's guard covers the thread,
        // so a watcher that panics in the application is caught here.
        std::thread::spawn(move || {
            let watchers = watchers.lock().unwrap_or_else(|e| e.into_inner());
            let told = watchers.kept.iter().filter(|(first, _)| *first <= put);
            for (_, watcher) in told {
                if let Err(error) = store_interface::try_callback(|| watcher.changed(&key, &value))
                {
                    log::warn!("a watcher failed: {error}");
                }
            }
        });
        Ok(replaced)
    }

    fn put_all(&self, entries: &[(String, String)]) -> Result<u64, StoreError> {
        for (key, value) in entries {
            self.put(key, value)?;
        }
        Ok(entries.len() as u64)
    }

    fn scan(&self, prefix: &str, visitor: &dyn Visitor) -> u64 {
        let values = self
            .values
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut visited = 0;
        for (key, value) in values.range(prefix.to_owned()..) {
            if !key.starts_with(prefix) {
                break;
            }
            visited += 1;
            if !visitor.entry(key, value) {
                break;
            }
        }
        visited
    }

    fn watch(&self, watcher: Box<dyn Watcher>) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        let first = watchers.puts;
        watchers.kept.push((first, watcher));
    }

    async fn fetch(&self, key: &str) -> Result<String, StoreError> {
        self.get(key)
    }

    async fn wait_for(&self, key: &str) -> String {
        WaitFor {
            store: self,
            key,
            done: false,
        }
        .await
    }

    fn follow(&self, prefix: &str) -> Box<dyn Feed> {
        Box::new(Follow {
            prefix: prefix.to_owned(),
            values: Arc::clone(&self.values),
            waiting: Arc::clone(&self.waiting),
            after: Mutex::new(None),
            produced: AtomicU64::new(0),
        })
    }

    fn import(&self, source: &dyn Feed) -> u64 {
        let mut imported = 0;
        while let Some((key, value)) = block_on(source.next()) {
            let _ = self.put(&key, &value);
            imported += 1;
        }
        imported
    }

    fn unwatch(&self) -> u64 {
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = std::mem::take(&mut watchers.kept);
        dropped.len() as u64
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
