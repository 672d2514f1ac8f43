//! The program that probes and runs the `noop` plugin isolated, for
//! `call/isolated`: the loader starts it again as a probe or as an isolated
//! plugin's process.

use noop_interface::NoopPlugin;

fn main() {
    dropin_host::probe::serve_if_requested();
    dropin_host::isolation::serve_if_requested::<NoopPlugin>();
    eprintln!("noop-runner: run by the loader only (DROPIN_PROBE or DROPIN_ISOLATED)");
    std::process::exit(2);
}
