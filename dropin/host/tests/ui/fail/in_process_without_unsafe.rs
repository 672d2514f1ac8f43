#[dropin::interface(name = "greeter")]
pub trait Greeter: Send + Sync {
    fn greet(&self) -> String;
}

fn main() {
    // Runs plugins in this process without the application vouching for
    // them: does not compile.
    let loader = dropin_host::Loader::<GreeterPlugin>::builder()
        .dir("plugins")
        .build();
    let _ = loader.load();
}
