//! greeter-interface 2.0.0, frozen.

pub use dropin::{BoxError, Context};

/// A plugin that greets.
#[dropin::interface(name = "greeter")]
pub trait Greeter: Send + Sync {
    /// Returns the greeting.
    fn greet(&self) -> Result<String, BoxError>;
}
