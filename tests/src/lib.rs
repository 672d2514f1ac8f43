//! The integration tests' harness: real plugins, built once per test run,
//! copied into a fresh plugins folder per test.

use std::{
    env::consts::{DLL_PREFIX, DLL_SUFFIX, EXE_SUFFIX},
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{Mutex, OnceLock},
};

use dropin_host::{LoadReport, Loader};
use greeter_interface::GreeterPlugin;
use tempfile::TempDir;

/// The Rust examples of COMPATIBILITY.md, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../COMPATIBILITY.md")]
pub struct CompatibilityMd;

/// The Rust examples of SECURITY.md, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../SECURITY.md")]
pub struct SecurityMd;

/// The packages the tests load or run.
const PACKAGES: &[&str] = &[
    "greeter-host",
    "dropin-cli",
    "hello",
    "hellohello",
    "counter",
    "not-a-plugin",
    "transform-upper",
    "transform-rot13",
    "transform-app",
    "store-memory",
    "store-app",
    "panicky",
    "broken-init",
    "needs-new-host",
    "runs-at-open",
    "big-tls",
    "services-user",
    "numbered",
    "wrong-layout",
    "forgetful-app",
];

/// The workspaces under `tests/compat/`, each built on its own, and the
/// libraries each produces: plugins built against frozen earlier, later and
/// broken versions of the interfaces, and one built with `panic = "abort"`.
pub const COMPAT_WORKSPACES: &[(&str, &[&str])] = &[
    // greeter-interface 1.0.0, from before the interface moved to dropin.
    ("v1_0", &["compat_v1_0"]),
    (
        "older_minor",
        &[
            "compat_older_minor_greeter",
            "compat_older_minor_transform",
            "compat_older_minor_store",
        ],
    ),
    (
        "newer_minor",
        &[
            "compat_newer_minor_greeter",
            "compat_newer_minor_transform",
            "compat_newer_minor_store",
        ],
    ),
    (
        "next_major",
        &["compat_next_major_greeter", "compat_next_major_transform"],
    ),
    ("changed_object", &["compat_changed_object_store"]),
    (
        "changed_type",
        &[
            "compat_changed_type_greeter",
            "compat_changed_type_transform",
            "compat_changed_type_store",
        ],
    ),
    ("panic_abort", &["compat_panic_abort"]),
];

/// Where the plugins and the host binary of this test run were built.
#[derive(Debug)]
pub struct Artifacts {
    dir: PathBuf,
}

/// Builds the plugins, fixtures and host binary on first use, then returns the same artifacts.
///
/// The build has a target directory of its own: the outer `cargo test` holds
/// the lock on the usual one while the tests run.
pub fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let target = target_dir().join("test-artifacts");
        once_per_run(&target, || {
            let mut cargo = Command::new(env!("CARGO"));
            cargo
                .current_dir(workspace_root())
                .args(["build", "--locked", "--target-dir"])
                .arg(&target);
            for package in PACKAGES {
                cargo.args(["-p", package]);
            }
            run_cargo(cargo);
        });
        Artifacts {
            dir: target.join("debug"),
        }
    })
}

/// Builds every [`COMPAT_WORKSPACES`] workspace on first use and returns
/// where their libraries are.
///
/// They share one target directory: their interface crates have the names of
/// the real ones but other versions (`2.0.0`, `2.2.0`, ...), so no build of
/// one can be mistaken for another's; the real crates build elsewhere.
pub fn compat_artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let target = target_dir().join("compat");
        once_per_run(&target, || {
            for (workspace, _) in COMPAT_WORKSPACES {
                let mut cargo = Command::new(env!("CARGO"));
                cargo
                    .current_dir(workspace_root().join("tests/compat").join(workspace))
                    .args(["build", "--locked", "--target-dir"])
                    .arg(&target);
                run_cargo(cargo);
            }
        });
        Artifacts {
            dir: target.join("debug"),
        }
    })
}

