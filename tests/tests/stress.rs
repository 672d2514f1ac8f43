//! Threads: every example plugin called from 8 threads, 100,000 calls each,
//! every result checked.
//!
//! A test binary of its own, because the logger is process-wide: the main
//! test binary installs a capturing logger, which would record a line for
//! each of `counter`'s 800,000 greetings.

use std::thread;

use dropin_host::{Plugin, Registry};
use greeter_interface::GreeterPlugin;
use greeter_tests::PluginDir;

const THREADS: usize = 8;
const CALLS: usize = 100_000;

#[test]
fn registry_and_plugins_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Registry<GreeterPlugin>>();
    send_sync::<Plugin<GreeterPlugin>>();
    send_sync::<GreeterPlugin>();
}

#[test]
fn every_plugin_answers_every_call_from_8_threads() {
    let report = PluginDir::with(&["hello", "hellohello", "counter"]).load();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    let registry = &report.registry;
    let visitors: Vec<Vec<u64>> = thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(move || {
                    let hello = registry.get("hello").unwrap();
                    let hellohello = registry.get("hellohello").unwrap();
                    let counter = registry.get("counter").unwrap();
                    let mut seen = Vec::with_capacity(CALLS);
                    for _ in 0..CALLS {
                        assert_eq!(hello.greet().unwrap(), "Hello!");
                        assert_eq!(hellohello.greet().unwrap(), "Hello!Hello!!");
                        let greeting = counter.greet().unwrap();
                        let n = greeting
                            .strip_prefix("Hello, visitor #")
                            .and_then(|rest| rest.strip_suffix('!'))
                            .and_then(|n| n.parse().ok())
                            .unwrap_or_else(|| panic!("unexpected greeting {greeting:?}"));
                        seen.push(n);
                    }
                    seen
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().unwrap())
            .collect()
    });
    // The counter's state is shared by all threads: every visitor number
    // from 1 to 800,000 was handed out exactly once.
    let mut all: Vec<u64> = visitors.into_iter().flatten().collect();
    all.sort_unstable();
    assert!(all.iter().copied().eq(1..=(THREADS * CALLS) as u64));
}
