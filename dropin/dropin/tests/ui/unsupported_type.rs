use std::collections::VecDeque;

#[dropin::interface]
pub trait Queue: Send + Sync {
    fn queue(&self) -> VecDeque<u64>;
}

fn main() {}
