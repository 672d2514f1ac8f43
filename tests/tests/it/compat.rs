//! Plugins built against frozen earlier, later and broken versions of the
//! greeter and transform interfaces, loaded into the current host.

use std::fs;

use dropin::{CallErrorKind, Interface};
use dropin_host::{LoadErrorKind, Loader};
use greeter_interface::GreeterPlugin;
use greeter_tests::{COMPAT_WORKSPACES, PluginDir, stderr, stdout};
use semver::{Version, VersionReq};
use transform_interface::{Direction, TransformPlugin};

#[test]
fn the_hosts_are_at_greeter_2_1_and_transform_1_1() {
    // The fixtures below are frozen around these versions.
    assert_eq!(GreeterPlugin::VERSION, "2.1.0");
    assert_eq!(TransformPlugin::VERSION, "1.1.0");
}

#[test]
fn greeters_of_an_earlier_and_a_later_minor_load_with_the_methods_they_have() {
    let dir = PluginDir::with(&["hello"]);
    dir.add_compat("compat_older_minor_greeter");
    dir.add_compat("compat_newer_minor_greeter");
    let report = dir.load();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);

    let old = report.registry.get("greeter-2.0").unwrap();
    assert_eq!(old.interface_version(), &Version::new(2, 0, 0));
    assert_eq!(old.capabilities(), []);
    assert_eq!(old.missing_capabilities(), [("greet_to", "2.1.0")]);
    assert_eq!(old.greet().unwrap(), "Hello from interface 2.0!");
    let missing = old.greet_to("Ada").unwrap_err();
    assert_eq!(missing.kind(), CallErrorKind::Missing);
    assert_eq!(missing.plugin(), "greeter-2.0");
    assert_eq!(
        missing.missing_method(),
        Some(("greet_to", "2.1.0", "2.0.0"))
    );
    assert_eq!(
        missing.to_string(),
        "plugin 'greeter-2.0' has no method `greet_to`: it was added in interface 2.1.0, \
         the plugin was built against 2.0.0"
    );
    // Missing is not a failure: the plugin stays enabled.
    assert_eq!(old.failure(), None);

    let current = report.registry.get("hello").unwrap();
    assert_eq!(current.capabilities(), [("greet_to", "2.1.0")]);
    assert_eq!(current.greet_to("Ada").unwrap(), "Hello, Ada!");

    let newer = report.registry.get("greeter-2.2").unwrap();
    assert_eq!(newer.interface_version(), &Version::new(2, 2, 0));
    assert_eq!(newer.capabilities(), [("greet_to", "2.1.0")]);
    assert_eq!(newer.greet().unwrap(), "Hello from interface 2.2!");
    assert_eq!(
        newer.greet_to("Ada").unwrap(),
        "Hello from interface 2.2, Ada!"
    );
}

#[test]
fn transforms_of_an_earlier_and_a_later_minor_load_with_the_methods_they_have() {
    let dir = PluginDir::with(&["rot13"]);
    dir.add_compat("compat_older_minor_transform");
    dir.add_compat("compat_newer_minor_transform");
    let report = dir.load_as::<TransformPlugin>();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);

    let old = report.registry.get("transform-1.0").unwrap();
    assert_eq!(old.apply("abc", Direction::Forward).unwrap(), "cba");
    assert_eq!(old.info().unwrap().inverse.as_deref(), Some("reverse"));
    let missing = old.apply_bytes(b"abc", Direction::Forward).unwrap_err();
    assert_eq!(
        missing.missing_method(),
        Some(("apply_bytes", "1.1.0", "1.0.0"))
    );

    let current = report.registry.get("rot13").unwrap();
    assert_eq!(
        current.apply_bytes(b"abc", Direction::Forward).unwrap(),
        b"nop"
    );

    // 1.2 added `length`, which this host does not know; the interface's
    // default `apply_bytes` runs inside the plugin.
    let newer = report.registry.get("transform-1.2").unwrap();
    assert_eq!(
        newer.apply_bytes(b"abc", Direction::Forward).unwrap(),
        b"cba"
    );
    assert_eq!(newer.capabilities(), [("apply_bytes", "1.1.0")]);
}

#[test]
fn older_and_newer_plugins_load_in_either_order() {
    let libs = ["compat_newer_minor_greeter", "compat_older_minor_greeter"];
    for order in [libs, [libs[1], libs[0]]] {
        for lib in order {
            let dir = PluginDir::new();
            dir.add_compat(lib);
            let report = dir.load();
            assert!(report.rejected.is_empty(), "{lib}: {:?}", report.rejected);
            assert_eq!(report.registry.len(), 1);
        }
    }
}

