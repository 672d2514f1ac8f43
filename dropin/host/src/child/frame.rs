//! Child-process layer: the one framing of every channel between a host and
//! its child processes (the probe's request and report, an isolated
//! process's setup, calls and answers, its service calls): a `u32` length,
//! little-endian, then that many bytes, which hold one message in
//! [`dropin::wire`]'s encoding.
//!
//! The child is not trusted: a frame grows as its bytes arrive (a length it
//! claims allocates nothing), and a frame over the reader's limit is a
//! failure. Where the host waits for a child (an answer to its question),
//! it gives up at a deadline; the threads that serve an isolated process's
//! service calls wait for them as long as the process lives.

use std::{
    io::{self, Read, Write},
    process::{ChildStdin, ChildStdout},
    time::Instant,
};

use dropin::wire::{Decode, WireError};

use crate::sys;

/// The largest frame a child's answer may be: more is a failure (the
/// process is killed), not an allocation.
pub(crate) const MAX_FRAME: usize = 256 << 20;

/// The message of type `T` that `frame` holds, and nothing more.
///
/// # Errors
///
/// The frame does not decode as a `T`, or has bytes past it.
pub(crate) fn message<T: Decode>(frame: &[u8]) -> Result<T, WireError> {
    let mut input = frame;
    let message = T::decode(&mut input)?;
    if input.is_empty() {
        Ok(message)
    } else {
        Err(WireError(format!(
            "{} bytes past the end of the message",
            input.len()
        )))
    }
}

/// `bytes` as one frame.
fn framed(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a frame over 4 GiB"))?;
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(bytes);
    Ok(frame)
}

/// Writes one frame, in one write: one system call for a small frame.
pub(crate) fn write_frame(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(&framed(bytes)?)?;
    out.flush()
}

/// Reads one frame of at most `limit` bytes; `None` at the end of the
/// stream.
///
/// # Errors
///
/// The stream failed or ended inside a frame, or the frame is longer than
/// `limit` (`InvalidData`, holding a [`TooLong`]).
pub(crate) fn read_frame(input: &mut impl Read, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, TooLong(len)));
    }
    let mut bytes = Vec::new();
    input.take(len as u64).read_to_end(&mut bytes)?;
    if bytes.len() != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some(bytes))
}

/// A frame longer than its reader's limit: the error [`read_frame`]
/// returns inside its `InvalidData`, with the length the frame claimed.
#[derive(Debug)]
pub(crate) struct TooLong(pub(crate) usize);

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a frame of {} bytes, over the reader's limit", self.0)
    }
}

impl std::error::Error for TooLong {}

impl TooLong {
    /// The length `error` says a frame claimed, if it is a [`TooLong`].
    pub(crate) fn in_error(error: &io::Error) -> Option<usize> {
        Some(error.get_ref()?.downcast_ref::<Self>()?.0)
    }
}

/// Why a read or write with a deadline did not finish.
pub(crate) enum Wait {
    TimedOut,
    /// The pipe failed or ended: the process is ending.
    Failed,
    /// The process wrote what no frame is: a length over the limit, or
    /// bytes past the frame.
    Broken(&'static str),
}

/// The exit status of `child`, once it exits by `deadline`; `None` if it
/// is still running then. Looks every millisecond.
pub(crate) fn exit_by(
    child: &mut std::process::Child,
    deadline: Instant,
) -> io::Result<Option<std::process::ExitStatus>> {
    loop {
        match child.try_wait()? {
            Some(status) => return Ok(Some(status)),
            None if Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            None => return Ok(None),
        }
    }
}

/// The time `timeout` from now; far in the future, not a panic, for a
/// timeout too long for the clock.
pub(crate) fn deadline_in(timeout: std::time::Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Writes one frame, waiting for room in the pipe at most until
/// `deadline`. The pipe must be non-blocking.
pub(crate) fn write_frame_until(
    stdin: &mut ChildStdin,
    bytes: &[u8],
    deadline: Instant,
) -> Result<(), Wait> {
    let frame = framed(bytes).map_err(|_| Wait::Failed)?;
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

/// Reads one frame of at most `limit` bytes, giving up at `deadline`;
/// bytes past the frame are a failure (one question, one answer).
pub(crate) fn read_frame_until(
    stdout: &mut ChildStdout,
    limit: usize,
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
        let wanted = frame.len() + n;
        if len.is_some_and(|len| wanted > 4 + len) {
            return Err(Wait::Broken("bytes past its answer"));
        }
        if wanted > frame.capacity() {
            // Doubling, but never past the length the header declared: the
            // host holds at most that (and `limit`), however the bytes come.
            let capacity = len.map_or(wanted, |len| {
                (frame.capacity() * 2).max(wanted).min(4 + len)
            });
            frame.reserve_exact(capacity - frame.len());
        }
        frame.extend_from_slice(&chunk[..n]);
        if len.is_none() && frame.len() >= 4 {
            let header: [u8; 4] = frame[..4].try_into().expect("four bytes");
            let claimed = u32::from_le_bytes(header) as usize;
            if claimed > limit {
                return Err(Wait::Broken("an answer longer than the limit"));
            }
            if frame.len() > 4 + claimed {
                return Err(Wait::Broken("bytes past its answer"));
            }
            len = Some(claimed);
        }
    }
    if len.is_some_and(|len| frame.len() != 4 + len) {
        return Err(Wait::Failed);
    }
    frame.drain(..4);
    Ok(Some(frame))
}

/// A wait for a pipe, as an outcome: ready, past the deadline, or failed.
fn waited(ready: io::Result<bool>) -> Result<(), Wait> {
    match ready {
        Ok(true) => Ok(()),
        Ok(false) => Err(Wait::TimedOut),
        Err(_) => Err(Wait::Failed),
    }
}
