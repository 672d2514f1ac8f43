//! Platforms without Unix's owners, modes, descriptors and process
//! controls: what can be done with `std` alone, and `None` for what the
//! platform does not tell.

use std::{
    collections::HashMap,
    fs::{DirBuilder, File, Metadata, OpenOptions},
    io::{self, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::ExitStatus,
};

use super::{FileTimes, Space};

/// The user this process acts as: no such notion here.
pub(crate) fn effective_uid() -> Option<u32> {
    None
}

/// The user this process runs as: no such notion here.
pub(crate) fn real_uid() -> Option<u32> {
    None
}

/// The owner and permission bits of a file: no such notion here.
pub(crate) fn owner_and_mode(_meta: &Metadata) -> Option<(u32, u32)> {
    None
}

/// Options to open a file for reading.
pub(crate) fn untrusted_open_options(_follow_links: bool) -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true);
    options
}

/// Options to create a new file (never an existing one).
pub(crate) fn new_file_options(_mode: u32, _follow_links: bool) -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    options
}

/// A builder of folders.
pub(crate) fn dir_builder(_mode: u32) -> DirBuilder {
    DirBuilder::new()
}

/// What kind of special file `meta` describes: not told here.
pub(crate) fn special_kind(_meta: &Metadata) -> Option<&'static str> {
    None
}

/// Fills `buf` from `file` at `offset`.
pub(crate) fn read_at(mut file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// The times of the file `meta` describes: its modification time, also as
/// its change time; no identity.
pub(crate) fn file_times(meta: &Metadata) -> FileTimes {
    let modified = meta
        .modified()
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or((0, 0), |d| {
            (d.as_secs() as i64, i64::from(d.subsec_nanos()))
        });
    FileTimes {
        id: (0, 0),
        modified,
        changed: modified,
    }
}

/// Whether the file `meta` describes was modified in the last `seconds`
/// seconds (or its time cannot be read).
pub(crate) fn changed_within(meta: &Metadata, seconds: i64) -> bool {
    meta.modified()
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .is_none_or(|age| (age.as_secs() as i64) < seconds)
}

/// Whether some process has `file` open for writing: not told here.
pub(crate) fn open_for_writing(_file: &File) -> Option<bool> {
    None
}

/// What the file system of `dir` allows: not told here.
pub(crate) fn space(_dir: &Path) -> Option<Space> {
    None
}

/// The most this process may write to one file: no limit known here.
pub(crate) fn file_size_limit() -> u64 {
    u64::MAX
}

/// The bytes of memory mapped from each file: not told here.
pub(crate) fn mapped_bytes() -> Option<HashMap<PathBuf, u64>> {
    None
}

/// The notes of the loaded object that holds some code: not told here.
pub(crate) fn search_loaded_notes(
    _code: *const (),
    _find: fn(&[u8], u64) -> Option<&[u8]>,
) -> Option<Vec<u8>> {
    None
}

/// Runs a handler when the process calls `exit`: not supported on this
/// platform, where plugin code that calls `exit` ends the host with the
/// status it asked for.
pub(crate) fn at_exit(_handler: extern "C" fn()) {}

/// Ends the process with `status` (its exit handlers run: this platform
/// registers none for the loader).
pub(crate) fn exit_now(status: i32) -> ! {
    std::process::exit(status)
}

/// The signal that killed a process: no signals here.
pub(crate) fn signal_of(_status: ExitStatus) -> Option<i32> {
    None
}

/// A channel to another process: none on this platform.
#[derive(Debug)]
pub(crate) enum Channel {}

impl io::Read for &Channel {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        match **self {}
    }
}

impl io::Write for &Channel {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        match **self {}
    }

    fn flush(&mut self) -> io::Result<()> {
        match **self {}
    }
}

/// A path sent as bytes by the host.
pub(crate) fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
}

/// Nothing to contain here: no PID namespaces.
pub(crate) fn contain_descendants() -> io::Result<()> {
    Ok(())
}

/// Whether standard input is a pipe: not told apart here, so the nonce in
/// the first frame is the only check.
pub(crate) fn stdin_is_pipe() -> bool {
    true
}

/// In an isolated process: what was standard output, for the frames.
pub(crate) fn protocol_output() -> io::Result<File> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "isolated plugins need a Unix platform",
    ))
}

/// The socket pairs of an isolated process: none here.
pub(crate) fn child_channels<const N: usize>(
    _: &mut std::process::Command,
) -> io::Result<[(Channel, Channel); N]> {
    Err(io::Error::other("not supported on this platform"))
}

/// In an isolated process: its end of a channel, none here.
///
/// # Safety
///
/// None needed here; the signature is Unix's.
pub(crate) unsafe fn inherited_channel(_: i32) -> io::Result<Option<Channel>> {
    Ok(None)
}

/// Writes to a child's standard input wait here.
pub(crate) fn set_nonblocking(_: &std::process::ChildStdin) -> io::Result<()> {
    Ok(())
}

/// Whether the child's pipe has room: the write itself waits here.
pub(crate) fn wait_writable(
    _: &std::process::ChildStdin,
    _: std::time::Instant,
) -> io::Result<bool> {
    Ok(true)
}

/// Whether the child's pipe has bytes: the read itself waits here.
pub(crate) fn wait_readable(
    _: &std::process::ChildStdout,
    _: std::time::Instant,
) -> io::Result<bool> {
    Ok(true)
}

/// Sets up a child before it runs: nothing on this platform, which has
/// neither the parent-death signal nor namespaces.
pub(crate) fn confine(_: &mut std::process::Command, _: super::Limits, _: bool) {}
