//! `watch`: greet, then reload what changes and greet again, until
//! interrupted.

use std::{
    io::Write,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use dropin_host::{Loader, Registry, WatchEvent};
use greeter_interface::GreeterPlugin;

use crate::{commands::greet::greet_loaded, output::shown};

/// Set by SIGINT or SIGTERM: `watch` stops, and the registry is dropped
/// as on any exit (snapshot folder removed, isolated processes ended).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn interrupted(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

pub(crate) fn watch(
    out: &mut impl Write,
    loader: &Loader<GreeterPlugin>,
    registry: &Registry<GreeterPlugin>,
    names: &[String],
    every: Option<Duration>,
) -> anyhow::Result<bool> {
    #[cfg(unix)]
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let handler = interrupted as extern "C" fn(libc::c_int);
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
    let mut watch = loader.watch(registry)?;
    let mut next_greeting = every.map(|every| Instant::now() + every);
    let mut reloaded = false;
    while !INTERRUPTED.load(Ordering::Relaxed) {
        // Short waits: an interruption is noticed within 100ms.
        let mut wait = Duration::from_millis(100);
        if let Some(next) = next_greeting {
            wait = wait.min(next.saturating_duration_since(Instant::now()));
        }
        if let Some(event) = watch.next_within(wait) {
            // What the replaced generations keep mapped (never unloaded).
            let retained = match &event {
                WatchEvent::Reloaded(reloaded) => registry
                    .retained()
                    .into_iter()
                    .find(|retained| retained.name == reloaded.name)
                    .map(|retained| {
                        format!(
                            "; earlier generations: {}, {} KiB mapped",
                            retained.generations,
                            retained.bytes.div_ceil(1024)
                        )
                    }),
                _ => None,
            };
            say!(
                "greeter-host: {}{}",
                shown(&event.to_string()),
                retained.unwrap_or_default()
            );
            reloaded |= matches!(event, WatchEvent::Reloaded(_));
            continue;
        }
        let due = next_greeting.is_some_and(|next| next <= Instant::now());
        if reloaded || due {
            greet_loaded(out, registry, names)?;
            reloaded = false;
        }
        if let (true, Some(every)) = (due, every) {
            next_greeting = Some(Instant::now() + every);
        }
    }
    Ok(true)
}
