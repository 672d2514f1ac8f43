//! What the host and an isolated process say to each other: the setup,
//! the ready answer, saved state, and length-prefixed frames, read and
//! written with a deadline on the host's side.

use std::{
    io::{self, Read, Write},
    process::{ChildStdin, ChildStdout},
    time::Instant,
};

use dropin::{CallError, CallErrorKind, abi::Remote, wire::Decode};

use crate::sys;

use super::*;

/// What the host tells the child before anything else; on the wire, its
/// fields in order (the encoding `#[derive(dropin::Stable)]` gives).
#[derive(dropin::Stable)]
pub(super) struct Setup {
    pub(super) path: Vec<u8>,
    pub(super) copy: Vec<u8>,
    pub(super) config: String,
    pub(super) accepted: String,
    pub(super) host_version: String,
    pub(super) allow_panic_abort: bool,
    pub(super) allow_executable_stack: bool,
    /// What the earlier generation saved, for the plugin's `init`.
    pub(super) previous: Option<Vec<u8>>,
    pub(super) previous_version: u32,
    /// The services the host serves on file descriptor 3, if any: their
    /// trait's name and the version of the interface crate, tab-separated.
    pub(super) services: Option<String>,
}

/// What the child answers once its plugin is loaded; on the wire, its
/// fields in order.
#[derive(dropin::Stable)]
pub(super) struct Ready {
    pub(super) name: String,
    pub(super) version: String,
    pub(super) interface_version: String,
    pub(super) host_requirement: String,
    pub(super) provided: u64,
    /// Whether the plugin's `init` received the state it was handed.
    pub(super) took_state: bool,
}

/// Writes one frame: a `u32` length, then the bytes.
pub(super) fn write_frame(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a frame over 4 GiB"))?;
    // One write: one system call for a small frame.
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(bytes);
    out.write_all(&frame)?;
    out.flush()
}

/// Reads one frame; `None` at the end of the stream.
pub(super) fn read_frame(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let mut bytes = vec![0; u32::from_le_bytes(len) as usize];
    input.read_exact(&mut bytes)?;
    Ok(Some(bytes))
}

/// The method number that asks an isolated process for its plugin's saved
/// state; no interface has that many methods.
pub(super) const SAVE_METHOD: u32 = u32::MAX;

/// A saved state on the wire: the version, then the bytes.
#[derive(dropin::Stable)]
pub(super) struct Saved {
    pub(super) version: u32,
    pub(super) bytes: Vec<u8>,
}

/// What an isolated plugin saves for its next generation.
///
/// # Errors
///
/// The plugin's error, or how its process failed.
pub(crate) fn save_state(
    remote: &dyn Remote,
    plugin: &str,
) -> Result<Option<crate::load::Saved>, CallError> {
    let answer = remote.call(SAVE_METHOD as usize, Vec::new())?;
    let mut input = answer.as_slice();
    let saved = <Option<Saved>>::decode(&mut input)
        .ok()
        .filter(|_| input.is_empty())
        .ok_or_else(|| {
            CallError::from_parts(
                CallErrorKind::Failed,
                plugin,
                "its process sent a saved state that does not decode".to_owned(),
                None,
            )
        })?;
    Ok(saved.map(|Saved { version, bytes }| (version, bytes)))
}

pub(super) enum Wait {
    TimedOut,
    /// The pipe failed or ended: the process is ending.
    Failed,
}

/// Writes one frame, waiting for room in the pipe at most until
/// `deadline`.
pub(super) fn write_frame_until(
    stdin: &mut ChildStdin,
    bytes: &[u8],
    deadline: Instant,
) -> Result<(), Wait> {
    let len = u32::try_from(bytes.len()).map_err(|_| Wait::Failed)?;
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(bytes);
    let mut written = 0;
    while written < frame.len() {
        match stdin.write(&frame[written..]) {
            Ok(0) => return Err(Wait::Failed),
            Ok(n) => written += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                waited(sys::wait_writable(stdin, deadline))?;
            }
            Err(_) => return Err(Wait::Failed),
        }
    }
    Ok(())
}

/// Reads one frame, giving up at `deadline`. The process is not trusted:
/// the frame grows as its bytes arrive (a length it claims allocates
/// nothing), and bytes past the frame are a failure.
pub(super) fn read_frame_until(
    stdout: &mut ChildStdout,
    deadline: Instant,
) -> Result<Option<Vec<u8>>, Wait> {
    let mut frame = Vec::new();
    let mut chunk = [0; 16 * 1024];
    let mut len = None;
    while len.is_none_or(|len| frame.len() < 4 + len) {
        waited(sys::wait_readable(stdout, deadline))?;
        let n = match stdout.read(&mut chunk) {
            Ok(0) if frame.is_empty() => return Ok(None),
            Ok(0) => return Err(Wait::Failed),
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(Wait::Failed),
        };
        frame.extend_from_slice(&chunk[..n]);
        if len.is_none() && frame.len() >= 4 {
            let header: [u8; 4] = frame[..4].try_into().expect("four bytes");
            let claimed = u32::from_le_bytes(header) as usize;
            if claimed > MAX_FRAME {
                return Err(Wait::Failed);
            }
            len = Some(claimed);
        }
    }
    if len.is_some_and(|len| frame.len() != 4 + len) {
        // Only one call is ever in flight: nothing may follow its answer.
        return Err(Wait::Failed);
    }
    frame.drain(..4);
    Ok(Some(frame))
}

/// A wait for a pipe, as a call's outcome: ready, past the deadline, or
/// failed.
pub(super) fn waited(ready: io::Result<bool>) -> Result<(), Wait> {
    match ready {
        Ok(true) => Ok(()),
        Ok(false) => Err(Wait::TimedOut),
        Err(_) => Err(Wait::Failed),
    }
}

/// The first byte of an isolated process's answer to the setup: its plugin
/// is ready, was refused, or its own `init` failed.
pub(super) const STARTED: u8 = 0;
/// See [`STARTED`].
pub(super) const REFUSED: u8 = 1;
/// See [`STARTED`].
pub(super) const INIT_FAILED: u8 = 2;

/// Why an isolated process did not start its plugin.
#[derive(Debug)]
pub(super) enum NotStarted {
    /// The plugin's own `init` failed or panicked, with its message: the
    /// same error, and the same words, as when it runs in the host.
    Init(String),
    /// Anything else, in words: the process could not be started or spoken
    /// to, or refused the library.
    Other(String),
}

impl From<String> for NotStarted {
    fn from(reason: String) -> Self {
        Self::Other(reason)
    }
}

impl std::fmt::Display for NotStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Init(message) => write!(f, "plugin failed to initialise: {message}"),
            Self::Other(reason) => f.write_str(reason),
        }
    }
}
