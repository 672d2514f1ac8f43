//! Support for the benchmarks in `benches/plugins.rs`: release builds of the
//! plugins they load.

use std::{
    env::consts::{DLL_PREFIX, DLL_SUFFIX},
    path::{Path, PathBuf},
    process::Command,
};

/// Builds the `hello`, `noop` and `raw` plugins, and `greeter-host` (the
/// probe of the load benchmarks), in release mode, in a target
/// directory of their own (the outer `cargo bench` holds the lock on the
/// usual one), and returns the folder that holds them.
pub fn build_plugins() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ is in the workspace");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("bench-artifacts");
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "hello",
            "-p",
            "noop-plugin",
            "-p",
            "raw-plugin",
            "-p",
            "greeter-host",
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the benchmark plugins failed");
    target.join("release")
}

/// The file name of the library `lib` on this platform.
pub fn library_file_name(lib: &str) -> String {
    format!("{DLL_PREFIX}{lib}{DLL_SUFFIX}")
}