#[test]
fn a_plugin_of_another_major_is_refused_naming_both_versions() {
    let dir = PluginDir::with(&["hello"]);
    let greeter = dir.add_compat("compat_next_major_greeter");
    let transform = dir.add_compat("compat_next_major_transform");
    let report = dir.load();
    assert_eq!(report.registry.len(), 1);
    let error = &report.rejected[0];
    assert!(
        matches!(error.kind(), LoadErrorKind::AnotherMajor { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "{}: built against greeter interface 3.0.0, another major version than this \
             host's 2.1.0; expected greeter 2.x: rebuild the plugin against it",
            greeter.display()
        )
    );

    let report = dir.load_as::<TransformPlugin>();
    let error = report
        .rejected
        .iter()
        .find(|error| error.path() == transform)
        .unwrap();
    assert_eq!(
        error.to_string(),
        format!(
            "{}: built against transform interface 2.0.0, another major version than this \
             host's 1.1.0; expected transform 1.x: rebuild the plugin against it",
            transform.display()
        )
    );
}

#[test]
fn accepting_more_versions_never_lets_another_major_in() {
    // The next major's greeter has the same method types: only its major
    // version says its methods may mean something else.
    let dir = PluginDir::new();
    let major = dir.add_compat("compat_next_major_greeter");
    let output = dir.run(&["--accept-interface", ">=1.0", "list"]);
    assert_eq!(
        stdout(&output),
        format!(
            "-                -          -          rejected  {major}\n    {major}: built against \
             greeter interface 3.0.0, another major version than this host's 2.1.0; expected \
             greeter 2.x: rebuild the plugin against it\n",
            major = major.display()
        )
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn a_changed_type_is_refused_naming_the_method_and_both_types() {
    let dir = PluginDir::new();
    let greeter = dir.add_compat("compat_changed_type_greeter");
    let transform = dir.add_compat("compat_changed_type_transform");

    let report = dir.load();
    assert!(report.registry.is_empty());
    let error = report
        .rejected
        .iter()
        .find(|error| error.path() == greeter)
        .unwrap();
    assert!(
        matches!(error.kind(), LoadErrorKind::Signature { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "{}: not compatible with greeter 2.1.0 (the plugin was built against 2.1.0): \
             method `greet_to`: argument 1: expected &str, found String",
            greeter.display()
        )
    );

    let report = dir.load_as::<TransformPlugin>();
    assert!(report.registry.is_empty());
    let error = report
        .rejected
        .iter()
        .find(|error| error.path() == transform)
        .unwrap();
    assert_eq!(
        error.to_string(),
        format!(
            "{}: not compatible with transform 1.1.0 (the plugin was built against 1.1.0): \
             method `info`: result: Info: field `inverse`: expected Option<String>, found bool",
            transform.display()
        )
    );
}

#[test]
fn a_plugin_built_before_the_interface_moved_to_dropin_is_told_to_rebuild() {
    let dir = PluginDir::with(&["hello"]);
    let old = dir.add_compat("compat_v1_0");
    let report = dir.load();
    assert_eq!(report.registry.len(), 1);
    // It carries no description: refused from its file alone, before anything
    // of it runs.
    assert!(matches!(
        report.rejected[0].kind(),
        LoadErrorKind::NoDescription { .. }
    ));
    assert_eq!(
        report.rejected[0].to_string(),
        format!(
            "{}: not a plugin: expected the description a dropin plugin exports, found a \
             library without one (a greeter plugin exports it with `export_greeter!(YourType);`; \
             a plugin built with an earlier dropin must be rebuilt)",
            old.display()
        )
    );
}

#[test]
fn no_entry_point_of_a_refused_plugin_runs_and_none_is_mapped() {
    let dir = PluginDir::new();
    for (_, libs) in COMPAT_WORKSPACES {
        for lib in *libs {
            dir.add_compat(lib);
        }
    }
    let markers = PluginDir::new();
    let opened = PluginDir::new();
    // Checking reads descriptions: nothing opens any of the files.
    let output = dir
        .command(&["check"])
        .env("GREETER_COMPAT_MARKERS", markers.path())
        .env("GREETER_OPEN_MARKERS", opened.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let files: usize = COMPAT_WORKSPACES.iter().map(|(_, libs)| libs.len()).sum();
    assert!(
        stdout(&output).ends_with(&format!("2 of {files} plugin files accepted\n")),
        "{}",
        stdout(&output)
    );
    assert_eq!(fs::read_dir(markers.path()).unwrap().count(), 0);
    assert_eq!(open_marker::openers(opened.path()), []);
    // Loading opens the two it accepts, and only those.
    let child = dir
        .command(&["greet"])
        .env("GREETER_COMPAT_MARKERS", markers.path())
        .env("GREETER_OPEN_MARKERS", opened.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let host = child.id();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let mut ran: Vec<String> = fs::read_dir(markers.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    ran.sort();
    assert_eq!(ran, ["greeter-2.0", "greeter-2.2"]);
    // The host mapped the two it accepts, after the probe opened them. The
    // others, the one whose method signatures changed included, were refused
    // from their descriptions, opened by no process at all.
    let openers = open_marker::openers(opened.path());
    let mapped_by_host: Vec<&str> = openers
        .iter()
        .filter(|(_, pid)| *pid == host)
        .map(|(lib, _)| lib.as_str())
        .collect();
    assert_eq!(
        mapped_by_host,
        ["compat_newer_minor_greeter", "compat_older_minor_greeter"]
    );
    let mut probed: Vec<&str> = openers
        .iter()
        .filter(|(_, pid)| *pid != host)
        .map(|(lib, _)| lib.as_str())
        .collect();
    probed.dedup();
    assert_eq!(probed, mapped_by_host);
}

#[test]
fn greet_to_uses_the_method_where_present_and_falls_back_where_not() {
    let dir = PluginDir::with(&["hello", "hellohello"]);
    dir.add_compat("compat_older_minor_greeter");
    let output = dir.run(&["greet", "--to", "Ada"]);
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "greeter-2.0: Hello from interface 2.0!\nhello: Hello, Ada!\nhellohello: Hello, Ada!Hello, Ada!!\n"
    );
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "greeter-host: 'greeter-2.0' predates interface 2.1 (built against 2.0.0): plain greeting instead\n"
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn check_prints_each_verdict_with_expected_and_found() {
    let dir = PluginDir::new();
    let old = dir.add_compat("compat_older_minor_greeter");
    let major = dir.add_compat("compat_next_major_greeter");
    let output = dir.run(&["check"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "rejected  {major}\n          {major}: built against greeter interface 3.0.0, another major \
             version than this host's 2.1.0; expected greeter 2.x: rebuild the plugin against it\n\
             ok        {old}\n          plugin greeter-2.0 1.0.0; interface 2.0.0 (host accepts >=2.0.0, <3.0.0); \
             host requirement any (host is 0.1.0); missing capabilities: greet_to (since 2.1.0)\n\
             {dir}: 1 of 2 plugin files accepted\n",
            old = old.display(),
            major = major.display(),
            dir = dir.path().display(),
        )
    );
}

/// A host requirement is the plugin's text: `check` shows it escaped, so
/// a line end in it cannot forge a line of the verdict.
#[test]
fn check_shows_a_host_requirement_escaped() {
    let dir = PluginDir::new();
    let library = fs::read(greeter_tests::artifacts().library("needs_new_host")).unwrap();
    // Whitespace around a requirement is not part of it: `>=0.1` with a
    // line end is still a requirement this host meets.
    let patched = greeter_tests::description_patched(&library, ">=9.0.0", ">=0.1\n\u{b}");
    dir.write(
        &greeter_tests::library_file_name("needs_new_host"),
        &patched,
    );
    let output = dir.run(&["check"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(
        text.contains("host requirement >=0.1 (host is 0.1.0)"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 3, "{text}");
}

#[test]
fn a_plugin_requiring_another_host_version_is_refused_before_init() {
    let dir = PluginDir::new();
    let path = dir.add("needs_new_host");
    let loader = |version| {
        greeter_tests::trusted(
            Loader::<GreeterPlugin>::builder()
                .dir(dir.path())
                .host_version(version),
        )
        .load()
        .unwrap()
    };
    let report = loader(Version::new(0, 1, 0));
    assert_eq!(
        report.rejected[0].to_string(),
        format!(
            "{}: plugin 'needs-new-host' requires a host matching >=9.0.0, but this host is 0.1.0",
            path.display(),
        )
    );
    let report = loader(Version::new(9, 1, 0));
    let plugin = report
        .registry
        .get("needs-new-host")
        .expect("a 9.1 host loads it");
    assert_eq!(plugin.host_requirement().unwrap().to_string(), ">=9.0.0");
}

#[test]
fn a_host_can_narrow_the_interface_versions_it_accepts() {
    let dir = PluginDir::with(&["hello"]);
    let old = dir.add_compat("compat_older_minor_greeter");
    let report = greeter_tests::trusted(
        Loader::<GreeterPlugin>::builder()
            .dir(dir.path())
            .accept_interface(VersionReq::parse(">=2.1").unwrap()),
    )
    .load()
    .unwrap();
    assert!(report.registry.get("hello").is_some());
    assert_eq!(
        report.rejected[0].to_string(),
        format!(
            "{}: built against greeter interface 2.0.0, but this host has 2.1.0 and accepts >=2.1",
            old.display()
        )
    );

    let output = dir.run(&["--accept-interface", ">=2.1", "list"]);
    assert_eq!(output.status.code(), Some(1));
    let output = dir.run(&["--accept-interface", "not a requirement", "list"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn a_plugin_built_with_panic_abort_is_refused_unless_the_host_allows_it() {
    let dir = PluginDir::new();
    let path = dir.add_compat("compat_panic_abort");
    let report = dir.load();
    assert!(matches!(
        report.rejected[0].kind(),
        LoadErrorKind::PanicAbort { .. }
    ));
    assert_eq!(
        report.rejected[0].to_string(),
        format!(
            "{}: plugin 'aborts' was built with panic = \"abort\", so its first panic would kill \
             the host; expected panic = \"unwind\" (the default), or a host that allows abort",
            path.display()
        )
    );

    let report = greeter_tests::trusted(
        Loader::<GreeterPlugin>::builder()
            .dir(dir.path())
            .allow_panic_abort(true),
    )
    .load()
    .unwrap();
    assert_eq!(
        report.registry.get("aborts").unwrap().greet().unwrap(),
        "Hello, until the first panic!"
    );

    let output = dir.run(&["greet"]);
    assert_eq!(output.status.code(), Some(1));
    let output = dir.run(&["--allow-panic-abort", "greet"]);
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "aborts: Hello, until the first panic!\n"
    );
    assert_eq!(output.status.code(), Some(0));
}

/// A locked file is not probed: an isolated plugin's own process is the
/// first to check it. What that process finds comes back as the kind, and
/// the words, the host finds in-process, with the host's own versions.
#[test]
fn checks_failing_in_an_isolated_process_are_the_errors_of_the_host() {
    for isolated in [false, true] {
        if !greeter_tests::mode_runs_here(isolated) {
            continue;
        }
        let dir = PluginDir::new();
        let major = dir.add_compat("compat_next_major_greeter");
        let changed = dir.add_compat("compat_changed_type_greeter");
        let entry = |path: &std::path::Path| {
            serde_json::json!({
                "file": path.file_name().unwrap().to_str().unwrap(),
                "sha256": greeter_tests::sha256_hex(&fs::read(path).unwrap()),
                "name": dropin_host::read_description(path).unwrap().plugin_name,
                "version": "1.0.0",
                "interface_version": "2.1.0",
            })
        };
        let lock = serde_json::json!({"format": 1, "plugins": [entry(&major), entry(&changed)]});
        fs::write(dir.path().join("plugins.lock"), lock.to_string()).unwrap();
        let builder = Loader::<GreeterPlugin>::builder()
            .dir(dir.path())
            .lock(dropin_host::LockMode::Required);
        let report = greeter_tests::in_mode(builder, isolated).load().unwrap();
        assert!(report.registry.is_empty());
        let kinds: Vec<_> = report.rejected.iter().map(|e| e.kind()).collect();
        assert!(
            matches!(
                kinds[..],
                [
                    LoadErrorKind::Signature { .. },
                    LoadErrorKind::AnotherMajor { .. }
                ]
            ),
            "isolated: {isolated}: {kinds:?}"
        );
        let messages: Vec<String> = report.rejected.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                format!(
                    "{}: not compatible with greeter 2.1.0 (the plugin was built against 2.1.0): \
                     method `greet_to`: argument 1: expected &str, found String",
                    changed.display()
                ),
                format!(
                    "{}: built against greeter interface 3.0.0, another major version than this \
                     host's 2.1.0; expected greeter 2.x: rebuild the plugin against it",
                    major.display()
                ),
            ],
            "isolated: {isolated}"
        );
    }
}
