//! greeter-interface 2.1.0, frozen.

pub use dropin::{BoxError, Context};

/// A plugin that greets, with `greet_to` changed in place: a breaking
/// change released as a minor version, which hosts must refuse.
#[dropin::interface(name = "greeter")]
pub trait Greeter: Send + Sync {
    /// Returns the greeting.
    fn greet(&self) -> Result<String, BoxError>;

    /// Greets the person called `name`, now taken by value.
    #[since("2.1")]
    fn greet_to(&self, name: String) -> Result<String, BoxError>;
}
