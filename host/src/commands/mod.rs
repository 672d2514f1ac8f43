//! One file per command of `greeter-host`.

pub(crate) mod check;
pub(crate) mod greet;
pub(crate) mod list;
pub(crate) mod lock;
pub(crate) mod watch;
