#[dropin::interface]
pub trait Lines: Send + Sync {
    fn lines(&self) -> impl Iterator<Item = String>;
}

fn main() {}
