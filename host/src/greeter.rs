//! The greeter interface's side of the loader, and stage 5: calling.

use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::std_types::RString;
use greeter_interface::{
    GreetError, GreeterModRef, INTERFACE_VERSION, LogLevel, LogRecord, LogSink,
};

use crate::load::{Metadata, Plugin, PluginInterface};

/// The greeter interface, as a [`PluginInterface`]: `Loader<GreeterInterface>`
/// loads greeter plugins.
#[derive(Debug)]
pub enum GreeterInterface {}

impl PluginInterface for GreeterInterface {
    type Module = GreeterModRef;

    const NAME: &'static str = "greeter";
    const VERSION: &'static str = INTERFACE_VERSION;

    fn metadata(module: GreeterModRef) -> Metadata {
        Metadata {
            name: module.name().as_str(),
            version: module.version().as_str(),
            interface_version: module.interface_version().as_str(),
        }
    }

    fn initialize(module: GreeterModRef) -> Result<(), String> {
        let sink = LogSink { log: forward_log };
        let max_level = LogLevel::from(log::max_level());
        (module.init())(sink, max_level)
            .into_result()
            .map_err(|error| error.to_string())
    }
}

/// A loaded greeter plugin.
pub type GreeterPlugin = Plugin<GreeterInterface>;

impl Plugin<GreeterInterface> {
    /// Calls the plugin's `greet`: one call through a function pointer. The
    /// string is the plugin's own allocation, handed over without a copy.
    ///
    /// # Errors
    ///
    /// The plugin's [`GreetError`]: it failed, or it panicked (the panic was
    /// caught inside the plugin).
    pub fn greet(&self) -> Result<RString, GreetError> {
        (self.module().greet())().into_result()
    }
}

/// The log target for records of the plugin `plugin`, so that `RUST_LOG`
/// can select one plugin (`RUST_LOG=plugin::hello=debug`).
pub fn log_target(plugin: &str) -> String {
    format!("plugin::{plugin}")
}

/// Receives plugin log records. `extern "C"`, so it must not unwind: a
/// panicking host logger is contained here.
extern "C" fn forward_log(record: &LogRecord<'_>) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let Some(level) = log::LevelFilter::from(record.level).to_level() else {
            return;
        };
        let target = log_target(&record.plugin);
        log::logger().log(
            &log::Record::builder()
                .level(level)
                .target(&target)
                .module_path(Some(record.target.as_str()))
                .args(format_args!("{}", record.message))
                .build(),
        );
    }));
}
