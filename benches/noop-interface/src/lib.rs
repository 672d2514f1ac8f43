//! A plugin interface whose one method does nothing: the floor of what a call
//! into a plugin costs through the handle dropin generates; and a host
//! service that does nothing: the floor of a call from a plugin into its
//! host.

pub use dropin::{BoxError, Context};

/// Does nothing.
#[dropin::interface(name = "noop", services = NoopHost)]
pub trait Noop: Send + Sync {
    /// Returns its argument.
    fn noop(&self, x: u64) -> u64;

    /// Calls the host's `echo` `times` times, with 0, 1, 2...; returns the
    /// sum of the answers.
    fn call_host(&self, times: u64) -> u64;

    /// An object whose one method does nothing: the floor of a call to an
    /// object a plugin returned.
    fn object(&self) -> Box<dyn NoopObject>;

    /// Calls `callback.noop` `times` times, with 0, 1, 2...; returns the sum
    /// of the answers: the floor of a call from a plugin to the
    /// application's object.
    fn call_back(&self, callback: &dyn NoopObject, times: u64) -> u64;

    /// Returns its argument, from a future that is ready at once: the floor
    /// of an `async fn` call.
    async fn noop_async(&self, x: u64) -> u64;
}

/// Does nothing, as an object.
#[dropin::object]
pub trait NoopObject: Send + Sync {
    /// Returns its argument.
    fn noop(&self, x: u64) -> u64;
}

/// What the benchmarks' host offers: a service that does nothing.
#[dropin::services]
pub trait NoopHost: Send + Sync {
    /// Returns its argument.
    fn echo(&self, x: u64) -> u64;
}
