//! Registry layer: an `exit` called by plugin code while a loader runs it never ends the
//! process as a success.
//!
//! Opening a library runs its constructors, and loading a plugin runs its
//! `init`; either may call `exit(0)`, which would end the host with status 0
//! and without a word: a deployment check would report success. While a
//! loader runs plugin code, a handler registered with `atexit` ends the
//! process instead with [`PLUGIN_EXIT_STATUS`], after one line on standard
//! error naming the file. (`_exit`, which runs no handlers, cannot be
//! caught in-process: only the probe process sees it.)

use std::{
    io::Write,
    path::Path,
    sync::{Mutex, Once},
};

/// The exit status of a process whose plugin code called `exit` while a
/// loader was running it.
pub const PLUGIN_EXIT_STATUS: i32 = 4;

/// The file whose code is running, while a loader runs plugin code.
static RUNNING: Mutex<Option<String>> = Mutex::new(None);

/// Runs `f`, which runs the code of the plugin in `path`, with the guard on.
pub(crate) fn guarded<T>(path: &Path, f: impl FnOnce() -> T) -> T {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // `on_exit` never unwinds.
        crate::sys::at_exit(on_exit);
    });
    *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.display().to_string());
    let result = f();
    *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = None;
    result
}

extern "C" fn on_exit() {
    // `try_lock`: `exit` may be called while the guard's own lock is held.
    let running = match RUNNING.try_lock() {
        Ok(running) => running.clone(),
        Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner().clone(),
        Err(std::sync::TryLockError::WouldBlock) => Some("a plugin file".to_owned()),
    };
    if let Some(path) = running {
        let _ = writeln!(
            std::io::stderr(),
            "{path}: the plugin's code called exit while it was being loaded; ending with status \
             {PLUGIN_EXIT_STATUS} instead of reporting success"
        );
        // At once, as `exit` was about to.
        crate::sys::exit_now(PLUGIN_EXIT_STATUS);
    }
}
