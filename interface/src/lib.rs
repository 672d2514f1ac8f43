//! The greeter interface: what a greeter plugin implements and what a host
//! application calls, declared on the [dropin] framework.
//!
//! A plugin implements [`Greeter`] and invokes [`export_greeter!`]; an
//! application loads plugins as [`GreeterPlugin`]s with
//! `dropin_host::Loader::<GreeterPlugin>`. The versioning rules are in
//! COMPATIBILITY.md.

pub use dropin::{BoxError, Context, SavedState, ServiceError, ServiceErrorKind, Text, log};

/// A plugin that greets. The host may call from several threads at once,
/// hence `Send + Sync`.
#[dropin::interface(name = "greeter", services = GreeterHost)]
pub trait Greeter: Send + Sync {
    /// Returns the greeting.
    fn greet(&self) -> Result<String, BoxError>;

    /// Greets the person called `name`. By default, the plain greeting
    /// addressed to them: `"{name}, {greeting}"`.
    #[since("2.1")]
    fn greet_to(&self, name: &str) -> Result<String, BoxError> {
        Ok(format!("{name}, {}", self.greet()?))
    }
}

/// What a greeter host offers its plugins: a small store of text values by
/// key, separate for each plugin, which the host may keep across its runs
/// (`greeter-host --store FILE`). A plugin gets a [`GreeterHostHandle`] in
/// `init` with `context.services::<GreeterHostHandle>()`.
#[dropin::services]
pub trait GreeterHost: Send + Sync {
    /// The value the host keeps for the calling plugin under `key`; `None`
    /// if there is none.
    #[since("2.1")]
    fn load(&self, key: &str) -> Result<Option<String>, BoxError>;

    /// Keeps `value` for the calling plugin under `key`.
    #[since("2.1")]
    fn store(&self, key: &str, value: &str) -> Result<(), BoxError>;
}
