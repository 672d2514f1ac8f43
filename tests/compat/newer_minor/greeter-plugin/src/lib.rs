//! A plugin built against greeter-interface 2.2.0.

use greeter_interface::{BoxError, Context, Greeter, GreeterHostHandle, export_greeter};

struct Compat {
    host: GreeterHostHandle,
}

impl Greeter for Compat {
    fn init(context: &Context<'_>) -> Result<Self, BoxError> {
        mark("greeter-2.2");
        Ok(Compat {
            host: context.services::<GreeterHostHandle>(),
        })
    }

    fn greet(&self) -> Result<String, BoxError> {
        Ok("Hello from interface 2.2!".to_owned())
    }

    fn greet_to(&self, name: &str) -> Result<String, BoxError> {
        // Asks the host for a service of 2.2: a 2.1 host lacks it.
        if name == "clock" {
            return Ok(match self.host.time_of_day() {
                Ok(time) => format!("It is {time}."),
                Err(error) => format!("{error} ({:?})", error.kind()),
            });
        }
        if name == "store" {
            return Ok(format!("{:?}", self.host.load("key")));
        }
        Ok(format!("Hello from interface 2.2, {name}!"))
    }

    fn farewell(&self) -> Result<String, BoxError> {
        Ok("Goodbye from interface 2.2!".to_owned())
    }
}

/// Proves to the tests whether the host ever ran this plugin's code: with
/// `GREETER_COMPAT_MARKERS` set, `init` leaves a file named after the plugin.
fn mark(name: &str) {
    if let Some(dir) = std::env::var_os("GREETER_COMPAT_MARKERS") {
        let _ = std::fs::write(std::path::Path::new(&dir).join(name), b"init ran\n");
    }
}

export_greeter!(Compat, name = "greeter-2.2");

open_marker::mark_opens!("compat_newer_minor_greeter");
