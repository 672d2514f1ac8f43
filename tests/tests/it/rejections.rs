use std::{fs, path::Path};

use dropin_host::{LoadErrorKind, LoadReport, VerifyError};
use greeter_interface::GreeterPlugin;
use greeter_tests::{PluginDir, artifacts, error_chain, library_file_name};

/// The only rejection of `report`, after checking that the good plugin
/// `hello` still loaded and greets.
fn only_rejection(report: &LoadReport<GreeterPlugin>, path: &Path) -> String {
    assert_eq!(
        report.registry.get("hello").unwrap().greet().unwrap(),
        "Hello!"
    );
    assert_eq!(report.rejected.len(), 1, "{:?}", report.rejected);
    let error = &report.rejected[0];
    assert_eq!(error.path(), path);
    error.to_string()
}

#[test]
fn an_empty_file_is_rejected_as_empty() {
    let dir = PluginDir::with(&["hello"]);
    let path = dir.write(&library_file_name("empty"), b"");
    let report = dir.load();
    only_rejection(&report, &path);
    assert!(matches!(
        report.rejected[0].kind(),
        LoadErrorKind::InvalidLibrary {
            source: VerifyError::Empty,
        }
    ));
    assert_eq!(
        error_chain(&report.rejected[0]),
        format!(
            "{}: not a loadable library: the file is empty",
            path.display()
        )
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_text_file_named_like_a_library_is_rejected_as_text() {
    let dir = PluginDir::with(&["hello"]);
    let path = dir.write(&library_file_name("notes"), b"INPUT(-lc)\n");
    let report = dir.load();
    only_rejection(&report, &path);
    assert_eq!(
        error_chain(&report.rejected[0]),
        format!(
            "{}: not a loadable library: expected an ELF shared library, found a text file",
            path.display()
        )
    );
}

#[test]
fn truncated_copies_of_a_real_plugin_are_rejected_before_the_loader_sees_them() {
    let original = fs::read(artifacts().library("hello")).unwrap();
    let len = original.len();
    let dir = PluginDir::with(&["hello"]);
    let cuts = [
        1,
        4,
        16,
        63,
        64,
        500,
        4096,
        65_536,
        len / 2,
        len - 4096,
        len - 1,
    ];
    for cut in cuts {
        dir.write(&library_file_name(&format!("cut{cut}")), &original[..cut]);
    }
    let report = dir.load();
    assert_eq!(
        report.registry.get("hello").unwrap().greet().unwrap(),
        "Hello!"
    );
    assert_eq!(report.rejected.len(), cuts.len(), "{:?}", report.rejected);
    for error in &report.rejected {
        let LoadErrorKind::InvalidLibrary { source } = error.kind() else {
            panic!("expected an invalid library, found {error:?}");
        };
        let cut: usize = error.path().file_stem().unwrap().to_str().unwrap()["libcut".len()..]
            .parse()
            .unwrap();
        if cut >= 64 {
            assert!(
                matches!(source, VerifyError::OutOfBounds { len, .. } if *len == cut as u64),
                "{cut}: {source:?}"
            );
        }
    }
}

#[test]
fn a_shared_library_without_a_root_module_is_not_a_plugin() {
    let dir = PluginDir::with(&["hello"]);
    let path = dir.add("not_a_plugin");
    let report = dir.load();
    assert_eq!(
        only_rejection(&report, &path),
        format!(
            "{}: not a plugin: expected the description a dropin plugin exports, found a library \
             without one (a greeter plugin exports it with `export_greeter!(YourType);`; a \
             plugin built with an earlier dropin must be rebuilt)",
            path.display()
        )
    );
    assert!(matches!(
        report.rejected[0].kind(),
        LoadErrorKind::NoDescription { .. }
    ));
}

#[test]
fn a_root_module_of_another_layout_is_refused_by_the_layout_check() {
    let dir = PluginDir::with(&["hello"]);
    let path = dir.add("wrong_layout");
    let report = dir.load();
    let message = only_rejection(&report, &path);
    assert!(matches!(
        report.rejected[0].kind(),
        LoadErrorKind::Layout { .. }
    ));
    assert_eq!(
        message,
        format!(
            "{}: not a dropin root module of a compatible layout (built with dropin 0.1.0, the \
             host has 0.1.0): mismatched package: expected dropin, found wrong-layout",
            path.display()
        )
    );
}

#[test]
fn a_plugin_of_another_interface_is_rejected_naming_both_interfaces() {
    let dir = PluginDir::with(&["hello"]);
    let path = dir.add("upper");
    let report = dir.load();
    assert_eq!(
        only_rejection(&report, &path),
        format!(
            "{}: not a greeter plugin: expected interface greeter, found transform 1.1.0",
            path.display(),
        )
    );
    assert!(matches!(
        report.rejected[0].kind(),
        LoadErrorKind::WrongInterface { expected, .. } if expected == "greeter"
    ));
}

#[test]
fn a_plugin_whose_init_fails_is_rejected_with_its_reason() {
    let dir = PluginDir::with(&["hello"]);
    let path = dir.add("broken_init");
    let report = dir.load();
    assert_eq!(
        only_rejection(&report, &path),
        format!(
            "{}: plugin failed to initialise: no configuration found",
            path.display()
        )
    );
    assert!(report.registry.get("broken-init").is_none());
}

#[test]
fn a_second_plugin_with_a_taken_name_is_rejected_naming_both_files() {
    let dir = PluginDir::new();
    let first = dir.add("hello");
    // Sorts after the first: files load in path order.
    let second = dir.add_as("hello", &library_file_name("hello_copy"));
    let report = dir.load();
    assert_eq!(
        only_rejection(&report, &second),
        format!(
            "{}: a plugin named 'hello' is already loaded from {}",
            second.display(),
            first.display()
        )
    );
    assert_eq!(report.registry.get("hello").unwrap().path(), first);
}

#[test]
fn every_kind_of_bad_file_in_one_folder_is_rejected_and_the_good_ones_greet() {
    let dir = PluginDir::with(&[
        "hello",
        "hellohello",
        "not_a_plugin",
        "upper",
        "broken_init",
    ]);
    dir.write(&library_file_name("empty"), b"");
    dir.write(&library_file_name("text"), b"hello\n");
    let original = fs::read(artifacts().library("hello")).unwrap();
    dir.write(
        &library_file_name("truncated"),
        &original[..original.len() / 3],
    );
    let report = dir.load();
    let rejected: Vec<String> = report
        .rejected
        .iter()
        .map(|error| {
            error
                .path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let expected: Vec<String> = [
        "broken_init",
        "empty",
        "not_a_plugin",
        "text",
        "truncated",
        "upper",
    ]
    .iter()
    .map(|lib| library_file_name(lib))
    .collect();
    assert_eq!(rejected, expected);
    assert_eq!(
        report.registry.get("hello").unwrap().greet().unwrap(),
        "Hello!"
    );
    assert_eq!(
        report.registry.get("hellohello").unwrap().greet().unwrap(),
        "Hello!Hello!!"
    );
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn a_library_asking_for_an_executable_stack_is_refused_unless_allowed() {
    const PT_GNU_STACK: u32 = 0x6474_e551;
    let mut bytes = fs::read(artifacts().library("hello")).unwrap();
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes([bytes[56], bytes[57]]) as usize;
    let stack = (0..phnum)
        .map(|i| phoff + i * 56)
        .find(|&ph| u32::from_le_bytes(bytes[ph..ph + 4].try_into().unwrap()) == PT_GNU_STACK)
        .expect("a Rust library has a PT_GNU_STACK header");
    bytes[stack + 4] |= 1; // PF_X
    let dir = PluginDir::new();
    let path = dir.write(&library_file_name("execstack"), &bytes);
    let report = dir.load();
    assert_eq!(
        error_chain(&report.rejected[0]),
        format!(
            "{}: not a loadable library: it asks for an executable stack, which would make the \
             host's stacks executable; expected a non-executable stack (rebuild without `-z execstack`)",
            path.display()
        )
    );
    // Allowed, it loads in both modes: the probe that opens it first for
    // an isolated plugin leaves the judgment to the host's policy.
    for isolated in [false, true] {
        if !greeter_tests::mode_runs_here(isolated) {
            continue;
        }
        let builder = dropin_host::Loader::<GreeterPlugin>::builder()
            .dir(dir.path())
            .allow_executable_stack(true);
        let report = greeter_tests::in_mode(builder, isolated).load().unwrap();
        assert!(
            report.rejected.is_empty(),
            "isolated: {isolated}: {:?}",
            report.rejected
        );
        assert_eq!(
            report.registry.get("hello").unwrap().greet().unwrap(),
            "Hello!"
        );
    }
}

/// "Application code is identical in both modes": a folder of every kind
/// of bad file is refused with the same kinds and the same words whether
/// its plugins were to run in the host or isolated, where the probe and the
/// plugin's own process are the first to open them.
#[test]
fn every_kind_of_bad_file_is_the_same_error_in_both_modes() {
    let dir = PluginDir::with(&[
        "hello",
        "not_a_plugin",
        "upper",
        "broken_init",
        "wrong_layout",
    ]);
    dir.write(&library_file_name("empty"), b"");
    dir.write(&library_file_name("text"), b"hello\n");
    let original = fs::read(artifacts().library("hello")).unwrap();
    dir.write(
        &library_file_name("truncated"),
        &original[..original.len() / 3],
    );
    let mut seen = Vec::new();
    for isolated in [false, true] {
        if !greeter_tests::mode_runs_here(isolated) {
            return;
        }
        let builder =
            dropin_host::Loader::<greeter_interface::GreeterPlugin>::builder().dir(dir.path());
        let report = greeter_tests::in_mode(builder, isolated).load().unwrap();
        assert_eq!(report.registry.len(), 1, "isolated: {isolated}");
        let rejected: Vec<(std::mem::Discriminant<LoadErrorKind>, String)> = report
            .rejected
            .iter()
            .map(|error| {
                (
                    std::mem::discriminant(error.kind()),
                    greeter_tests::error_chain(error),
                )
            })
            .collect();
        assert_eq!(rejected.len(), 7, "isolated: {isolated}: {rejected:?}");
        seen.push(rejected);
    }
    assert_eq!(seen[0], seen[1]);
}

/// A description that lies is found out when the library's root module is
/// read, in the host or in the plugin's own process: refused, naming both
/// values.
#[test]
fn a_plugin_whose_root_module_disagrees_with_its_description_is_refused() {
    let hello = fs::read(artifacts().library("hello")).unwrap();
    for isolated in [false, true] {
        if !greeter_tests::mode_runs_here(isolated) {
            continue;
        }
        let dir = PluginDir::new();
        let path = dir.write(
            &library_file_name("hello"),
            &greeter_tests::description_patched(&hello, "1.0.0", "9.9.9"),
        );
        let builder =
            dropin_host::Loader::<greeter_interface::GreeterPlugin>::builder().dir(dir.path());
        let report = greeter_tests::in_mode(builder, isolated).load().unwrap();
        assert!(report.registry.is_empty(), "isolated: {isolated}");
        assert_eq!(report.rejected.len(), 1, "{:?}", report.rejected);
        assert_eq!(
            report.rejected[0].to_string(),
            format!(
                "{}: its description says plugin version \"9.9.9\", but its root module says \
                 \"1.0.0\"; expected the same",
                path.display()
            ),
            "isolated: {isolated}"
        );
        assert!(matches!(
            report.rejected[0].kind(),
            LoadErrorKind::Disagrees {
                field: "plugin version",
                ..
            }
        ));
    }
}

/// A description's methods are checked against the host's interface before
/// anything opens the file, and, where the host maps it, against the root
/// module's once mapped.
#[test]
fn a_description_that_lists_other_methods_is_refused() {
    let hello = fs::read(artifacts().library("hello")).unwrap();
    let dir = PluginDir::new();
    let path = dir.write(
        &library_file_name("hello"),
        &greeter_tests::description_patched(&hello, "greet_to", "greet_xo"),
    );
    let report = dir.load();
    assert!(report.registry.is_empty());
    assert!(matches!(
        report.rejected[0].kind(),
        LoadErrorKind::Signature { .. }
    ));
    assert_eq!(
        report.rejected[0].to_string(),
        format!(
            "{}: not compatible with greeter 2.1.0 (the plugin was built against 2.1.0): \
             expected method `greet_to`, found `greet_xo`",
            path.display()
        )
    );
    // The interface accepts it (the version that added a method is not part
    // of its signature); the root module, once mapped, says otherwise.
    fs::write(
        &path,
        greeter_tests::description_patched(
            &hello,
            "greet_to\u{5}\0\0\u{0}2.1.0",
            "greet_to\u{5}\0\0\u{0}2.0.0",
        ),
    )
    .unwrap();
    let report = dir.load();
    assert!(report.registry.is_empty());
    assert_eq!(
        report.rejected[0].to_string(),
        format!(
            "{}: its description says methods \"fn greet() -> String (since 2.0.0), fn \
             greet_to(&str) -> String (since 2.0.0)\", but its root module says \"fn greet() -> \
             String (since 2.0.0), fn greet_to(&str) -> String (since 2.1.0)\"; expected the same",
            path.display()
        )
    );
}

/// A lock file approves bytes under the name its reviewer saw: bytes that
/// name themselves otherwise are refused before anything opens them.
#[test]
fn a_locked_file_whose_description_names_another_plugin_is_refused() {
    let dir = PluginDir::with(&["hello"]);
    let path = dir.path().join(library_file_name("hello"));
    let lock = serde_json::json!({"format": 1, "plugins": [{
        "file": library_file_name("hello"),
        "sha256": greeter_tests::sha256_hex(&fs::read(&path).unwrap()),
        "name": "greeter-of-record",
        "version": "1.0.0",
        "interface_version": "2.1.0",
    }]});
    fs::write(dir.path().join("plugins.lock"), lock.to_string()).unwrap();
    let report = dir.load();
    assert!(report.registry.is_empty());
    assert!(matches!(
        report.rejected[0].kind(),
        LoadErrorKind::LockedAs { .. }
    ));
    assert_eq!(
        report.rejected[0].to_string(),
        format!(
            "{}: the lock file recorded it as 'greeter-of-record', but its description names \
             'hello'; expected the same (record the lock file again)",
            path.display()
        )
    );
}

/// The plugin's `init` runs with what the host prepared for the plugin its
/// description names only once its root module has said the same: in both
/// modes, a description that lies is refused before `init` (which would
/// panic here).
#[test]
fn a_description_that_lies_is_refused_before_init_in_both_modes() {
    let runs_at_open = fs::read(artifacts().library("runs_at_open")).unwrap();
    for isolated in [false, true] {
        if !greeter_tests::mode_runs_here(isolated) {
            continue;
        }
        let dir = PluginDir::new();
        let path = dir.write(
            &library_file_name("runs_at_open"),
            &greeter_tests::description_patched(&runs_at_open, "0.1.0", "9.1.0"),
        );
        let builder = dropin_host::Loader::<greeter_interface::GreeterPlugin>::builder()
            .dir(dir.path())
            .config("runs-at-open", "init = \"panic\"");
        let report = greeter_tests::in_mode(builder, isolated).load().unwrap();
        assert_eq!(
            report
                .rejected
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [format!(
                "{}: its description says plugin version \"9.1.0\", but its root module says \
                 \"0.1.0\"; expected the same",
                path.display()
            )],
            "isolated: {isolated}"
        );
    }
}
