use dropin::{BoxError, Context};

#[dropin::interface]
pub trait Hello: Send + Sync {
    fn hello(&self) -> String;
}

struct Plugin;

impl Hello for Plugin {
    fn init(_: &Context<'_>) -> Result<Self, BoxError> {
        Ok(Plugin)
    }

    fn hello(&self) -> String {
        "hello".to_owned()
    }
}

export_hello!(Plugin, host = "version two please");

fn main() {}
