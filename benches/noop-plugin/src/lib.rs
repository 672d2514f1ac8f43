//! The no-op plugin.

use noop_interface::{BoxError, Context, Noop, NoopHostHandle, NoopObject, export_noop};

struct Plugin {
    host: NoopHostHandle,
}

impl Noop for Plugin {
    fn init(context: &Context<'_>) -> Result<Self, BoxError> {
        Ok(Plugin {
            host: context.services::<NoopHostHandle>(),
        })
    }

    #[inline]
    fn noop(&self, x: u64) -> u64 {
        x
    }

    fn call_host(&self, times: u64) -> u64 {
        (0..times).map(|i| self.host.echo(i).unwrap_or(0)).sum()
    }

    fn object(&self) -> Box<dyn NoopObject> {
        Box::new(Object)
    }

    fn call_back(&self, callback: &dyn NoopObject, times: u64) -> u64 {
        (0..times).map(|i| callback.noop(i)).sum()
    }

    async fn noop_async(&self, x: u64) -> u64 {
        x
    }
}

struct Object;

impl NoopObject for Object {
    #[inline]
    fn noop(&self, x: u64) -> u64 {
        x
    }
}

export_noop!(Plugin, name = "noop-0000");
