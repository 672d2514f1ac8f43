//! A greeter plugin with state and logs: it counts the greetings it gave in
//! this process and logs each one through the host's logger.

use std::sync::atomic::{AtomicU64, Ordering};

use greeter_interface::{BoxError, Context, Greeter, export_greeter};

/// The plugin's state: how many greetings it has given. The host may call
/// from several threads, hence the atomic.
#[derive(Debug, Default)]
pub struct Counter {
    visitors: AtomicU64,
}

impl Greeter for Counter {
    fn init(_: &Context<'_>) -> Result<Self, BoxError> {
        log::debug!("counter ready");
        Ok(Counter::default())
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
