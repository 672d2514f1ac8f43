//! A plugin interface whose one method does nothing: the floor of what a call
//! into a plugin costs through the handle dropin generates.

pub use dropin::{BoxError, Context};

/// Does nothing.
#[dropin::interface(name = "noop")]
pub trait Noop: Send + Sync {
    /// Returns its argument.
    fn noop(&self, x: u64) -> u64;
}