/// The target folder of the outer build (`CARGO_TARGET_DIR`, else the
/// workspace's `target`), under which test builds make folders of their own.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// Runs `build` for the target folder `target` once per test run.
///
/// `cargo nextest` runs every test in a process of its own, all with the same
/// `NEXTEST_RUN_ID`: the first process to get here builds, under a lock on a
/// file beside the folder, and leaves the run's id in a stamp; the others
/// wait for the lock and find the stamp. Under `cargo test`, one process runs
/// them all and builds once. With `GREETER_TEST_PREBUILT` set (a run as
/// another user, who cannot write the target folder), nothing is built: the
/// artifacts of an earlier run are used as they are.
fn once_per_run(target: &Path, build: impl FnOnce()) {
    if std::env::var_os("GREETER_TEST_PREBUILT").is_some() {
        return;
    }
    let Some(run) = std::env::var_os("NEXTEST_RUN_ID") else {
        return build();
    };
    let run = run.into_encoded_bytes();
    fs::create_dir_all(target).expect("the test build's target folder can be made");
    let lock = fs::File::create(target.with_extension("lock")).expect("a lock file beside it");
    lock.lock().expect("the build lock");
    let stamp = target.with_extension("run");
    if fs::read(&stamp).ok().as_deref() != Some(&run[..]) {
        build();
        fs::write(&stamp, &run).expect("the stamp of this run's build");
    }
}

fn run_cargo(mut cargo: Command) {
    // Without debug info a plugin is 0.8 MB instead of 11 MB: the tests copy
    // hundreds of them.
    cargo.env("CARGO_PROFILE_DEV_STRIP", "debuginfo");
    let output = cargo.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "{cargo:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Artifacts {
    /// The built library of the crate whose `[lib] name` is `lib`.
    pub fn library(&self, lib: &str) -> PathBuf {
        self.dir.join(library_file_name(lib))
    }

    /// The built `greeter-host` binary.
    pub fn host_binary(&self) -> PathBuf {
        self.binary("greeter-host")
    }

    /// A binary built by this test run.
    pub fn binary(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{EXE_SUFFIX}"))
    }
}

/// The file name the platform gives the library `lib` (`libhello.so`).
pub fn library_file_name(lib: &str) -> String {
    format!("{DLL_PREFIX}{lib}{DLL_SUFFIX}")
}

/// The workspace's root folder: where the test runner says this package is
/// (nextest remaps it when tests run from an archive), else where it was
/// built.
pub fn workspace_root() -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    package
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

/// A fresh plugins folder, removed when dropped.
///
/// Every test copies the libraries it needs into its own folder: a copy is a
/// distinct file, so the dynamic loader gives each test a fresh instance of a
/// plugin, with its own state.
#[derive(Debug)]
pub struct PluginDir {
    dir: TempDir,
}

impl PluginDir {
    /// An empty folder.
    pub fn new() -> Self {
        Self {
            dir: TempDir::with_prefix("greeter-plugins-").expect("a temporary folder"),
        }
    }

    /// A folder holding copies of the libraries `libs`.
    pub fn with(libs: &[&str]) -> Self {
        let dir = Self::new();
        for lib in libs {
            dir.add(lib);
        }
        dir
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A loader of the greeter plugins here whose probe, and the process
    /// of each isolated plugin, is the built `greeter-host`.
    pub fn probed_loader(&self) -> dropin_host::LoaderBuilder<GreeterPlugin> {
        Loader::<GreeterPlugin>::builder().dir(self.path()).probe(
            dropin_host::probe::Probe::command(artifacts().host_binary()),
        )
    }

    /// Copies the built library `lib` in under its own file name.
    pub fn add(&self, lib: &str) -> PathBuf {
        self.add_as(lib, &library_file_name(lib))
    }

    /// Copies the built library `lib` in as `file_name`.
    pub fn add_as(&self, lib: &str, file_name: &str) -> PathBuf {
        let path = self.path().join(file_name);
        fs::copy(artifacts().library(lib), &path).expect("copy a built library");
        path
    }

    /// Copies in the library `lib` of one of the [`COMPAT_WORKSPACES`].
    pub fn add_compat(&self, lib: &str) -> PathBuf {
        let path = self.path().join(library_file_name(lib));
        fs::copy(compat_artifacts().library(lib), &path).expect("copy a compat plugin");
        path
    }

    /// Writes a file of the given bytes.
    pub fn write(&self, file_name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path().join(file_name);
        fs::write(&path, bytes).expect("write a file");
        path
    }

    /// Loads the folder with the library, as a host application would.
    pub fn load(&self) -> LoadReport<GreeterPlugin> {
        trusted(Loader::<GreeterPlugin>::builder().dir(self.path()))
            .load()
            .expect("the folder exists")
    }

    /// Loads the folder as plugins of interface `I`.
    pub fn load_as<I: dropin::Interface>(&self) -> LoadReport<I> {
        trusted(Loader::<I>::builder().dir(self.path()))
            .load()
            .expect("the folder exists")
    }

    /// Runs `greeter-host --plugins-dir <this folder> <args>`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("greeter-host runs")
    }

