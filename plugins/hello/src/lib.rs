//! The smallest greeter plugin: greets `Hello!`.

use greeter_interface::{BoxError, Greeter, export_plugin};

/// The plugin; it has no state.
#[derive(Debug)]
pub struct Hello;

impl Greeter for Hello {
    fn init() -> Result<Self, BoxError> {
        Ok(Hello)
    }

    fn greet(&self) -> Result<String, BoxError> {
        Ok("Hello!".to_owned())
    }
}

export_plugin!(name = "hello", greeter = Hello);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_hello() {
        assert_eq!(Hello::init().unwrap().greet().unwrap(), "Hello!");
    }
}
