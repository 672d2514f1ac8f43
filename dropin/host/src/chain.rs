//! Base layer: one-line error messages, an error and its sources.

use std::{error::Error, fmt};

/// Displays an error followed by each of its sources, separated by `": "`,
/// on one line: how the command line reports a rejection.
///
/// Every error of this crate displays only its own layer and hands out its
/// cause through [`Error::source`]; this puts the layers back together.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
