//! A greeter plugin built with panic = "abort": its first panic would end
//! the host's process instead of coming back as an error.

use greeter_interface::{BoxError, Context, Greeter, export_greeter};

struct Aborts;

impl Greeter for Aborts {
    fn init(_: &Context<'_>) -> Result<Self, BoxError> {
        Ok(Aborts)
    }

    fn greet(&self) -> Result<String, BoxError> {
        Ok("Hello, until the first panic!".to_owned())
    }
}

export_greeter!(Aborts, name = "aborts");

open_marker::mark_opens!("compat_panic_abort");
