pub trait Sink {}

#[dropin::interface]
pub trait Writer: Send + Sync {
    fn write(&self, sink: &dyn Sink);
}

fn main() {}
