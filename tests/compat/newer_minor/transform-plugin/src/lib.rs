//! A plugin built against transform-interface 1.2.0: reverses text.

use transform_interface::{BoxError, Context, Direction, Info, Transform, export_transform};

struct Reverse;

impl Transform for Reverse {
    fn init(_: &Context<'_>) -> Result<Self, BoxError> {
        mark("transform-1.2");
        Ok(Reverse)
    }

    fn info(&self) -> Info {
        Info {
            summary: "reverses text (built against 1.2.0)".to_owned(),
            inverse: Some("reverse".to_owned()),
        }
    }

    fn apply(&self, text: &str, _: Direction) -> Result<String, BoxError> {
        Ok(text.chars().rev().collect())
    }

    fn length(&self, text: &str) -> u64 {
        text.chars().count() as u64
    }
}

/// Proves to the tests whether the host ever ran this plugin's code: with
/// `GREETER_COMPAT_MARKERS` set, `init` leaves a file named after the plugin.
fn mark(name: &str) {
    if let Some(dir) = std::env::var_os("GREETER_COMPAT_MARKERS") {
        let _ = std::fs::write(std::path::Path::new(&dir).join(name), b"init ran\n");
    }
}

export_transform!(Reverse, name = "transform-1.2");

open_marker::mark_opens!("compat_newer_minor_transform");
