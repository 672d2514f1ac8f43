//! A plugin built against greeter-interface 1.0.0.

use greeter_interface::{BoxError, Greeter, export_plugin};

struct Compat;

impl Greeter for Compat {
    fn init() -> Result<Self, BoxError> {
        Ok(Compat)
    }

    fn greet(&self) -> Result<String, BoxError> {
        Ok("Hello from interface 1.0!".to_owned())
    }
}

export_plugin!(name = "compat-1.0", greeter = Compat);
