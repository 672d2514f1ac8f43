//! The smallest greeter plugin: greets `Hello!`.

use greeter_interface::{BoxError, Context, Greeter, export_greeter};

/// The plugin; it has no state.
#[derive(Debug)]
pub struct Hello;

impl Greeter for Hello {
    fn init(_: &Context<'_>) -> Result<Self, BoxError> {
        Ok(Hello)
    }

    fn greet(&self) -> Result<String, BoxError> {
        Ok("Hello!".to_owned())
    }

    fn greet_to(&self, name: &str) -> Result<String, BoxError> {
        Ok(format!("Hello, {name}!"))
    }
}

export_greeter!(Hello);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_hello() {
        let hello = Hello::init(&Context::new("hello", ".".as_ref(), "")).unwrap();
        assert_eq!(hello.greet().unwrap(), "Hello!");
        assert_eq!(hello.greet_to("Ada").unwrap(), "Hello, Ada!");
    }
}
