//! Scale: a thousand distinct plugins load and each answers; past the cap
//! on mapped libraries, files are refused with the documented reason and the
//! loaded plugins keep serving.
//!
//! A test binary of its own: the cap counts every library this process
//! mapped, so the count must start from nothing and no other test may map
//! meanwhile.

use std::{fs, path::Path, process::Command};

use dropin_host::{LoadErrorKind, Loader};
use greeter_interface::GreeterPlugin;
use greeter_tests::{PluginDir, artifacts, library_file_name};

const THOUSAND: usize = 1000;
const NAME: &str = "numbered-0000";

/// The `numbered` plugin without its debug information (a thousand copies
/// of a debug build would take gigabytes), and where its name is.
fn numbered() -> (Vec<u8>, Vec<usize>) {
    let stripped = tempfile::NamedTempFile::new().unwrap();
    let status = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(stripped.path())
        .arg(artifacts().library("numbered"))
        .status()
        .expect("binutils' strip runs");
    assert!(status.success());
    let bytes = fs::read(stripped.path()).unwrap();
    // Every place the name is: the root module's, the description's.
    let places: Vec<usize> = bytes
        .windows(NAME.len())
        .enumerate()
        .filter(|(_, window)| *window == NAME.as_bytes())
        .map(|(at, _)| at)
        .collect();
    assert!(!places.is_empty(), "the plugin name is in the library");
    (bytes, places)
}

/// Writes the copies `range` of the plugin into `dir`, each with its own
/// name (`numbered-0042`).
fn write_copies(
    dir: &Path,
    (bytes, places): &(Vec<u8>, Vec<usize>),
    range: std::ops::Range<usize>,
) {
    let mut bytes = bytes.clone();
    for i in range {
        let name = format!("numbered-{i:04}");
        for &at in places {
            bytes[at..at + name.len()].copy_from_slice(name.as_bytes());
        }
        fs::write(
            dir.join(library_file_name(&format!("numbered_{i:04}"))),
            &bytes,
        )
        .unwrap();
    }
}

#[test]
fn a_thousand_plugins_load_and_answer_and_the_cap_refuses_cleanly() {
    let plugin = numbered();
    let dir = PluginDir::new();
    write_copies(dir.path(), &plugin, 0..THOUSAND);
    let report = greeter_tests::trusted(Loader::<GreeterPlugin>::builder().dir(dir.path()))
        .load()
        .unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected.first());
    assert_eq!(report.registry.len(), THOUSAND);
    for (i, plugin) in report.registry.iter().enumerate() {
        assert_eq!(plugin.name(), format!("numbered-{i:04}"));
        assert_eq!(
            plugin.greet().unwrap(),
            format!("Hello from numbered-{i:04}!")
        );
    }

    // This process has mapped those thousand: a cap ten above lets ten of
    // twenty more in, and refuses the others with the documented reason.
    let more = PluginDir::new();
    write_copies(more.path(), &plugin, THOUSAND..THOUSAND + 20);
    let limit = THOUSAND + 10;
    let capped = greeter_tests::trusted(
        Loader::<GreeterPlugin>::builder()
            .dir(more.path())
            .max_mapped(limit),
    )
    .load()
    .unwrap();
    assert_eq!(capped.registry.len(), 10);
    assert_eq!(capped.rejected.len(), 10);
    for error in &capped.rejected {
        assert!(matches!(error.kind(), LoadErrorKind::TooMany { limit: l, .. } if *l == limit));
        assert_eq!(
            error.to_string(),
            format!(
                "{}: not opened: this process has mapped {limit} libraries, the most the loader \
                 allows (libraries are never unloaded)",
                error.path().display()
            )
        );
    }
    // What loaded keeps serving, before and past the cap.
    assert_eq!(
        capped
            .registry
            .get("numbered-1009")
            .unwrap()
            .greet()
            .unwrap(),
        "Hello from numbered-1009!"
    );
    assert_eq!(
        report
            .registry
            .get("numbered-0999")
            .unwrap()
            .greet()
            .unwrap(),
        "Hello from numbered-0999!"
    );
}
