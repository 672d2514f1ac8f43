#[dropin::interface]
pub trait Fetch: Send + Sync {
    async fn fetch(&self, url: &str) -> String;
}

fn main() {}
