#[dropin::interface(version = "1.2.0")]
pub trait Greeter: Send + Sync {
    #[since("1.2")]
    fn newest(&self) -> u64;

    #[since("1.1")]
    fn older(&self) -> u64;
}

fn main() {}
