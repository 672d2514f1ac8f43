//! The plugin author's side: the [`Greeter`] trait and [`export_plugin!`](crate::export_plugin!).

use std::{
    any::Any,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::OnceLock,
};

use abi_stable::std_types::{RResult, RString};

use crate::{GreetError, GreetErrorKind, LogLevel, LogSink, logging};

/// The error type a plugin returns: anything that converts into a boxed error,
/// a `String` or a `&str` included.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a plugin implements. Plain Rust: [`export_plugin!`](crate::export_plugin!) does the rest.
///
/// # Threads
///
/// The host may call `greet` and `greet_to` from several threads at once, on
/// the one value `init` returned, hence `Send + Sync`: shared state needs
/// atomics or locks. `init` runs once, before any other call.
///
/// # Panics
///
/// A panic in any method is caught inside the plugin and reported to the host
/// as a [`GreetError`] of kind [`Panicked`](GreetErrorKind::Panicked); the
/// host then stops calling the plugin. This needs the plugin to be built with
/// `panic = "unwind"`, the default.
pub trait Greeter: Sized + Send + Sync + 'static {
    /// Creates the plugin's state. Called once, when the host loads the
    /// library, after the log bridge is installed. An error (or a panic)
    /// makes the host reject the plugin.
    ///
    /// # Errors
    ///
    /// Whatever prevents the plugin from working, such as a bad configuration.
    fn init() -> Result<Self, BoxError>;

    /// Returns the greeting.
    ///
    /// # Errors
    ///
    /// Whatever prevents the plugin from greeting; the host reports it.
    fn greet(&self) -> Result<String, BoxError>;

    /// Greets the person called `name` (since interface 1.1). By default,
    /// the plain greeting addressed to them: `"{name}, {greeting}"`.
    ///
    /// # Errors
    ///
    /// Whatever prevents the plugin from greeting; the host reports it.
    fn greet_to(&self, name: &str) -> Result<String, BoxError> {
        Ok(format!("{name}, {}", self.greet()?))
    }
}

/// Exports a [`Greeter`] as this library's root module.
///
/// ```ignore
/// export_plugin!(name = "hello", greeter = Hello);
/// ```
///
/// `name` is the plugin's name (a `&'static str` constant); the plugin's
/// version is its package version. An optional `host = ">=0.2, <0.4"` (a
/// semver requirement) limits the host versions that may load the plugin.
/// Invoke it once per `cdylib`, at the crate root.
#[macro_export]
macro_rules! export_plugin {
    (@or_empty) => { "" };
    (@or_empty $host:expr) => { $host };
    (name = $name:expr, greeter = $greeter:ty $(, host = $host:expr)? $(,)?) => {
        const _: () = {
            use $crate::__private as p;

            static STATE: p::PluginState<$greeter> = p::PluginState::new($name);

            extern "C" fn init(
                sink: $crate::LogSink,
                max_level: $crate::LogLevel,
            ) -> p::RResult<(), $crate::GreetError> {
                STATE.init(sink, max_level)
            }

            extern "C" fn greet() -> p::RResult<p::RString, $crate::GreetError> {
                STATE.greet()
            }

            extern "C" fn greet_to(name: p::RStr<'_>) -> p::RResult<p::RString, $crate::GreetError> {
                STATE.greet_to(name.as_str())
            }

            fn root_module() -> $crate::GreeterModRef {
                p::PrefixTypeTrait::leak_into_prefix($crate::GreeterMod {
                    name: p::RStr::from_str($name),
                    version: p::RStr::from_str(env!("CARGO_PKG_VERSION")),
                    interface_version: p::RStr::from_str($crate::INTERFACE_VERSION),
                    init,
                    greet,
                    greet_to,
                    host_requirement: p::RStr::from_str($crate::export_plugin!(@or_empty $($host)?)),
                })
            }

            extern "C" fn load_root_module() -> p::RootModuleResult {
                p::__call_root_module_loader(root_module)
            }

            // The symbol abi_stable's loader looks up; what its
            // `#[export_root_module]` attribute would emit, spelled out so that
            // plugins need no direct abi_stable dependency. A test in this
            // crate pins the name to abi_stable's.
            #[unsafe(no_mangle)]
            static _1as_0lib_1header_0root_bmodule_bloader: p::LibHeader =
                // SAFETY: `load_root_module` returns a `GreeterModRef` erased
                // by abi_stable's own `__call_root_module_loader`.
                unsafe {
                    p::LibHeader::from_constructor::<$crate::GreeterModRef>(
                        load_root_module,
                        p::CheckTypeLayout::Yes,
                    )
                };
        };
    };
}

