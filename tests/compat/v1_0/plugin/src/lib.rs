//! A plugin built against greeter-interface 1.0.0.

use greeter_interface::{BoxError, Greeter, export_plugin};

struct Compat;

impl Greeter for Compat {
    fn init() -> Result<Self, BoxError> {
        mark("compat-1.0");
        Ok(Compat)
    }

    fn greet(&self) -> Result<String, BoxError> {
        Ok("Hello from interface 1.0!".to_owned())
    }
}

/// Proves to the tests whether the host ever ran this plugin's code: with
/// `GREETER_COMPAT_MARKERS` set, `init` leaves a file named after the plugin.
fn mark(name: &str) {
    if let Some(dir) = std::env::var_os("GREETER_COMPAT_MARKERS") {
        let _ = std::fs::write(std::path::Path::new(&dir).join(name), b"init ran\n");
    }
}

export_plugin!(name = "compat-1.0", greeter = Compat);

open_marker::mark_opens!("compat_v1_0");
