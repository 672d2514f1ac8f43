#[dropin::interface]
pub trait Store: Send + Sync {
    fn put<T>(&self, value: T);
}

fn main() {}
