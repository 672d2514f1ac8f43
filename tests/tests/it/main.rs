//! Integration tests. Every test loads real plugins, built once per run by
//! `greeter_tests::artifacts`, from its own temporary plugins folder.

// Each example plugin loads and greets with its exact text.
mod plugins;
// Which files of a folder are candidates.
mod discovery;
// FIFOs, devices, huge files and files written during the copy.
#[cfg(unix)]
mod files;
// Every kind of bad file is rejected with its own reason; the rest still work.
mod rejections;
// A panicking plugin yields an error, and the host carries on.
mod panics;
// Plugin log records reach the host's logger.
mod logs;
// The loader core serves a second interface.
mod generic;
// Interfaces beyond value calls: the example store's typed errors.
mod store;
// The `greeter-host` binary: output, JSON, exit codes.
mod cli;
// The plugins folder's configuration file, read by the library.
mod config;
// Libraries the dynamic loader dies on: the probe process dies instead.
#[cfg(unix)]
mod probe;
// Plugins built against earlier, later and broken versions of the interface.
mod compat;
// The README's interface, plugin and application, built and run.
mod readme;
// The lock file, private snapshots and permissions.
mod trust;
// Plugins in processes of their own: same answers, and crashes stay there.
#[cfg(target_os = "linux")]
mod isolation;
// Plugins call back into the application: host services.
mod services;
// New builds replace loaded plugins while threads call them.
mod reload;
// Hundreds of generated hostile files: all rejected, no crash.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod corpus;
// Valid plugins built in many configurations all load without a word.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod builds;
// What the documents say about the tests.
mod docs;
// `dropin inspect`: a plugin's description, read from its file.
mod inspect;
