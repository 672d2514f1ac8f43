//! The log bridge: how a plugin's `log` records reach the host's logger.
//!
//! A `cdylib` carries its own copy of the `log` crate, with its own global
//! logger, so `log::info!` inside a plugin would go nowhere. At load the host
//! hands the plugin a [`LogSink`]; the plugin installs a logger that forwards
//! every record through it.

use std::sync::OnceLock;

use abi_stable::{StableAbi, std_types::RStr};

/// A log level, or `Off` as a maximum level.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Nothing is logged (only meaningful as a maximum level).
    Off,
    /// `log::Level::Error`.
    Error,
    /// `log::Level::Warn`.
    Warn,
    /// `log::Level::Info`.
    Info,
    /// `log::Level::Debug`.
    Debug,
    /// `log::Level::Trace`.
    Trace,
}

impl From<log::Level> for LogLevel {
    fn from(level: log::Level) -> Self {
        match level {
            log::Level::Error => Self::Error,
            log::Level::Warn => Self::Warn,
            log::Level::Info => Self::Info,
            log::Level::Debug => Self::Debug,
            log::Level::Trace => Self::Trace,
        }
    }
}

impl From<log::LevelFilter> for LogLevel {
    fn from(filter: log::LevelFilter) -> Self {
        filter.to_level().map_or(Self::Off, Self::from)
    }
}

impl From<LogLevel> for log::LevelFilter {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Off => Self::Off,
            LogLevel::Error => Self::Error,
            LogLevel::Warn => Self::Warn,
            LogLevel::Info => Self::Info,
            LogLevel::Debug => Self::Debug,
            LogLevel::Trace => Self::Trace,
        }
    }
}

/// One log record, borrowed for the duration of a [`LogSink`] call.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct LogRecord<'a> {
    /// The record's level; never [`LogLevel::Off`].
    pub level: LogLevel,
    /// The name of the plugin that logged it.
    pub plugin: RStr<'a>,
    /// The target inside the plugin (by default its module path).
    pub target: RStr<'a>,
    /// The formatted message.
    pub message: RStr<'a>,
}

/// The host's receiving end of the log bridge.
// A struct rather than a bare function pointer: abi_stable refuses a function
// pointer nested in the signature of another one (`Module::init`).
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct LogSink {
    /// Receives one record. Must not unwind.
    pub log: extern "C" fn(record: &LogRecord<'_>),
}

/// The plugin side of the bridge. Each plugin has its own copy of this static,
/// like its own copy of `log`.
static BRIDGE: OnceLock<Bridge> = OnceLock::new();

struct Bridge {
    plugin: &'static str,
    sink: LogSink,
}

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        (self.sink.log)(&LogRecord {
            level: record.level().into(),
            plugin: self.plugin.into(),
            target: record.target().into(),
            message: message.as_str().into(),
        });
    }

    fn flush(&self) {}
}

struct Forward;

impl log::Log for Forward {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        BRIDGE.get().is_some_and(|bridge| bridge.enabled(metadata))
    }

    fn log(&self, record: &log::Record<'_>) {
        if let Some(bridge) = BRIDGE.get() {
            bridge.log(record);
        }
    }

    fn flush(&self) {}
}

/// Routes this plugin's `log` records to `sink`. Only the first call sets the
/// sink (the host calls it once per library); every call updates the level.
pub(crate) fn install(plugin: &'static str, sink: LogSink, max_level: LogLevel) {
    let _ = BRIDGE.set(Bridge { plugin, sink });
    // Fails only if the plugin installed a logger of its own; then it keeps it.
    let _ = log::set_logger(&Forward);
    log::set_max_level(max_level.into());
}

/// The log target for records of the plugin `plugin`, so that `RUST_LOG`
/// can select one plugin (`RUST_LOG=plugin::hello=debug`).
pub fn log_target(plugin: &str) -> String {
    format!("plugin::{plugin}")
}

/// The host's sink: forwards plugin records to the host's `log` logger.
pub(crate) fn host_sink() -> LogSink {
    LogSink { log: forward_log }
}

/// Receives plugin log records. `extern "C"`, so it must not unwind: a
/// panicking host logger is contained here.
extern "C" fn forward_log(record: &LogRecord<'_>) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
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