    /// Like [`run`](Self::run), with one more environment variable.
    pub fn run_with_env(&self, args: &[&str], key: &str, value: &str) -> Output {
        self.command(args)
            .env(key, value)
            .output()
            .expect("greeter-host runs")
    }

    /// The command [`run`](Self::run) runs, to spawn it.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = host_command();
        command.arg("--plugins-dir").arg(self.path()).args(args);
        command
    }
}

impl Default for PluginDir {
    fn default() -> Self {
        Self::new()
    }
}

/// A `greeter-host` command with a clean logging environment.
pub fn host_command() -> Command {
    let mut command = Command::new(artifacts().host_binary());
    command
        .env_remove("RUST_LOG")
        .env_remove("GREETER_PLUGINS_DIR")
        .env_remove("RUST_BACKTRACE");
    command
}

/// Records logged in this test process, by target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The record's level.
    pub level: log::Level,
    /// The record's target.
    pub target: String,
    /// The formatted message.
    pub message: String,
}

/// Every record logged in this process, with the thread that logged it.
static CAPTURED: Mutex<Vec<(std::thread::ThreadId, Captured)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        CAPTURED.lock().unwrap().push((
            std::thread::current().id(),
            Captured {
                level: record.level(),
                target: record.target().to_owned(),
                message: record.args().to_string(),
            },
        ));
    }

    fn flush(&self) {}
}

/// Installs a logger that keeps every record (once per process) and returns
/// the records logged so far with `target`.
pub fn captured_logs(target: &str) -> Vec<Captured> {
    captured(target, |_| true)
}

/// As [`captured_logs`], only the records the calling thread logged: under
/// `cargo test` other tests in the same process log under the same targets.
pub fn captured_logs_of_this_thread(target: &str) -> Vec<Captured> {
    let me = std::thread::current().id();
    captured(target, |thread| thread == me)
}

