#[dropin::interface]
pub trait Name: Send + Sync {
    fn label(&self) -> &str;
}

fn main() {}
