//! Base layer, the platform seam: every call into the operating system beyond `std`,
//! and every difference between platforms, with one signature for all of
//! them. Unix (with Linux's extras) in `unix.rs`; everything else in
//! `other.rs`, where a feature the platform lacks answers `None`, does
//! nothing, or says "not supported on this platform".
//!
//! The rest of the crate has no `cfg` for a platform and no `libc`.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;
#[cfg(unix)]
mod unix_process;
#[cfg(unix)]
pub(crate) use unix_process::*;

#[cfg(not(unix))]
mod other;
#[cfg(not(unix))]
pub(crate) use other::*;

/// A file's identity and times, as far as the platform tells them: device
/// and inode (the dynamic loader tells libraries apart by them), and the
/// modification and change times in seconds and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileTimes {
    /// Device and inode; `(0, 0)` where the platform has none.
    pub(crate) id: (u64, u64),
    /// The last modification.
    pub(crate) modified: (i64, i64),
    /// The last change of contents or metadata; the modification where the
    /// platform has no change time.
    pub(crate) changed: (i64, i64),
}

/// What a folder's file system allows.
pub(crate) struct Space {
    /// Whether it is mounted `noexec`: the dynamic loader cannot map files
    /// from it.
    pub(crate) noexec: bool,
    /// The bytes an unprivileged user may still write.
    pub(crate) available: u64,
}

/// The limits a child process (an isolated plugin's, a probe's) runs
/// within, with everything it starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Its address space, in bytes (`RLIMIT_AS`).
    pub(crate) memory: Option<u64>,
    /// The processes and threads of the user namespace it gets, its own
    /// included (`RLIMIT_NPROC`).
    pub(crate) processes: Option<u32>,
}

/// The least process limit: what an isolated plugin's process tree runs
/// before the plugin starts anything (two waiting processes, the process,
/// and the threads that serve calls), and room to spare.
pub const MIN_PROCESS_LIMIT: u32 = 32;

impl Limits {
    /// Why these limits cannot hold for a child of this process, if they
    /// cannot: then the child must not run.
    pub(crate) fn unenforceable(&self) -> Option<String> {
        let processes = self.processes?;
        if processes < MIN_PROCESS_LIMIT {
            return Some(format!(
                "a process limit of {processes} is below the {MIN_PROCESS_LIMIT} its process needs \
                 for itself"
            ));
        }
        if !target::CONFINES {
            return Some(
                "a process limit needs Linux, whose kernel counts a user namespace's processes"
                    .to_owned(),
            );
        }
        // The kernel exempts a process whose real user is root; its
        // children's user namespace maps the effective one.
        if effective_uid() == Some(0) || real_uid() == Some(0) {
            return Some(
                "a process limit cannot hold for a host that runs as root (the kernel never \
                 counts root's processes against it): refused rather than run without it"
                    .to_owned(),
            );
        }
        OLD_KERNEL.get_or_init(old_kernel).clone()
    }
}

/// Why this kernel cannot hold a process limit, read once: before 5.14 it
/// counts every process of the user, all over the machine, not those of
/// the user namespace.
static OLD_KERNEL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

fn old_kernel() -> Option<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    match (numbers.next(), numbers.next()) {
        (Some(Some(major)), Some(Some(minor))) if (major, minor) < (5, 14) => Some(format!(
            "a process limit needs Linux 5.14 or later, which counts a user namespace's \
             processes; this is {}",
            release.trim()
        )),
        _ => None,
    }
}

/// What the platform is, for the object checks and the choice of folders.
pub(crate) mod target {
    /// A Unix, where isolated processes reach the host's services.
    pub(crate) const UNIX: bool = cfg!(unix);
    /// Linux, the one platform whose kernel confines a child process
    /// (namespaces, Landlock, seccomp): elsewhere a confined plugin is
    /// refused, never run unconfined.
    pub(crate) const CONFINES: bool = cfg!(target_os = "linux");
    /// Windows, whose dynamic loader reads PE/COFF files.
    pub(crate) const WINDOWS: bool = cfg!(target_os = "windows");
    /// Apple's platforms, whose dynamic loader reads Mach-O files.
    pub(crate) const APPLE: bool = cfg!(target_vendor = "apple");
    /// Whether pointers are 64 bits wide.
    pub(crate) const POINTER_64: bool = cfg!(target_pointer_width = "64");
    /// Whether the byte order is little-endian.
    pub(crate) const LITTLE_ENDIAN: bool = cfg!(target_endian = "little");
    /// The shared-memory folder (a memory file system), where the platform
    /// has one.
    pub(crate) const SHARED_MEMORY: Option<&str> = if cfg!(target_os = "linux") {
        Some("/dev/shm")
    } else {
        None
    };
}