fn captured(target: &str, by: impl Fn(std::thread::ThreadId) -> bool) -> Vec<Captured> {
    static INSTALL: OnceLock<()> = OnceLock::new();
    INSTALL.get_or_init(|| {
        log::set_logger(&Capture).expect("no other logger in the test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
    CAPTURED
        .lock()
        .unwrap()
        .iter()
        .filter(|(thread, record)| by(*thread) && record.target == target)
        .map(|(_, record)| record.clone())
        .collect()
}

/// An error and its sources on one line, as the command line prints them.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    dropin_host::ErrorChain(error).to_string()
}

/// Where the greeting of the `hello` plugin, `Hello!`, is in its library's
/// bytes: six bytes to rewrite for another build of the same size.
pub fn greeting_offset(library: &[u8]) -> usize {
    library
        .windows(6)
        .position(|window| window == b"Hello!")
        .expect("the greeting is in the library")
}

/// Where a plugin library's description lies in its bytes: its offset and
/// its length, header included.
pub fn description_range(library: &[u8]) -> (usize, usize) {
    let at = library
        .windows(8)
        .position(|window| window == dropin::description::MAGIC)
        .expect("the library carries a description");
    let len = 16 + u32::from_le_bytes(library[at + 12..at + 16].try_into().unwrap()) as usize;
    (at, len)
}

/// `library` with `from` replaced by `to` (of the same length) inside its
/// description only: a description that lies about the library, whose root
/// module still says `from`.
pub fn description_patched(library: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len(), "a patch of the same length");
    let (at, len) = description_range(library);
    let offset = library[at..at + len]
        .windows(from.len())
        .position(|window| window == from.as_bytes())
        .expect("the description holds the text to patch");
    let mut bytes = library.to_vec();
    bytes[at + offset..at + offset + to.len()].copy_from_slice(to.as_bytes());
    bytes
}

/// The SHA-256 of `bytes`, in lowercase hexadecimal, as the loader and the
/// lock file write it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The file offset and size of the section called `name` in a 64-bit
/// little-endian ELF file with section headers.
pub fn elf_section(elf: &[u8], name: &str) -> Option<(usize, usize)> {
    use object::{Object, ObjectSection};
    let file = object::read::elf::ElfFile64::<object::LittleEndian>::parse(elf).ok()?;
    let (offset, size) = file.section_by_name(name)?.file_range()?;
    Some((offset.try_into().ok()?, size.try_into().ok()?))
}

/// Whether a test's precondition holds; a missing one fails the test unless
/// the run skips it by name.
///
/// A test that returns early when, say, it cannot `chown` passes without
/// testing anything. So a precondition that does not hold panics, naming
/// itself, unless `GREETER_TEST_SKIP` (a comma-separated list) names it: then
/// the skip is printed on standard output (nextest shows it with
/// `--success-output`) and the test returns `false` to end early.
pub fn precondition(name: &str, holds: bool, why: &str) -> bool {
    if holds {
        return true;
    }
    let skipped = std::env::var("GREETER_TEST_SKIP")
        .unwrap_or_default()
        .split(',')
        .any(|skip| skip.trim() == name);
    assert!(
        skipped,
        "precondition '{name}' does not hold: {why}; set GREETER_TEST_SKIP={name} to skip it"
    );
    println!("skipped by GREETER_TEST_SKIP: {name}: {why}");
    false
}

/// Whether the half of a test that runs plugins isolated (`isolated`) or
/// in-process runs here. The isolated halves are written for Linux: elsewhere
/// they fail, unless the run skips `isolated-off-linux`, rather than quietly
/// running the in-process half twice.
pub fn mode_runs_here(isolated: bool) -> bool {
    !isolated
        || precondition(
            "isolated-off-linux",
            cfg!(target_os = "linux"),
            "the isolated half of this test runs on Linux only",
        )
}

/// The loader of `builder` for one half of a test: with `isolated`, every
/// plugin in a process of its own, started by the host binary as its probe
/// program (no `unsafe`); else in this process ([`trusted`]).
pub fn in_mode<I: dropin::Interface>(
    builder: dropin_host::LoaderBuilder<I>,
    isolated: bool,
) -> Loader<I> {
    if isolated {
        builder
            .probe(dropin_host::probe::Probe::command(
                artifacts().host_binary(),
            ))
            .build_isolated()
    } else {
        trusted(builder)
    }
}

/// The loader of `builder`, which runs plugins in this process.
pub fn trusted<I: dropin::Interface>(builder: dropin_host::LoaderBuilder<I>) -> Loader<I> {
    // SAFETY: the tests load the plugins and fixtures this workspace builds
    // (`artifacts`), copies of them, and files a test wrote to be refused
    // before they are mapped; the plugins that misbehave on purpose do so
    // in the ways dropin contains in-process (panics, errors, `exit`,
    // hangs in a probe).
    unsafe { builder.build() }
}

/// A command's standard output, as text.
/// Kills the process `pid` with `SIGKILL`, as the kernel's out-of-memory
/// killer would: from outside, without a word.
pub fn kill(pid: u32) {
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill {pid}");
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 on stdout")
}

/// A command's standard error, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 on stderr")
}

/// How a test gets files that another user owns, for the owner checks.
///
/// As root, by giving a file away (`chown` to uid 4242). As anyone else,
/// inside a user namespace that maps this user to root: there the real
/// root's files show as owned by the kernel's overflow uid (65534), and the
/// host's user is root, so they are another user's. [`another_user`] runs the
/// test again inside such a namespace when it must.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnotherUser {
    /// This process can give files away.
    Chown,
    /// This process is root in a user namespace of its own.
    Namespace,
}

/// The variable that tells a test it runs again in a user namespace.
#[cfg(target_os = "linux")]
const IN_USER_NAMESPACE: &str = "GREETER_TEST_IN_USER_NAMESPACE";

