//! Unix, with Linux's extras where marked.

use std::{
    collections::HashMap,
    fs::{DirBuilder, File, Metadata, OpenOptions},
    io,
    os::unix::fs::{DirBuilderExt, FileExt, FileTypeExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    process::ExitStatus,
};

use super::{FileTimes, Space};

/// The user this process acts as.
pub(crate) fn effective_uid() -> Option<u32> {
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    Some(unsafe { libc::geteuid() })
}

/// The user this process runs as.
pub(crate) fn real_uid() -> Option<u32> {
    // SAFETY: `getuid` has no preconditions and cannot fail.
    Some(unsafe { libc::getuid() })
}

/// The owner and permission bits of the file `meta` describes.
pub(crate) fn owner_and_mode(meta: &Metadata) -> Option<(u32, u32)> {
    Some((meta.uid(), meta.mode() & 0o7777))
}

/// Options to open, for reading, a file someone else may have put in place:
/// without blocking (a FIFO would block `open` until a writer came), without
/// becoming the controlling terminal, and, unless `follow_links`, not through
/// a link.
pub(crate) fn untrusted_open_options(follow_links: bool) -> OpenOptions {
    let mut options = OpenOptions::new();
    let nofollow = if follow_links { 0 } else { libc::O_NOFOLLOW };
    options
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | nofollow);
    options
}

/// Options to create a new file (never an existing one) with the permission
/// bits `mode`, and, unless `follow_links`, not through a link.
pub(crate) fn new_file_options(mode: u32, follow_links: bool) -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true).mode(mode);
    if !follow_links {
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options
}

/// A builder of folders with the permission bits `mode`.
pub(crate) fn dir_builder(mode: u32) -> DirBuilder {
    let mut builder = DirBuilder::new();
    builder.mode(mode);
    builder
}

/// What kind of file, other than a regular file or a folder, `meta`
/// describes, for messages.
pub(crate) fn special_kind(meta: &Metadata) -> Option<&'static str> {
    let kind = meta.file_type();
    if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        None
    }
}

/// Fills `buf` from `file` at `offset`, without moving its position.
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset)
}

/// The identity and times of the file `meta` describes.
pub(crate) fn file_times(meta: &Metadata) -> FileTimes {
    FileTimes {
        id: (meta.dev(), meta.ino()),
        modified: (meta.mtime(), meta.mtime_nsec()),
        changed: (meta.ctime(), meta.ctime_nsec()),
    }
}

/// Whether the file `meta` describes was modified or changed in the last
/// `seconds` seconds, by the clock the kernel stamps changes with (its
/// coarse clock on Linux, which advances in ticks).
pub(crate) fn changed_within(meta: &Metadata, seconds: i64) -> bool {
    #[cfg(target_os = "linux")]
    let clock = libc::CLOCK_REALTIME_COARSE;
    #[cfg(not(target_os = "linux"))]
    let clock = libc::CLOCK_REALTIME;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the clock id is one the
    // platform defines.
    unsafe { libc::clock_gettime(clock, &mut now) };
    meta.mtime().max(meta.ctime()) >= now.tv_sec - seconds
}

/// Whether some process has `file` open for writing: `None` where that
/// cannot be told (another platform, a file system without leases, a file
/// of another owner without `CAP_LEASE`).
///
/// Linux refuses a read lease on a file that any process has open for
/// writing; one granted is released at once. A writer that opens the file in
/// that instant breaks the lease, which signals the lease holder: the signal
/// asked for is `SIGURG`, which a process ignores unless it handles it
/// (`SIGIO`, the default, would end it).
#[cfg(target_os = "linux")]
pub(crate) fn open_for_writing(file: &File) -> Option<bool> {
    use std::os::fd::AsRawFd;
    // <fcntl.h>'s F_SETSIG, the same on every Linux architecture; the libc
    // crate does not define it.
    const F_SETSIG: libc::c_int = 10;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this handle owns, with the commands'
    // documented integer arguments; no memory is passed.
    unsafe {
        if libc::fcntl(fd, F_SETSIG, libc::SIGURG) != 0 {
            return None;
        }
        if libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) == 0 {
            libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK);
            return Some(false);
        }
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => Some(true),
        _ => None,
    }
}

/// Whether some process has `file` open for writing: not told here.
#[cfg(not(target_os = "linux"))]
pub(crate) fn open_for_writing(_file: &File) -> Option<bool> {
    None
}

