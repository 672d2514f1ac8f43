/// An error that only displays: it crosses as its message only as a
/// `dropin::BoxError`; as a typed error it must derive `dropin::Stable`.
#[derive(Debug)]
pub struct Shelved;

impl std::fmt::Display for Shelved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("shelved")
    }
}

#[dropin::interface]
pub trait Store: Send + Sync {
    fn get(&self, key: &str) -> Result<String, Shelved>;
}

fn main() {}
