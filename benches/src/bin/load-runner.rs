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
//! first run, each file mapped from the copy an earlier run verified), or
//! `dlopen` (bare `dlopen` and a lookup of the root symbol, the baseline).

use std::{path::Path, time::Instant};

use abi_stable::library::{ROOT_MODULE_LOADER_NAME_WITH_NUL, RawLibrary};
use dropin_host::{Loader, LockMode};
use noop_interface::NoopPlugin;

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
        eprintln!("usage: load-runner plugin|locked|cached|dlopen DIR");
        std::process::exit(2);
    };
    let dir = Path::new(dir);
    let before = rss_kib();
    let mut reports = Vec::new();
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
        "dlopen" => {
            let mut count = 0;
            for entry in std::fs::read_dir(dir).expect("the folder lists") {
                let path = entry.expect("an entry").path();
                if path.extension().is_none_or(|ext| ext != "so") {
                    continue;
                }
                let library = RawLibrary::load_at(&path).expect("dlopen");
                // SAFETY: the symbol is only looked up, never called.
                let symbol = unsafe {
                    library.get::<*const u8>(ROOT_MODULE_LOADER_NAME_WITH_NUL.as_bytes())
                };
                symbol.expect("the root symbol");
                std::mem::forget(library);
                count += 1;
            }
            count
        }
        other => {
            eprintln!("load-runner: unknown mode {other}");
            std::process::exit(2);
        }
    };
    let nanos = start.elapsed().as_nanos();
    println!("{nanos} {before} {} {count}", rss_kib());
    drop(reports);
}
