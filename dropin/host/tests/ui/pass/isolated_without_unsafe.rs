#![forbid(unsafe_code)]

use dropin_host::probe::Probe;

#[dropin::interface(name = "greeter")]
pub trait Greeter: Send + Sync {
    fn greet(&self) -> String;
}

fn main() {
    // Every plugin in a process of its own: no `unsafe`, even where it is
    // forbidden.
    let loader = dropin_host::Loader::<GreeterPlugin>::builder()
        .dir("plugins")
        .probe(Probe::command("/nonexistent/probe"))
        .build_isolated();
    let _ = loader.dir();
}
