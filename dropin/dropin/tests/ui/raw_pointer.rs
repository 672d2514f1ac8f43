#[dropin::interface]
pub trait Buffer: Send + Sync {
    fn fill(&self, buffer: *mut u8, len: usize);
}

fn main() {}
