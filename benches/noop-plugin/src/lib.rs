//! The no-op plugin.

use noop_interface::{BoxError, Context, Noop, export_noop};

struct Plugin;

impl Noop for Plugin {
    fn init(_: &Context<'_>) -> Result<Self, BoxError> {
        Ok(Plugin)
    }

    #[inline]
    fn noop(&self, x: u64) -> u64 {
        x
    }
}

export_noop!(Plugin, name = "noop-0000");