/// What the file system of `dir` allows.
#[cfg(target_os = "linux")]
pub(crate) fn space(dir: &Path) -> Option<Space> {
    use std::{ffi::CString, os::unix::ffi::OsStrExt};
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: all-zero is a valid `statvfs`, which the call fills in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a C string; `stat` is a valid `statvfs` to write.
    if unsafe { libc::statvfs(path.as_ptr(), &raw mut stat) } != 0 {
        return None;
    }
    // The field types differ between platforms (32 or 64 bits).
    #[allow(clippy::useless_conversion)]
    Some(Space {
        noexec: stat.f_flag & libc::ST_NOEXEC != 0,
        available: u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize)),
    })
}

/// What the file system of `dir` allows: not told here.
#[cfg(not(target_os = "linux"))]
pub(crate) fn space(_dir: &Path) -> Option<Space> {
    None
}

/// The most this process may write to one file (`RLIMIT_FSIZE`), past which
/// a write kills it with `SIGXFSZ`.
pub(crate) fn file_size_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes the limit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &raw mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return u64::MAX;
    }
    limit.rlim_cur
}

/// The bytes of memory mapped from each file, from `/proc/self/maps`.
#[cfg(target_os = "linux")]
pub(crate) fn mapped_bytes() -> Option<HashMap<PathBuf, u64>> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let mut bytes = HashMap::new();
    for line in maps.lines() {
        // start-end perms offset dev inode path
        let mut fields = line.splitn(6, ' ');
        let Some(range) = fields.next() else { continue };
        let Some(path) = fields.nth(4).map(str::trim_start) else {
            continue;
        };
        if !path.starts_with('/') {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        *bytes.entry(Path::new(path).to_owned()).or_insert(0) += end.saturating_sub(start);
    }
    Some(bytes)
}

/// The bytes of memory mapped from each file: not told here.
#[cfg(not(target_os = "linux"))]
pub(crate) fn mapped_bytes() -> Option<HashMap<PathBuf, u64>> {
    None
}

/// The notes of the loaded object that holds `code`, searched by `find`
/// segment by segment (a `PT_NOTE` segment's contents and alignment);
/// `None` where no object holds it or the platform does not say.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
pub(crate) fn search_loaded_notes(
    code: *const (),
    find: fn(&[u8], u64) -> Option<&[u8]>,
) -> Option<Vec<u8>> {
    use std::ffi::{c_int, c_void};

    struct Search {
        address: u64,
        find: fn(&[u8], u64) -> Option<&[u8]>,
        found: Option<Option<Vec<u8>>>,
    }

    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: the dynamic loader passes a valid description of one
        // loaded object, whose program headers and `PT_NOTE` segments are
        // mapped while the loader's lock is held; `data` is the `Search`
        // below.
        unsafe {
            let search = &mut *data.cast::<Search>();
            let info = &*info;
            let headers = std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum));
            let holds = headers.iter().any(|header| {
                let start = info.dlpi_addr.wrapping_add(header.p_vaddr);
                header.p_type == libc::PT_LOAD
                    && (start..start.wrapping_add(header.p_memsz)).contains(&search.address)
            });
            if !holds {
                return 0;
            }
            let found = headers
                .iter()
                .filter(|header| header.p_type == libc::PT_NOTE)
                .find_map(|header| {
                    let notes = std::slice::from_raw_parts(
                        info.dlpi_addr.wrapping_add(header.p_vaddr) as *const u8,
                        header.p_memsz as usize,
                    );
                    (search.find)(notes, header.p_align).map(<[u8]>::to_vec)
                });
            search.found = Some(found);
            1
        }
    }

    let mut search = Search {
        address: code as u64,
        find,
        found: None,
    };
    // SAFETY: `visit` matches the callback's signature and only reads what
    // the loader describes.
    unsafe {
        libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast());
    }
    search.found.flatten()
}

/// The notes of the loaded object that holds `code`: not told here.
#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
pub(crate) fn search_loaded_notes(
    _code: *const (),
    _find: fn(&[u8], u64) -> Option<&[u8]>,
) -> Option<Vec<u8>> {
    None
}

/// Runs `handler` when the process calls `exit`.
pub(crate) fn at_exit(handler: extern "C" fn()) {
    // SAFETY: `handler` is an `extern "C" fn()`; the caller's never unwinds.
    unsafe { libc::atexit(handler) };
}

/// Ends the process at once with `status`, running no exit handler.
pub(crate) fn exit_now(status: i32) -> ! {
    // SAFETY: ends the process; nothing runs after it.
    unsafe { libc::_exit(status) }
}

/// The signal that killed the process that ended with `status`, if one did.
pub(crate) fn signal_of(status: ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}
