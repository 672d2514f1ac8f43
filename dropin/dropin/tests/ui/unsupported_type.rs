use std::collections::HashMap;

#[dropin::interface]
pub trait Table: Send + Sync {
    fn table(&self) -> HashMap<String, u64>;
}

fn main() {}
