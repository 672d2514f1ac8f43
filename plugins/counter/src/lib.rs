//! A greeter plugin with state, configuration and logs: it counts the
//! greetings it gave in this process, from the number its configuration
//! gives (`start = 41`; 0 by default), and logs each one through the host's
//! logger. When the host reloads it, the count goes on from where the
//! replaced build left it; when the host keeps a store across its runs
//! (`greeter-host --store FILE`), from where the last run left it.

use std::sync::atomic::{AtomicU64, Ordering};

use greeter_interface::{
    BoxError, Context, Greeter, GreeterHostHandle, SavedState, ServiceErrorKind, export_greeter,
};

/// The plugin's state: how many greetings it has given. The host may call
/// from several threads, hence the atomic.
#[derive(Debug)]
pub struct Counter {
    visitors: AtomicU64,
    /// The host's store, where the count is kept.
    host: GreeterHostHandle,
}

/// The counter's table of `plugins.toml` (`[plugin.counter]`).
#[derive(Debug, serde::Deserialize)]
struct Settings {
    /// The count to go on from.
    #[serde(default)]
    start: u64,
}

/// The key the count is kept under in the host's store.
const KEY: &str = "visitors";

/// The version of the format [`Counter::save_state`] writes: the count as
/// eight little-endian bytes.
const STATE_VERSION: u32 = 1;

impl Greeter for Counter {
    fn init(context: &Context<'_>) -> Result<Self, BoxError> {
        let host = context.services::<GreeterHostHandle>();
        // A reload: go on counting from the replaced build's count.
        if let Some(previous) = context.previous_state() {
            match <[u8; 8]>::try_from(previous.bytes.as_slice()) {
                Ok(count) if previous.version == STATE_VERSION => {
                    let count = u64::from_le_bytes(count);
                    log::debug!("counter reloaded, going on after {count}");
                    return Ok(Counter {
                        visitors: AtomicU64::new(count),
                        host,
                    });
                }
                _ => log::warn!(
                    "ignoring a saved state of format {}; counting from the configuration",
                    previous.version
                ),
            }
        }
        // The count the host kept from an earlier run.
        match host.load(KEY) {
            Ok(Some(kept)) => {
                let count = kept.parse::<u64>()?;
                log::debug!("counter going on after {count}, as the host kept it");
                return Ok(Counter {
                    visitors: AtomicU64::new(count),
                    host,
                });
            }
            Ok(None) => {}
            // A host that keeps nothing: count from the configuration.
            Err(error) if error.kind() == ServiceErrorKind::Missing => {}
            Err(error) => log::warn!("{error}; counting from the configuration"),
        }
        let Settings { start } = context.config()?;
        log::debug!(
            "counter ready in {}, starting after {start}",
            context.dir().display()
        );
        Ok(Counter {
            visitors: AtomicU64::new(start),
            host,
        })
    }

    fn greet(&self) -> Result<String, BoxError> {
        let n = self.visitors.fetch_add(1, Ordering::Relaxed) + 1;
        log::info!("greeting visitor #{n}");
        match self.host.store(KEY, &n.to_string()) {
            Err(error) if error.kind() != ServiceErrorKind::Missing => log::warn!("{error}"),
            _ => {}
        }
        Ok(format!("Hello, visitor #{n}!"))
    }

    fn save_state(&self) -> Result<Option<SavedState>, BoxError> {
        let count = self.visitors.load(Ordering::Relaxed);
        Ok(Some(SavedState {
            version: STATE_VERSION,
            bytes: count.to_le_bytes().to_vec(),
        }))
    }
}

export_greeter!(Counter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_greeting_counts_one_more_visitor() {
        let counter = Counter::init(&Context::new("counter", ".".as_ref(), "")).unwrap();
        assert_eq!(counter.greet().unwrap(), "Hello, visitor #1!");
        assert_eq!(counter.greet().unwrap(), "Hello, visitor #2!");
        // The interface's default `greet_to` addresses the plain greeting.
        assert_eq!(counter.greet_to("Ada").unwrap(), "Ada, Hello, visitor #3!");
    }
}

#[cfg(test)]
mod handover_tests {
    use super::*;

    #[test]
    fn a_reloaded_counter_goes_on_from_the_saved_count() {
        let old = Counter::init(&Context::new("counter", ".".as_ref(), "")).unwrap();
        old.greet().unwrap();
        old.greet().unwrap();
        let saved = old.save_state().unwrap().unwrap();
        let context =
            Context::new("counter", ".".as_ref(), "start = 41").with_previous_state(&saved);
        let new = Counter::init(&context).unwrap();
        assert_eq!(new.greet().unwrap(), "Hello, visitor #3!");
        // A format it does not know is ignored.
        let unknown = SavedState {
            version: 2,
            bytes: vec![1],
        };
        let context = Context::new("counter", ".".as_ref(), "").with_previous_state(&unknown);
        let new = Counter::init(&context).unwrap();
        assert_eq!(new.greet().unwrap(), "Hello, visitor #1!");
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn the_configuration_sets_where_counting_starts() {
        let counter = Counter::init(&Context::new("counter", ".".as_ref(), "start = 41")).unwrap();
        assert_eq!(counter.greet().unwrap(), "Hello, visitor #42!");
        let file = std::path::Path::new("plugins/plugins.toml");
        let context = Context::new("counter", ".".as_ref(), "start = -1").with_config_file(file);
        let error = Counter::init(&context).err().unwrap();
        assert_eq!(
            error.to_string(),
            "plugins/plugins.toml: [plugin.counter]: key `start`: invalid value: integer `-1`, \
             expected u64"
        );
        let context = Context::new("counter", ".".as_ref(), "strat = 41").with_config_file(file);
        let error = Counter::init(&context).err().unwrap();
        assert_eq!(
            error.to_string(),
            "plugins/plugins.toml: [plugin.counter]: unknown key `strat`: expected only the keys \
             the plugin reads"
        );
    }
}
