//! An example plugin interface, declared with dropin: plugins that transform
//! text. Copy it to start an interface of your own.
//!
//! Plugins implement [`Transform`] and invoke [`export_transform!`];
//! applications load them as [`TransformPlugin`]s, and may offer them the
//! [`TransformHost`] services.

pub use dropin::{BoxError, Context};

/// What a transform says about itself.
#[derive(Debug, Clone, PartialEq, Eq, dropin::Stable)]
pub struct Info {
    /// One line for listings.
    pub summary: String,
    /// The name of the transform that undoes this one, if any.
    pub inverse: Option<String>,
}

/// Which way to apply a transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, dropin::Stable)]
pub enum Direction {
    /// Apply it.
    Forward,
    /// Undo it, where the transform can.
    Backward,
}

/// A plugin that transforms text.
#[dropin::interface(name = "transform", services = TransformHost)]
pub trait Transform: Send + Sync {
    /// What the transform does.
    fn info(&self) -> Info;

    /// Transforms `text`.
    fn apply(&self, text: &str, direction: Direction) -> Result<String, BoxError>;

    /// Transforms raw bytes; by default, as UTF-8 text.
    #[since("1.1")]
    fn apply_bytes(&self, bytes: &[u8], direction: Direction) -> Result<Vec<u8>, BoxError> {
        Ok(self
            .apply(std::str::from_utf8(bytes)?, direction)?
            .into_bytes())
    }
}

/// What a transform host offers its plugins. A plugin gets a
/// [`TransformHostHandle`] in `init` with
/// `context.services::<TransformHostHandle>()`.
#[dropin::services]
pub trait TransformHost: Send + Sync {
    /// Words the application wants left as they are (names, say):
    /// transforms that work word by word skip them.
    #[since("1.1")]
    fn protected_words(&self) -> Result<Vec<String>, BoxError>;
}
