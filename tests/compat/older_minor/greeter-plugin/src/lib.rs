//! A plugin built against greeter-interface 2.0.0.

use greeter_interface::{BoxError, Context, Greeter, export_greeter};

struct Compat;

impl Greeter for Compat {
    fn init(_: &Context<'_>) -> Result<Self, BoxError> {
        mark("greeter-2.0");
        Ok(Compat)
    }

    fn greet(&self) -> Result<String, BoxError> {
        Ok("Hello from interface 2.0!".to_owned())
    }
}

/// Proves to the tests whether the host ever ran this plugin's code: with
/// `GREETER_COMPAT_MARKERS` set, `init` leaves a file named after the plugin.
fn mark(name: &str) {
    if let Some(dir) = std::env::var_os("GREETER_COMPAT_MARKERS") {
        let _ = std::fs::write(std::path::Path::new(&dir).join(name), b"init ran\n");
    }
}

export_greeter!(Compat, name = "greeter-2.0");

open_marker::mark_opens!("compat_older_minor_greeter");