/// How the test called `test` (its path in the test binary, as `cargo test`
/// names it) gets another user's files, or `None` when this process cannot:
/// then the test has already been run again inside a user namespace (and
/// this call asserted that it passed), or its precondition `another-user` is
/// skipped, and the caller returns.
#[cfg(target_os = "linux")]
pub fn another_user(test: &str) -> Option<AnotherUser> {
    if std::env::var_os(IN_USER_NAMESPACE).is_some() {
        // Root's files are another user's only if root is not mapped here
        // (it is, when the one who made the namespace was root).
        let owner = std::os::unix::fs::MetadataExt::uid(
            &fs::metadata(system_library()).expect("the C library"),
        );
        return precondition(
            "another-user",
            owner == AnotherUser::Namespace.uid(),
            "root is mapped in this user namespace (a root that cannot chown?)",
        )
        .then_some(AnotherUser::Namespace);
    }
    let probe = tempfile::NamedTempFile::new().expect("a temporary file");
    if std::os::unix::fs::chown(probe.path(), Some(AnotherUser::CHOWN_UID), None).is_ok() {
        return Some(AnotherUser::Chown);
    }
    let namespaces = Command::new("unshare")
        .args(["--user", "--map-root-user", "true"])
        .status()
        .is_ok_and(|status| status.success());
    if !precondition(
        "another-user",
        namespaces,
        "this user can neither chown a file nor make a user namespace",
    ) {
        return None;
    }
    let output = Command::new("unshare")
        .args(["--user", "--map-root-user"])
        .arg(std::env::current_exe().expect("the test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(IN_USER_NAMESPACE, "1")
        .output()
        .expect("unshare runs");
    let out = String::from_utf8_lossy(&output.stdout);
    println!("{out}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success() && out.contains("test result: ok. 1 passed"),
        "{test} failed in a user namespace ({})",
        output.status
    );
    None
}

#[cfg(target_os = "linux")]
impl AnotherUser {
    /// The uid files are given to as root.
    const CHOWN_UID: u32 = 4242;

    /// The uid the loader sees another user's files as owned by.
    pub fn uid(self) -> u32 {
        match self {
            Self::Chown => Self::CHOWN_UID,
            Self::Namespace => fs::read_to_string("/proc/sys/kernel/overflowuid")
                .expect("the overflow uid")
                .trim()
                .parse()
                .expect("a number"),
        }
    }

    /// Puts another user's library at `at`: a copy of `library` given away
    /// as root, else a link to the C library (root's, so another user's in
    /// the namespace).
    pub fn library(self, library: &Path, at: &Path) {
        match self {
            Self::Chown => {
                fs::copy(library, at).expect("copy a library");
                std::os::unix::fs::chown(at, Some(Self::CHOWN_UID), None).expect("chown as root");
            }
            Self::Namespace => {
                std::os::unix::fs::symlink(system_library(), at).expect("link the C library");
            }
        }
    }

    /// A folder that another user owns and that no one else may write,
    /// made inside `scratch` as root, else a system folder.
    pub fn folder(self, scratch: &Path) -> PathBuf {
        match self {
            Self::Chown => {
                use std::os::unix::fs::PermissionsExt;
                let folder = scratch.join("theirs");
                fs::create_dir(&folder).expect("make a folder");
                fs::set_permissions(&folder, fs::Permissions::from_mode(0o700))
                    .expect("chmod a folder");
                std::os::unix::fs::chown(&folder, Some(Self::CHOWN_UID), None)
                    .expect("chown as root");
                folder
            }
            Self::Namespace => system_library()
                .parent()
                .expect("the C library is in a folder")
                .to_owned(),
        }
    }
}

/// The C library this process has mapped: a real library that root owns.
#[cfg(target_os = "linux")]
fn system_library() -> PathBuf {
    fs::read_to_string("/proc/self/maps")
        .expect("this process's mappings")
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            Path::new(path)
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("libc.so"))
        })
        .map(PathBuf::from)
        .expect("the C library is mapped")
}

/// How long a test lets something that must not block take before it calls
/// it a hang: long enough for a machine busy with builds, short enough to
/// fail well inside the runner's per-test timeout.
pub const HANG: std::time::Duration = std::time::Duration::from_secs(20);

/// A watchdog for a step that must not block: unless dropped within `limit`,
/// it ends the test process, naming `what`. A step that blocks for ever
/// cannot be interrupted from another thread, and a test that only measures
/// the time after the step returns would hang instead of failing.
#[must_use = "the watchdog stops when dropped"]
#[derive(Debug)]
pub struct Deadline {
    _done: std::sync::mpsc::Sender<()>,
}

/// Starts a [`Deadline`] for `what`.
pub fn deadline(limit: std::time::Duration, what: &str) -> Deadline {
    let (done, waiting) = std::sync::mpsc::channel::<()>();
    let what = what.to_owned();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = waiting.recv_timeout(limit) {
            eprintln!("{what} did not finish within {limit:?}: it blocks");
            std::process::abort();
        }
    });
    Deadline { _done: done }
}
