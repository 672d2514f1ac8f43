//! greeter-interface 2.2.0, frozen.

pub use dropin::{BoxError, Context, ServiceError};

/// A plugin that greets.
#[dropin::interface(name = "greeter", services = GreeterHost)]
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

/// What a greeter host offers: 2.1's store, and a clock (added in 2.2,
/// unknown to a 2.1 host).
#[dropin::services]
pub trait GreeterHost: Send + Sync {
    /// The value kept under `key`.
    #[since("2.1")]
    fn load(&self, key: &str) -> Result<Option<String>, BoxError>;

    /// Keeps `value` under `key`.
    #[since("2.1")]
    fn store(&self, key: &str, value: &str) -> Result<(), BoxError>;

    /// The host's time of day, `HH:MM`.
    #[since("2.2")]
    fn time_of_day(&self) -> Result<String, BoxError>;
}
