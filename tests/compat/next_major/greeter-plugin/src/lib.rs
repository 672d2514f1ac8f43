//! A plugin built against greeter-interface 3.0.0.

use greeter_interface::{BoxError, Context, Greeter, export_greeter};

struct Compat;

impl Greeter for Compat {
    fn init(_: &Context<'_>) -> Result<Self, BoxError> {
        mark("greeter-3.0");
        Ok(Compat)
    }

    fn greet(&self) -> Result<String, BoxError> {
        Ok("Hello from interface 3.0!".to_owned())
    }

    fn greet_to(&self, name: &str) -> Result<String, BoxError> {
        Ok(format!("Hello from interface 3.0, {name}!"))
    }
}

/// Proves to the tests whether the host ever ran this plugin's code: with
/// `GREETER_COMPAT_MARKERS` set, `init` leaves a file named after the plugin.
fn mark(name: &str) {
    if let Some(dir) = std::env::var_os("GREETER_COMPAT_MARKERS") {
        let _ = std::fs::write(std::path::Path::new(&dir).join(name), b"init ran\n");
    }
}

export_greeter!(Compat, name = "greeter-3.0");

open_marker::mark_opens!("compat_next_major_greeter");
