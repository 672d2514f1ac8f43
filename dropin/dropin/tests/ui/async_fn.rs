/// What an `async fn` cannot do yet: take the application's object, return
/// an object, be a host service.
#[dropin::object]
pub trait Visitor: Send + Sync {
    fn visit(&self, key: &str) -> bool;
}

#[dropin::interface(name = "fetcher", version = "1.0.0")]
pub trait Fetcher: Send + Sync {
    async fn scan(&self, visitor: &dyn Visitor) -> u64;
    async fn open(&self) -> Box<dyn Visitor>;
}

#[dropin::services]
pub trait SlowHost: Send + Sync {
    async fn load(&self) -> u8;
}

fn main() {}
