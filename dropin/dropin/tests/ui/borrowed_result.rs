#[dropin::interface]
pub trait Name: Send + Sync {
    fn name(&self) -> &str;
}

fn main() {}
