#[dropin::interface]
pub trait Named: Send + Sync {
    fn name(&self) -> String;
}

fn main() {}
