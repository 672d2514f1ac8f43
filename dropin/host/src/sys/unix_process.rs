//! Child processes on Unix: the descriptors an isolated plugin's process
//! talks over, waiting on its pipes with a deadline, and confining it.

use std::{
    ffi::OsString,
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, RawFd},
        unix::{ffi::OsStringExt, net::UnixStream, process::CommandExt},
    },
    path::PathBuf,
    process::{ChildStdin, ChildStdout, Command},
    time::Instant,
};

/// A channel to another process: a Unix socket.
pub(crate) type Channel = UnixStream;

/// A path sent as bytes by the host.
pub(crate) fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes))
}

/// Whether standard input is a pipe, as a loader gives its children.
pub(crate) fn stdin_is_pipe() -> bool {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fstat` of descriptor 0 into a local buffer; no descriptor
    // is taken over.
    if unsafe { libc::fstat(0, stat.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: `fstat` succeeded, so it filled the buffer.
    let mode = unsafe { stat.assume_init() }.st_mode;
    mode & libc::S_IFMT == libc::S_IFIFO
}

/// In a child the host started with a PID namespace for its children
/// (every probe and isolated process on Linux): splits into three
/// processes, so that the plugin and everything it starts end together. This
/// process, the host's child, waits and then ends as the plugin's process
/// ended (the same exit status, or the same signal); its child is process 1
/// of the new namespace, which only reaps; and its grandchild, process 2,
/// returns from here and serves the plugin. Each dies with its parent
/// (`PR_SET_PDEATHSIG`), and when process 1 dies the kernel kills every
/// process of the namespace: so the host killing its child (a timeout, a
/// retired generation, a disabled plugin), the host dying by any signal, or
/// the plugin's process ending, each ends every descendant the plugin left.
/// The plugin does not run as process 1, which would ignore the signals it
/// sends itself (an `abort` would not end it by `SIGABRT`). Returns at once
/// where there is no such namespace. Call it before any thread starts.
#[cfg(target_os = "linux")]
pub(crate) fn contain_descendants() -> io::Result<()> {
    let namespace = |name: &str| std::fs::read_link(format!("/proc/self/ns/{name}"));
    let own = namespace("pid")?;
    // A namespace made for the children, with none yet, reads as missing.
    match namespace("pid_for_children") {
        Ok(children) if children == own => return Ok(()),
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut status_pipe = [0; 2];
    // SAFETY: a pipe into a local array; fork, prctl, waitpid, read, write,
    // close, signal, raise and _exit in a process with one thread (the
    // caller's contract), on descriptors this process owns.
    unsafe {
        if libc::pipe2(status_pipe.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(io::Error::last_os_error());
        }
        // The two waiting processes are not dumpable: a process without
        // `CAP_SYS_PTRACE` over them (the plugin's, unless an unconfined
        // root host's) can neither trace them nor write their memory, so it
        // cannot make them forget the signal that ends each with its
        // parent. The plugin's process gets back what this one had.
        let dumpable = libc::prctl(libc::PR_GET_DUMPABLE);
        if dumpable < 0 || libc::prctl(libc::PR_SET_DUMPABLE, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        let [read_end, write_end] = status_pipe;
        // What the two waiting processes give up: the host's pipes and the
        // services socket, so that the host sees them close when the plugin's
        // process ends.
        let release = || {
            for fd in [0, 1, 3] {
                if fd != read_end && fd != write_end {
                    libc::close(fd);
                }
            }
        };
        match libc::fork() {
            -1 => return Err(io::Error::last_os_error()),
            0 => {}
            reaper => {
                // The host's child: waits for the plugin's status.
                release();
                libc::close(write_end);
                let mut status = [0u8; 4];
                let got = libc::read(read_end, status.as_mut_ptr().cast(), 4);
                libc::waitpid(reaper, std::ptr::null_mut(), 0);
                if got != 4 {
                    libc::_exit(1);
                }
                let status = i32::from_ne_bytes(status);
                if libc::WIFSIGNALED(status) {
                    let signal = libc::WTERMSIG(status);
                    libc::signal(signal, libc::SIG_DFL);
                    libc::raise(signal);
                }
                libc::_exit(if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    1
                });
            }
        }
        // Process 1 of the namespace. Its parent is outside it, so it
        // cannot tell whether the parent died before the line below; then
        // the host, whose pipes the plugin serves, is gone or has dropped
        // them, and the plugin's process ends on their end, and this one
        // with it.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            libc::_exit(1);
        }
        match libc::fork() {
            -1 => libc::_exit(1),
            0 => {}
            plugin => {
                release();
                libc::close(read_end);
                loop {
                    let mut status = 0;
                    let ended = libc::waitpid(-1, &raw mut status, 0);
                    if ended == plugin {
                        let bytes = status.to_ne_bytes();
                        libc::write(write_end, bytes.as_ptr().cast(), 4);
                        libc::_exit(0);
                    }
                    if ended < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted
                    {
                        libc::_exit(1);
                    }
                }
            }
        }
        // Process 2: the plugin's, as dumpable as this process was.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
            || libc::prctl(libc::PR_SET_DUMPABLE, dumpable) != 0
            || libc::getppid() != 1
        {
            libc::_exit(1);
        }
        libc::close(read_end);
        libc::close(write_end);
    }
    Ok(())
}

/// In an isolated process: what was standard output, for the frames;
/// standard output itself then writes to standard error.
pub(crate) fn protocol_output() -> io::Result<File> {
    // SAFETY: duplicating and replacing the standard descriptors, which
    // this process owns; nothing else runs yet.
    unsafe {
        // Close-on-exec: a program the plugin starts must not hold the
        // pipe the host waits on, nor write into it.
        let fd = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if fd < 0 || libc::dup2(2, 1) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(fd))
    }
}

/// The socket pairs of an isolated process: for each, the host's end, and
/// the child's, which `command` puts at file descriptor 3, 4, ... in order;
/// then `shared`'s memory at the next descriptor.
pub(crate) fn child_channels<const N: usize>(
    command: &mut Command,
    shared: &SharedMemory,
) -> io::Result<[(Channel, Channel); N]> {
    let mut pairs = Vec::with_capacity(N);
    for _ in 0..N {
        pairs.push(UnixStream::pair()?);
    }
    let pairs: [(Channel, Channel); N] =
        pairs.try_into().unwrap_or_else(|_| unreachable!("N pairs"));
    // The child's copy is made in a fixed array: no allocation after fork.
    assert!(N < 8, "at most 7 channels and the shared memory");
    let mut fds = vec![0; N + 1];
    for (fd, pair) in fds.iter_mut().zip(&pairs) {
        *fd = pair.1.as_raw_fd();
    }
    fds[N] = shared.fd.as_raw_fd();
    // SAFETY: fcntl, dup2 and close are async-signal-safe; nothing here
    // allocates.
    unsafe {
        command.pre_exec(move || {
            // First out of the way of 3, 4, ...: a child end may sit on one
            // of them.
            let mut high = [0; 8];
            let high = &mut high[..fds.len()];
            for (i, fd) in fds.iter().enumerate() {
                high[i] = libc::fcntl(*fd, libc::F_DUPFD, 16);
                if high[i] < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().enumerate() {
                // The copy at 3 + i is kept open across exec.
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(*fd);
            }
            Ok(())
        });
    }
    Ok(pairs)
}

/// In an isolated process: its end of a channel the host put at descriptor
/// `fd` (3, 4, ...).
///
/// # Safety
///
/// Call once per descriptor, in a process whose host says (in its setup)
/// that it put a channel there: the channel returned owns it.
pub(crate) unsafe fn inherited_channel(fd: i32) -> io::Result<Option<Channel>> {
    // The host put a socket there: anything else (a wrapper program that
    // closed or reused the descriptor) is not the host.
    // SAFETY: fstat writes into the struct it is given.
    let mut stat = unsafe { std::mem::zeroed::<libc::stat>() };
    // SAFETY: as above; the descriptor may be anything, fstat only reads it.
    if unsafe { libc::fstat(fd, &raw mut stat) } != 0
        || stat.st_mode & libc::S_IFMT != libc::S_IFSOCK
    {
        return Err(io::Error::other(format!(
            "descriptor {fd} is not the host's socket"
        )));
    }
    // Not inherited by programs the plugin starts.
    // SAFETY: fcntl on a descriptor known to be open.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the host put the process's end of a channel at `fd` (the
    // caller's contract; and it is a socket), and nothing else owns it.
    Ok(Some(unsafe { UnixStream::from_raw_fd(fd) }))
}

/// Memory mapped in this process and shared with a child process, which
/// finds it at a descriptor (`child_channels`) and maps it too
/// ([`SharedMemory::inherited`]). Its size cannot change once made: a
/// process that could shrink it would make the other's reads fault.
pub(crate) struct SharedMemory {
    at: std::ptr::NonNull<u8>,
    len: usize,
    fd: std::os::fd::OwnedFd,
}

// SAFETY: a mapping of shared memory, reached only through atomics (its
// users' contract).
unsafe impl Send for SharedMemory {}
// SAFETY: as above.
unsafe impl Sync for SharedMemory {}

impl SharedMemory {
    /// `len` bytes of zeroes, shared with the children the descriptor is
    /// given to.
    pub(crate) fn create(len: usize) -> io::Result<Self> {
        let fd = anonymous_memory(len)?;
        // SAFETY: a new mapping of a descriptor this process owns, `len`
        // bytes long.
        let at = unsafe { map_shared(fd.as_raw_fd(), len)? };
        Ok(Self { at, len, fd })
    }

    /// In a child: the memory its parent put at descriptor `fd`, at least
    /// `len` bytes long.
    ///
    /// # Safety
    ///
    /// Call once per descriptor, in a process whose parent says it put
    /// shared memory there: this value owns the descriptor.
    pub(crate) unsafe fn inherited(fd: RawFd, len: usize) -> io::Result<Self> {
        // SAFETY: fstat writes into the struct it is given.
        let mut stat = unsafe { std::mem::zeroed::<libc::stat>() };
        // SAFETY: as above; the descriptor may be anything, fstat only reads it.
        if unsafe { libc::fstat(fd, &raw mut stat) } != 0
            || stat.st_mode & libc::S_IFMT != libc::S_IFREG
            || usize::try_from(stat.st_size).map_or(true, |size| size < len)
        {
            return Err(io::Error::other(format!(
                "descriptor {fd} is not the host's shared memory of {len} bytes"
            )));
        }
        // SAFETY: the caller's contract: nothing else owns `fd`.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // Not inherited by programs the plugin starts.
        // SAFETY: fcntl on a descriptor known to be open.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new mapping of a regular file at least `len` long.
        let at = unsafe { map_shared(fd.as_raw_fd(), len)? };
        Ok(Self { at, len, fd })
    }

    /// The first byte.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.at.as_ptr()
    }

    /// How many bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping this value made, no longer used.
        unsafe { libc::munmap(self.at.as_ptr().cast(), self.len) };
    }
}

/// Maps `len` bytes of `fd`, shared, for reading and writing.
///
/// # Safety
///
/// `fd` must be open, at least `len` bytes long.
unsafe fn map_shared(fd: RawFd, len: usize) -> io::Result<std::ptr::NonNull<u8>> {
    // SAFETY: the caller's contract; a new mapping aliases nothing.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if at == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(std::ptr::NonNull::new(at.cast()).expect("a mapping is never at 0"))
}

/// A file of `len` zero bytes in memory, closed on exec, whose size can
/// never change again (sealed).
#[cfg(target_os = "linux")]
fn anonymous_memory(len: usize) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: a new descriptor, owned from here on; the name is a C string.
    let fd = unsafe {
        libc::memfd_create(
            c"dropin-calls".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just made, owned by nothing else.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: ftruncate and fcntl on a descriptor this process owns.
    unsafe {
        if libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) != 0
            || libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}

/// A file of `len` zero bytes in memory, closed on exec. Without seals on
/// this platform: a child could resize it, and the host's next read of it
/// would fault. (Not built or tested here: Linux is the platform CI runs.)
#[cfg(not(target_os = "linux"))]
fn anonymous_memory(len: usize) -> io::Result<std::os::fd::OwnedFd> {
    use std::hash::{BuildHasher, Hasher};
    // A name no other process can guess and take first.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let name = format!("/dropin-{}-{random:016x}\0", std::process::id());
    // SAFETY: a new object, unlinked at once, its descriptor owned from
    // here on.
    unsafe {
        let fd = libc::shm_open(
            name.as_ptr().cast(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        libc::shm_unlink(name.as_ptr().cast());
        let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
        if libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) != 0
            || libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// Waits while `word` holds `value`, at most `timeout` (for ever if
/// `None`); may return early, for no reason. `word` may be in memory shared
/// with another process.
#[cfg(target_os = "linux")]
pub(crate) fn wait_on(
    word: &std::sync::atomic::AtomicU32,
    value: u32,
    timeout: Option<std::time::Duration>,
) {
    let timeout = timeout.map(|left| libc::timespec {
        tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
        // Under 10^9: fits any `c_long`.
        tv_nsec: left.subsec_nanos() as libc::c_long,
    });
    let timeout = timeout
        .as_ref()
        .map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: `word` is a valid, aligned 32-bit word for the call; a shared
    // (not private) futex, since another process may wake it.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            value,
            timeout,
        );
    }
}

/// Wakes whatever waits on `word` ([`wait_on`]), in any process.
#[cfg(target_os = "linux")]
pub(crate) fn wake_all(word: &std::sync::atomic::AtomicU32) {
    // SAFETY: as in `wait_on`.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// Waits while `word` holds `value`, at most `timeout`: without a way to
/// sleep on a word shared between processes here, by looking again after
/// a millisecond (so a process waiting for calls wakes a thousand times a
/// second on this platform).
#[cfg(not(target_os = "linux"))]
pub(crate) fn wait_on(
    word: &std::sync::atomic::AtomicU32,
    value: u32,
    timeout: Option<std::time::Duration>,
) {
    let step = std::time::Duration::from_millis(1);
    if word.load(std::sync::atomic::Ordering::SeqCst) == value {
        std::thread::sleep(timeout.map_or(step, |left| left.min(step)));
    }
}

/// Nothing to wake where waiting looks again by itself.
#[cfg(not(target_os = "linux"))]
pub(crate) fn wake_all(_: &std::sync::atomic::AtomicU32) {}

/// Makes writes to a child's standard input return at once when the pipe
/// is full, instead of waiting.
pub(crate) fn set_nonblocking(stdin: &ChildStdin) -> io::Result<()> {
    let fd = stdin.as_raw_fd();
    // SAFETY: reading and setting the flags of a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Waits until the child's pipe has room, at most until `deadline`:
/// whether it has.
pub(crate) fn wait_writable(stdin: &ChildStdin, deadline: Instant) -> io::Result<bool> {
    wait_for(stdin.as_raw_fd(), libc::POLLOUT, deadline)
}

/// Waits until the child's pipe has bytes (or has ended), at most until
/// `deadline`: whether it has.
pub(crate) fn wait_readable(stdout: &ChildStdout, deadline: Instant) -> io::Result<bool> {
    wait_for(stdout.as_raw_fd(), libc::POLLIN, deadline)
}

/// Waits until `fd` is ready for `events` (or has ended), at most until
/// `deadline`: whether it is.
fn wait_for(fd: RawFd, events: libc::c_short, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let mut poll = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        let millis = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
        // SAFETY: one valid `pollfd`.
        let ready = unsafe { libc::poll(&raw mut poll, 1, millis) };
        if ready > 0 {
            return Ok(true);
        }
        let error = io::Error::last_os_error();
        if ready < 0 && error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Sets up the child before it runs the program: it dies with the host,
/// within its `limits` (which the caller checked can hold), and, if
/// `confined`, in a user namespace of its own with no capability left,
/// without new privileges, without a network, and with every file system
/// read-only.
#[cfg(target_os = "linux")]
pub(crate) fn confine(command: &mut Command, limits: super::Limits, confined: bool) {
    use std::os::unix::process::CommandExt;
    // Everything the child needs is prepared here: between fork and exec
    // only async-signal-safe calls may run, so no allocation.
    // SAFETY: getpid, geteuid and getegid are async-signal-safe.
    let (host, uid, gid) = unsafe { (libc::getpid(), libc::geteuid(), libc::getegid()) };
    let uid_map = format!("{uid} {uid} 1\n").into_bytes();
    let gid_map = format!("{gid} {gid} 1\n").into_bytes();
    let filter = system_call_filter();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The host may have died before the line above: then nobody
            // would kill this process, so it ends itself.
            if libc::getppid() != host {
                libc::_exit(1);
            }
            // Both the soft and the hard limit: the process cannot raise it.
            let set_limit = |resource, value: u64| {
                let limit = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &raw const limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            };
            if let Some(bytes) = limits.memory {
                set_limit(libc::RLIMIT_AS, bytes)?;
            }
            if confined {
                // No setuid program it runs gains privileges.
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // A user namespace of its own, whoever the host is (root
                // included), mapping this user to itself and nobody else; in
                // it, a network namespace of its own (a loopback interface
                // that is down and nothing else), a mount namespace of its
                // own, and an IPC namespace of its own (no System V or POSIX
                // message queue, semaphore or shared memory of the host's). The capabilities it has in them are dropped
                // below, so that nothing set up here can be undone.
                // And a PID namespace for its children (see
                // `contain_descendants`).
                let namespaces = libc::CLONE_NEWUSER
                    | libc::CLONE_NEWNET
                    | libc::CLONE_NEWNS
                    | libc::CLONE_NEWIPC
                    | libc::CLONE_NEWPID;
                if libc::unshare(namespaces) != 0 {
                    return Err(io::Error::last_os_error());
                }
                write_file(c"/proc/self/setgroups", b"deny")?;
                // Root without capabilities may not map user 0 (it would
                // need CAP_SETFCAP): its process then runs with no user
                // mapped, which grants nothing more.
                match write_file(c"/proc/self/uid_map", &uid_map) {
                    Err(error) if uid == 0 && error.raw_os_error() == Some(libc::EPERM) => {}
                    written => {
                        written?;
                        write_file(c"/proc/self/gid_map", &gid_map)?;
                    }
                }
                // Every mount read-only, in this namespace only: nothing
                // propagates back to the host's.
                if libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                // The new IPC namespace's message queues over the host's,
                // where it has them mounted: `mq_open` reaches the new
                // namespace's, but a path into the host's `/dev/mqueue`
                // would still receive (take) the host's messages. (POSIX
                // shared memory in `/dev/shm` is files, read like any other
                // file: the plugin's own private copy lives there.)
                if libc::mount(
                    c"mqueue".as_ptr(),
                    c"/dev/mqueue".as_ptr(),
                    c"mqueue".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                ) != 0
                {
                    let error = io::Error::last_os_error();
                    if error.raw_os_error() != Some(libc::ENOENT) {
                        return Err(error);
                    }
                }
                let read_only = MountAttr {
                    attr_set: MOUNT_ATTR_RDONLY,
                    attr_clr: 0,
                    propagation: 0,
                    userns_fd: 0,
                };
                if libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    c"/".as_ptr(),
                    AT_RECURSIVE,
                    &raw const read_only,
                    size_of::<MountAttr>(),
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                drop_capabilities()?;
                scope_and_filter(filter.as_deref())?;
            } else if uid == 0 {
                // A PID namespace for its children (see
                // `contain_descendants`); root needs no user namespace.
                if libc::unshare(libc::CLONE_NEWPID) != 0 {
                    return Err(io::Error::last_os_error());
                }
            } else {
                // Anyone else makes the PID namespace in a user namespace
                // of its own that maps this user to itself, and keeps what
                // it could do (it had no capability to lose).
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWPID) != 0 {
                    return Err(io::Error::last_os_error());
                }
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", &uid_map)?;
                write_file(c"/proc/self/gid_map", &gid_map)?;
            }
            // Set in the user namespace made above, where the kernel counts
            // this process and all it starts against it (Linux 5.14 and
            // later). Set before it, the namespace would keep it as the limit
            // of the user's processes all over the machine.
            if let Some(processes) = limits.processes {
                set_limit(libc::RLIMIT_NPROC, processes.into())?;
            }
            Ok(())
        });
    }
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[cfg(target_os = "linux")]
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

#[cfg(target_os = "linux")]
const MOUNT_ATTR_RDONLY: u64 = 0x1;
#[cfg(target_os = "linux")]
const AT_RECURSIVE: libc::c_int = 0x8000;

/// Writes `bytes` to the file at `path`, with async-signal-safe calls only.
#[cfg(target_os = "linux")]
fn write_file(path: &std::ffi::CStr, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: a C string path; `bytes` is valid for its length; the
    // descriptor is closed on every path.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        let error = io::Error::last_os_error();
        libc::close(fd);
        if written != bytes.len() as isize {
            return Err(error);
        }
    }
    Ok(())
}

/// The system calls a confined process may not make, as a seccomp filter:
/// - no new namespace (`unshare`, `setns`, `clone` with a namespace flag;
///   `clone3`, whose flags a filter cannot read, answers "not implemented",
///   so that the C library falls back to `clone`);
/// - no socket but an Internet one, which its empty network namespace
///   leaves nowhere to go: no Unix socket (`socket`, `socketpair`), so no
///   connection to a service listening on a path, and no `AF_VSOCK`, which
///   no network namespace holds;
/// - nothing that makes sockets or reaches other processes behind these
///   checks: no `io_uring` (its operations make sockets without a
///   `socket` call), no `ptrace` or `process_vm_readv`/`writev`, no kernel
///   keyrings (the session keyring is the host's);
/// - on x86-64, no x32 system call number (a second number for each call,
///   which the checks above would not match).
///
/// Any other architecture than the one the filter is written for kills the
/// process. `None` where no filter is written for this target: confinement
/// then fails, and the plugin is refused.
#[cfg(target_os = "linux")]
fn system_call_filter() -> Option<Vec<libc::sock_filter>> {
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return None;
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        // The first argument's low half sits at offset 16 on little-endian
        // targets only (big-endian AArch64 reports the same architecture).
        if cfg!(target_endian = "big") {
            return None;
        }
        use libc::{
            BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_RET, BPF_W,
            SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS,
        };
        // Where `struct seccomp_data` holds the system call's number, the
        // architecture and the low half of the first argument.
        const NR: u32 = 0;
        const ARCH_AT: u32 = 4;
        const ARG0: u32 = 16;
        let namespaces = (libc::CLONE_NEWNS
            | libc::CLONE_NEWCGROUP
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUSER
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | 0x80) as u32; // CLONE_NEWTIME
        let load = |at: u32| libc::sock_filter {
            code: (BPF_LD | BPF_W | BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: at,
        };
        let jump = |op: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
            code: (BPF_JMP | op | BPF_K) as u16,
            jt,
            jf,
            k,
        };
        let ret = |k: u32| libc::sock_filter {
            code: (BPF_RET | BPF_K) as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let errno = |code: i32| ret(SECCOMP_RET_ERRNO | code as u32);
        let mut filter = vec![
            load(ARCH_AT),
            jump(BPF_JEQ, ARCH, 1, 0),
            ret(SECCOMP_RET_KILL_PROCESS),
            load(NR),
        ];
        if cfg!(target_arch = "x86_64") {
            // __X32_SYSCALL_BIT: every x32 number is at or past it.
            filter.extend([jump(BPF_JGE, 0x4000_0000, 0, 1), errno(libc::ENOSYS)]);
        }
        // Refused outright, whatever the arguments.
        for (call, code) in [
            (libc::SYS_unshare, libc::EPERM),
            (libc::SYS_setns, libc::EPERM),
            (libc::SYS_clone3, libc::ENOSYS),
            (libc::SYS_socketpair, libc::EACCES),
            (libc::SYS_io_uring_setup, libc::ENOSYS),
            (libc::SYS_io_uring_enter, libc::ENOSYS),
            (libc::SYS_io_uring_register, libc::ENOSYS),
            (libc::SYS_ptrace, libc::EPERM),
            (libc::SYS_process_vm_readv, libc::EPERM),
            (libc::SYS_process_vm_writev, libc::EPERM),
            (libc::SYS_keyctl, libc::EPERM),
            (libc::SYS_add_key, libc::EPERM),
            (libc::SYS_request_key, libc::EPERM),
        ] {
            filter.extend([jump(BPF_JEQ, call as u32, 0, 1), errno(code)]);
        }
        filter.extend([
            // socket(AF_INET or AF_INET6, ..): allowed; any other: refused.
            jump(BPF_JEQ, libc::SYS_socket as u32, 0, 5),
            load(ARG0),
            jump(BPF_JEQ, libc::AF_INET as u32, 2, 0),
            jump(BPF_JEQ, libc::AF_INET6 as u32, 1, 0),
            errno(libc::EACCES),
            ret(SECCOMP_RET_ALLOW),
            // clone with a namespace flag: refused.
            jump(BPF_JEQ, libc::SYS_clone as u32, 0, 4),
            load(ARG0),
            jump(BPF_JSET, namespaces, 0, 1),
            errno(libc::EPERM),
            ret(SECCOMP_RET_ALLOW),
            ret(SECCOMP_RET_ALLOW),
        ]);
        Some(filter)
    }
}

/// Between fork and exec, in a confined process: a Landlock domain of its
/// own that scopes signals and abstract Unix sockets to it (and, as every
/// Landlock domain does, `ptrace` and the `/proc` files `ptrace` guards),
/// and denies every write to a file system: no file opened for writing
/// (device nodes included, which a read-only mount does not stop), made,
/// removed, truncated or linked elsewhere, and no `ioctl` on a device;
/// `/dev/null` alone may be opened for writing. Then the seccomp `filter`.
/// Raw system calls, not the `landlock` crate: nothing here may allocate. A
/// kernel without either (Landlock before ABI 6) fails it, and the plugin is
/// refused.
#[cfg(target_os = "linux")]
fn scope_and_filter(filter: Option<&[libc::sock_filter]>) -> io::Result<()> {
    #[repr(C)]
    struct RulesetAttr {
        handled_access_fs: u64,
        handled_access_net: u64,
        scoped: u64,
    }
    #[repr(C, packed)]
    struct PathBeneathAttr {
        allowed_access: u64,
        parent_fd: i32,
    }
    // LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL.
    const SCOPED: u64 = 0b11;
    // LANDLOCK_ACCESS_FS_WRITE_FILE, then REMOVE_DIR to MAKE_SYM, REFER,
    // TRUNCATE and IOCTL_DEV: everything that writes (all but EXECUTE,
    // READ_FILE and READ_DIR).
    const WRITE_FILE: u64 = 1 << 1;
    const TRUNCATE: u64 = 1 << 14;
    const WRITES: u64 = WRITE_FILE | (0x3ff << 4) | TRUNCATE | (1 << 15);
    const RULE_PATH_BENEATH: u32 = 1;
    let filter = filter.ok_or_else(|| io::Error::from(io::ErrorKind::Unsupported))?;
    let attr = RulesetAttr {
        handled_access_fs: WRITES,
        handled_access_net: 0,
        scoped: SCOPED,
    };
    // SAFETY: system calls with pointers to locals and a descriptor this
    // process owns; all async-signal-safe.
    unsafe {
        let ruleset = libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &raw const attr,
            size_of::<RulesetAttr>(),
            0u32,
        );
        if ruleset < 0 {
            return Err(io::Error::last_os_error());
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
        let null_rule = PathBeneathAttr {
            allowed_access: WRITE_FILE | TRUNCATE,
            parent_fd: null,
        };
        let added = if null < 0 {
            -1
        } else {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset as i32,
                RULE_PATH_BENEATH,
                &raw const null_rule,
                0u32,
            )
        };
        let error = io::Error::last_os_error();
        if null >= 0 {
            libc::close(null);
        }
        if added != 0 {
            libc::close(ruleset as i32);
            return Err(error);
        }
        let restricted = libc::syscall(libc::SYS_landlock_restrict_self, ruleset as i32, 0u32);
        let error = io::Error::last_os_error();
        libc::close(ruleset as i32);
        if restricted != 0 {
            return Err(error);
        }
        let program = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &raw const program,
            0,
            0,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Drops every capability this process has, for good, between fork and
/// exec: root's privileges are not regained on exec (the secure bits), the
/// bounding set is emptied (nothing executed can gain one) and the
/// ambient, inheritable, permitted and effective sets are cleared. Only
/// async-signal-safe system calls.
#[cfg(target_os = "linux")]
fn drop_capabilities() -> io::Result<()> {
    // The secure bits: no privileges for root on exec (bit 0) or on a
    // change of user (bit 2), keeping capabilities off (bit 4 clear), no
    // ambient raising (bit 6); each locked (the odd bits).
    const SECURE_BITS: libc::c_ulong = 0b1110_1111;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // SAFETY: prctl and capset with arguments that point at locals; all are
    // async-signal-safe system calls.
    unsafe {
        if libc::prctl(libc::PR_SET_SECUREBITS, SECURE_BITS, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        // Every capability number the kernel may know: the last one it
        // knows is at most 63, and dropping one it does not know fails with
        // EINVAL, which ends the loop.
        for capability in 0..64 {
            if libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 {
                if capability == 0 {
                    return Err(io::Error::last_os_error());
                }
                break;
            }
        }
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        let header = Header {
            // _LINUX_CAPABILITY_VERSION_3: two 32-bit sets.
            version: 0x2008_0522,
            pid: 0,
        };
        let none = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capset, &raw const header, none.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Nothing to contain without PID namespaces.
#[cfg(not(target_os = "linux"))]
pub(crate) fn contain_descendants() -> io::Result<()> {
    Ok(())
}

/// Sets up the child before it runs the program: nothing on this platform,
/// which has neither the parent-death signal nor the namespaces (a plugin
/// to confine is refused before it gets here).
#[cfg(not(target_os = "linux"))]
pub(crate) fn confine(_: &mut Command, _: super::Limits, _: bool) {}
