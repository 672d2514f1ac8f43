//! The greeter interface's side of the loader, and stage 5: calling.

use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::std_types::{RResult, RString};
use greeter_interface::{
    GreetError, GreetErrorKind, GreeterModRef, INTERFACE_VERSION, LogLevel, LogRecord, LogSink,
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
            host_requirement: module.host_requirement().map(|req| req.as_str()),
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

/// Why a call into a plugin returned no greeting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The plugin failed or panicked in this call (the panic was caught
    /// inside the plugin). After a panic the plugin is disabled.
    #[error(transparent)]
    Plugin(#[from] GreetError),
    /// The plugin panicked in an earlier call and is not called again.
    #[error("plugin '{plugin}' is disabled after an earlier panic ({reason})")]
    Disabled {
        /// The plugin's name.
        plugin: String,
        /// The earlier panic.
        reason: String,
    },
}

impl Plugin<GreeterInterface> {
    /// Calls the plugin's `greet`: one call through a function pointer. The
    /// string is the plugin's own allocation, handed over without a copy.
    ///
    /// # Errors
    ///
    /// [`CallError::Plugin`] with the plugin's [`GreetError`]: it failed, or
    /// it panicked, which also disables it; [`CallError::Disabled`] if it
    /// panicked before.
    pub fn greet(&self) -> Result<RString, CallError> {
        self.call(|| (self.module().greet())())
    }

    /// Runs one entry point unless the plugin is disabled; disables it if the
    /// entry point panicked. The success path is one load, one call and one
    /// match: everything else is out of line.
    #[inline]
    fn call(
        &self,
        entry: impl FnOnce() -> RResult<RString, GreetError>,
    ) -> Result<RString, CallError> {
        if self.failure().is_some() {
            return Err(self.disabled());
        }
        match entry() {
            RResult::ROk(greeting) => Ok(greeting),
            RResult::RErr(error) => Err(self.failed(error)),
        }
    }

    #[cold]
    #[inline(never)]
    fn disabled(&self) -> CallError {
        CallError::Disabled {
            plugin: self.name().to_owned(),
            reason: self.failure().unwrap_or_default().to_owned(),
        }
    }

    #[cold]
    #[inline(never)]
    fn failed(&self, error: GreetError) -> CallError {
        if error.kind() == GreetErrorKind::Panicked {
            log::info!("disabling it for this process: {error}");
            self.disable(format!("panicked: {}", error.message()));
        }
        CallError::Plugin(error)
    }
}

/// A capability added to the greeter interface after 1.0: present in a
/// plugin built against the version that added it or a later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capability {
    /// [`GreeterPlugin::greet_to`], since 1.1.
    GreetTo,
}

impl Capability {
    /// Every capability, oldest first.
    pub const ALL: &'static [Capability] = &[Capability::GreetTo];

    /// Its name, as the interface's field is called.
    pub fn name(self) -> &'static str {
        match self {
            Self::GreetTo => "greet_to",
        }
    }

    /// The interface version that added it.
    pub fn since(self) -> &'static str {
        match self {
            Self::GreetTo => "1.1.0",
        }
    }
}

impl Plugin<GreeterInterface> {
    /// Whether the plugin has `capability`.
    pub fn has(&self, capability: Capability) -> bool {
        match capability {
            Capability::GreetTo => self.module().greet_to().is_some(),
        }
    }

    /// Greets the person called `name`, or `None` if the plugin was built
    /// against an interface before 1.1 and cannot.
    ///
    /// # Errors
    ///
    /// As for [`greet`](Self::greet).
    pub fn greet_to(&self, name: &str) -> Option<Result<RString, CallError>> {
        let greet_to = self.module().greet_to()?;
        Some(self.call(|| greet_to(name.into())))
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
