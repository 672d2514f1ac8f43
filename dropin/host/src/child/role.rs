//! Whether this process is a child its host started: never the environment
//! alone. The host puts a fresh random nonce in the child's environment and
//! the same nonce in the first frame it writes to the child's standard
//! input, a pipe it created; a child serves only if both agree. A variable
//! set by hand, inherited by a plugin's own descendants, or left in a
//! shell, turns nothing into a child: the process says so and exits.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    io::{self, Write},
};

use crate::digest::hex;

/// A fresh nonce for one child: 16 bytes from two keyed hashes, whose keys
/// the standard library draws from the operating system's random source.
pub(crate) fn nonce() -> String {
    let mut bytes = [0; 16];
    for (i, half) in bytes.chunks_mut(8).enumerate() {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_usize(i);
        half.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    hex(&bytes)
}

/// Why this process does not serve as a child.
#[derive(Debug)]
pub(crate) struct NotStarted(pub(crate) String);

/// Becomes the child the environment variable `variable`, set to `value`,
/// says this process is: its nonce, once standard input is the host's pipe
/// and the plugin's process is split off below this one
/// ([`contain_descendants`](crate::sys::contain_descendants)). Otherwise
/// this process says why (as `who`) and exits: it never goes on as the
/// program it is.
pub(crate) fn enter(variable: &str, value: &str, who: &str) -> String {
    let nonce = expected(variable, value).unwrap_or_else(|not| refuse(not));
    if let Err(error) = crate::sys::contain_descendants() {
        let _ = writeln!(io::stderr(), "{who}: {error}");
        std::process::exit(1);
    }
    nonce
}

/// The nonce `value` (the environment variable `variable`'s) names, once
/// standard input is a pipe, as the host gives its children.
fn expected(variable: &str, value: &str) -> Result<String, NotStarted> {
    let nonce = value.to_owned();
    if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NotStarted(format!(
            "{variable} is set, but not to a value a dropin loader gives its children"
        )));
    }
    if !crate::sys::stdin_is_pipe() {
        return Err(NotStarted(format!(
            "{variable} is set, but standard input is not the pipe a dropin loader gives its \
             children"
        )));
    }
    Ok(nonce)
}

/// Checks the nonce the host's first frame carries against `expected`.
pub(crate) fn check(variable: &str, expected: &str, found: &[u8]) -> Result<(), NotStarted> {
    if found != expected.as_bytes() {
        return Err(NotStarted(format!(
            "{variable} is set, but the first message on standard input does not carry its nonce"
        )));
    }
    Ok(())
}

/// Says why this process does not serve, and exits with status 2.
pub(crate) fn refuse(NotStarted(why): NotStarted) -> ! {
    let _ = writeln!(
        io::stderr(),
        "dropin: {why}: this process was not started by a dropin loader; unset the variable to \
         run the program normally"
    );
    std::process::exit(2)
}
