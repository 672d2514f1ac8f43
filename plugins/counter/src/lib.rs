//! A greeter plugin with state, configuration and logs: it counts the
//! greetings it gave in this process, from the number its configuration
//! gives (`start = 41`; 0 by default), and logs each one through the host's
//! logger.

use std::sync::atomic::{AtomicU64, Ordering};

use greeter_interface::{BoxError, Context, Greeter, export_greeter};

/// The plugin's state: how many greetings it has given. The host may call
/// from several threads, hence the atomic.
#[derive(Debug, Default)]
pub struct Counter {
    visitors: AtomicU64,
}

impl Greeter for Counter {
    fn init(context: &Context<'_>) -> Result<Self, BoxError> {
        let config: toml::Table = context.config().parse()?;
        let start = match config.get("start") {
            None => 0,
            Some(start) => start
                .as_integer()
                .and_then(|start| u64::try_from(start).ok())
                .ok_or_else(|| format!("expected `start` to be a whole number, found {start}"))?,
        };
        log::debug!(
            "counter ready in {}, starting after {start}",
            context.dir().display()
        );
        Ok(Counter {
            visitors: AtomicU64::new(start),
        })
    }

    fn greet(&self) -> Result<String, BoxError> {
        let n = self.visitors.fetch_add(1, Ordering::Relaxed) + 1;
        log::info!("greeting visitor #{n}");
        Ok(format!("Hello, visitor #{n}!"))
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
mod config_tests {
    use super::*;

    #[test]
    fn the_configuration_sets_where_counting_starts() {
        let counter = Counter::init(&Context::new("counter", ".".as_ref(), "start = 41")).unwrap();
        assert_eq!(counter.greet().unwrap(), "Hello, visitor #42!");
        let error = Counter::init(&Context::new("counter", ".".as_ref(), "start = -1"))
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "expected `start` to be a whole number, found -1"
        );
    }
}
