//! greeter-interface 2.2.0, frozen.

pub use dropin::{BoxError, Context};

/// A plugin that greets.
#[dropin::interface(name = "greeter")]
pub trait Greeter: Send + Sync {
    /// Returns the greeting.
    fn greet(&self) -> Result<String, BoxError>;

    /// Greets the person called `name`.
    #[since("2.1")]
    fn greet_to(&self, name: &str) -> Result<String, BoxError> {
        Ok(format!("{name}, {}", self.greet()?))
    }

    /// Says goodbye (added in 2.2, unknown to a 2.1 host).
    #[since("2.2")]
    fn farewell(&self) -> Result<String, BoxError>;
}
