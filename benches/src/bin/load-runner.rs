//! `load-runner MODE DIR`: loads every `noop` plugin of `DIR` once, in a
//! process of its own, and prints how long that took and what it cost in
//! resident memory: `NANOS RSS_BEFORE_KIB RSS_AFTER_KIB COUNT`. For the
//! `load/*_x1000` benchmarks: a process maps only so many libraries (the
//! kernel's `vm.max_map_count`) and never unmaps a plugin, so each sample of
//! a thousand needs a fresh process.
//!
//! MODE: `plugin` (the loader, lock file ignored), `locked` (the loader,
//! lock file required: every file hashed and checked against it), `cached`
//! (as `locked`, with a snapshot cache in `DIR.cache`: warm after the
//! first run, each file mapped from the copy an earlier run verified),
//! `dlopen` (bare `dlopen` and a lookup of the root symbol, the baseline),
//! or `floor` (what a locked first start cannot do without: each file
//! copied into a private folder and hashed with SHA-256 while copied, on as
//! many threads as the loader uses, then each copy `dlopen`ed; no check).

use std::{
    fs,
    io::{Read, Write},
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::Instant,
};

use abi_stable::library::{ROOT_MODULE_LOADER_NAME_WITH_NUL, RawLibrary};
use dropin_host::{Loader, LockMode};
use noop_interface::NoopPlugin;
use sha2::{Digest, Sha256};

/// Resident memory, in KiB, as the kernel reports it.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, dir] = args.as_slice() else {
        eprintln!("usage: load-runner plugin|locked|cached|dlopen|floor DIR");
        std::process::exit(2);
    };
    let dir = Path::new(dir);
    let before = rss_kib();
    let mut reports = Vec::new();
    let mut kept = None;
    let start = Instant::now();
    let count = match mode.as_str() {
        "plugin" | "locked" | "cached" => {
            let lock = if mode == "plugin" {
                LockMode::Ignore
            } else {
                LockMode::Required
            };
            let mut builder = Loader::<NoopPlugin>::builder()
                .dir(dir)
                .lock(lock)
                .max_mapped(usize::MAX);
            if mode == "cached" {
                builder = builder.snapshot_cache(dir.with_extension("cache"));
            }
            // SAFETY: the folder holds copies of the workspace's own noop
            // plugin, written by the benchmark that runs this program.
            let report = unsafe { builder.build() }.load().expect("the folder loads");
            assert!(report.rejected.is_empty(), "{:?}", report.rejected);
            let count = report.registry.len();
            // Dropped after the clock stops (below): that removes the
            // private copies; the libraries stay mapped anyway.
            reports.push(report);
            count
        }
        "dlopen" => libraries(dir).iter().map(|path| open(path)).count(),
        "floor" => {
            let copies = tempfile::Builder::new()
                .prefix("load-runner-floor.")
                .tempdir_in(snapshot_root())
                .expect("a private folder");
            let copied = copy_and_hash(&libraries(dir), copies.path());
            let count = copied.iter().map(|path| open(path)).count();
            // Removed after the clock stops, as the loader's copies are.
            kept = Some(copies);
            count
        }
        other => {
            eprintln!("load-runner: unknown mode {other}");
            std::process::exit(2);
        }
    };
    let nanos = start.elapsed().as_nanos();
    drop(kept);
    println!("{nanos} {before} {} {count}", rss_kib());
    drop(reports);
}

/// The folder's libraries, in the order the folder lists them.
fn libraries(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .expect("the folder lists")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "so"))
        .collect()
}

/// `dlopen` of `path` and a lookup of the root symbol; never unloaded.
fn open(path: &Path) {
    let library = RawLibrary::load_at(path).expect("dlopen");
    // SAFETY: the symbol is only looked up, never called.
    let symbol = unsafe { library.get::<*const u8>(ROOT_MODULE_LOADER_NAME_WITH_NUL.as_bytes()) };
    symbol.expect("the root symbol");
    std::mem::forget(library);
}

/// Where the loader puts its copies by default on Linux when
/// `XDG_RUNTIME_DIR` is unset: a memory file system.
fn snapshot_root() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(|| PathBuf::from("/dev/shm"))
}

/// Each file copied into `into` and hashed while copied, 64 KiB at a time
/// as the loader does, on as many threads as it uses; the copies' paths,
/// in the order of `paths`.
fn copy_and_hash(paths: &[PathBuf], into: &Path) -> Vec<PathBuf> {
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut buffer = vec![0; 64 * 1024];
                while let Some(path) = paths.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let mut input = fs::File::open(path).expect("the file opens");
                    let mut output = fs::File::create(into.join(path.file_name().unwrap()))
                        .expect("the copy is made");
                    let mut hasher = Sha256::new();
                    loop {
                        let n = input.read(&mut buffer).expect("the file reads");
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buffer[..n]);
                        output.write_all(&buffer[..n]).expect("the copy is written");
                    }
                    std::hint::black_box(hasher.finalize());
                }
            });
        }
    });
    paths
        .iter()
        .map(|path| into.join(path.file_name().unwrap()))
        .collect()
}
