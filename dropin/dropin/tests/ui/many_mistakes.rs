/// Every mistake of an interface, reported by one compile, each on its
/// tokens: two in one method's arguments, one per other method.
#[dropin::interface]
pub trait Many: Send + Sync {
    fn one(&self, pointer: *const u8);
    fn two(&mut self);
    fn three(&self) -> &str;
    fn four(&self, callback: impl Fn(), text: &mut String) -> u8;
}

fn main() {}
