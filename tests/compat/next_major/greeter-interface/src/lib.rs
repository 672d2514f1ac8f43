//! greeter-interface 3.0.0, frozen.

pub use dropin::{BoxError, Context};

/// A plugin that greets.
#[dropin::interface(name = "greeter")]
pub trait Greeter: Send + Sync {
    /// Returns the greeting.
    fn greet(&self) -> Result<String, BoxError>;

    /// Greets the person called `name`.
    fn greet_to(&self, name: &str) -> Result<String, BoxError>;
}
