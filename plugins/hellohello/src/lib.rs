//! The plugin of HashiCorp's go-plugin greeter example, loaded in-process
//! instead of served over RPC: greets `Hello!Hello!!`.

use greeter_interface::{BoxError, Context, Greeter, export_greeter};

/// The plugin; it has no state.
#[derive(Debug)]
pub struct HelloHello;

impl Greeter for HelloHello {
    fn init(_: &Context<'_>) -> Result<Self, BoxError> {
        Ok(HelloHello)
    }

    fn greet(&self) -> Result<String, BoxError> {
        Ok("Hello!Hello!!".to_owned())
    }

    fn greet_to(&self, name: &str) -> Result<String, BoxError> {
        Ok(format!("Hello, {name}!Hello, {name}!!"))
    }
}

export_greeter!(HelloHello);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_twice_as_loud() {
        assert_eq!(
            HelloHello::init(&Context::new("hellohello", ".".as_ref(), ""))
                .unwrap()
                .greet()
                .unwrap(),
            "Hello!Hello!!"
        );
    }
}