/// A plugin's state, owned by the static that [`export_plugin!`](crate::export_plugin!) declares.
#[doc(hidden)]
#[derive(Debug)]
pub struct PluginState<G> {
    name: &'static str,
    greeter: OnceLock<G>,
}

impl<G: Greeter> PluginState<G> {
    /// State for the plugin called `name`, not yet initialised.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            greeter: OnceLock::new(),
        }
    }

    /// The body of [`GreeterMod::init`](crate::GreeterMod::init).
    pub fn init(&'static self, sink: LogSink, max_level: LogLevel) -> RResult<(), GreetError> {
        logging::install(self.name, sink, max_level);
        // The plugin has its own std, hence its own panic hook, which would
        // print every caught panic to the host's stderr. The panic comes back
        // to the host as an error; its location goes to the host's log.
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map_or_else(String::new, |l| format!(" at {l}"));
            log::debug!("panicked{location}: {}", panic_message(info.payload()));
        }));
        self.guard(|| {
            // The dynamic loader returns the same library for the same path,
            // so a host may legitimately initialise it twice.
            if self.greeter.get().is_none() {
                let _ = self.greeter.set(G::init()?);
            }
            Ok(())
        })
    }

    /// The body of [`GreeterMod::greet`](crate::GreeterMod::greet).
    pub fn greet(&self) -> RResult<RString, GreetError> {
        self.guard(|| match self.greeter.get() {
            Some(greeter) => greeter.greet().map(RString::from),
            None => Err("greet called before init".into()),
        })
    }

    /// The body of [`GreeterMod::greet_to`](crate::GreeterMod::greet_to).
    pub fn greet_to(&self, name: &str) -> RResult<RString, GreetError> {
        self.guard(|| match self.greeter.get() {
            Some(greeter) => greeter.greet_to(name).map(RString::from),
            None => Err("greet_to called before init".into()),
        })
    }

    /// Runs `f`, turning its error or its panic into a [`GreetError`]. The
    /// success path stays small: building an error is out of line.
    #[inline]
    fn guard<T>(&self, f: impl FnOnce() -> Result<T, BoxError>) -> RResult<T, GreetError> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(value)) => RResult::ROk(value),
            Ok(Err(error)) => RResult::RErr(self.failed(&*error)),
            Err(payload) => RResult::RErr(self.panicked(&*payload)),
        }
    }

    #[cold]
    #[inline(never)]
    fn failed(&self, error: &(dyn std::error::Error + Send + Sync)) -> GreetError {
        GreetError::new(GreetErrorKind::Failed, self.name, error.to_string())
    }

    #[cold]
    #[inline(never)]
    fn panicked(&self, payload: &(dyn Any + Send)) -> GreetError {
        GreetError::new(GreetErrorKind::Panicked, self.name, panic_message(payload))
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_symbol_is_the_one_abi_stable_looks_up() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }

    struct Panics;

    impl Greeter for Panics {
        fn init() -> Result<Self, BoxError> {
            Ok(Panics)
        }

        fn greet(&self) -> Result<String, BoxError> {
            panic!("no greeting today")
        }
    }

    extern "C" fn discard(_: &crate::LogRecord<'_>) {}

    #[test]
    fn a_panic_becomes_an_error_naming_the_plugin() {
        static STATE: PluginState<Panics> = PluginState::new("panics");
        let sink = LogSink { log: discard };
        assert!(STATE.init(sink, LogLevel::Off).is_ok());
        let error = STATE.greet().unwrap_err();
        assert_eq!(error.kind(), GreetErrorKind::Panicked);
        assert_eq!(
            error.to_string(),
            "plugin 'panics' panicked: no greeting today"
        );
    }

    #[test]
    fn greet_before_init_is_an_error_not_a_crash() {
        static STATE: PluginState<Panics> = PluginState::new("early");
        let error = STATE.greet().unwrap_err();
        assert_eq!(error.kind(), GreetErrorKind::Failed);
        assert_eq!(error.message(), "greet called before init");
    }
}
