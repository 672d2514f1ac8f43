//! The greeter interface: what a greeter plugin implements and what a host
//! application calls, declared on the [dropin] framework.
//!
//! A plugin implements [`Greeter`] and invokes [`export_greeter!`]; an
//! application loads plugins as [`GreeterPlugin`]s with
//! `dropin_host::Loader::<GreeterPlugin>`. The versioning rules are in
//! COMPATIBILITY.md.

pub use dropin::{BoxError, Context, SavedState, Text, log};

/// A plugin that greets. The host may call from several threads at once,
/// hence `Send + Sync`.
#[dropin::interface(name = "greeter")]
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
