#[dropin::interface]
pub trait Store<T>: Send + Sync {
    fn get(&self) -> u64;
}

fn main() {}
