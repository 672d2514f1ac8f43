//! Plugins built against frozen earlier (and later) versions of the
//! interface, loaded into the current host.

use std::fs;

use greeter_host::{Capability, GreeterInterface, LoadError, Loader};
use greeter_interface::INTERFACE_VERSION;
use greeter_tests::PluginDir;
use semver::{Version, VersionReq};

#[test]
fn the_host_is_at_interface_1_1() {
    // The fixtures below are frozen around this version.
    assert_eq!(INTERFACE_VERSION, "1.1.0");
}

#[test]
fn plugins_built_against_1_0_1_1_and_1_2_all_load_with_the_right_capabilities() {
    let dir = PluginDir::with(&["hello"]);
    dir.add_compat("v1_0");
    dir.add_compat("v1_2");
    let report = dir.load();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);

    let old = report.registry.get("compat-1.0").unwrap();
    assert_eq!(old.interface_version(), &Version::new(1, 0, 0));
    assert!(!old.has(Capability::GreetTo));
    assert!(old.greet_to("Ada").is_none());
    assert_eq!(old.greet().unwrap(), "Hello from interface 1.0!");

    let current = report.registry.get("hello").unwrap();
    assert_eq!(current.interface_version(), &Version::new(1, 1, 0));
    assert!(current.has(Capability::GreetTo));
    assert_eq!(current.greet_to("Ada").unwrap().unwrap(), "Hello, Ada!");

    let newer = report.registry.get("compat-1.2").unwrap();
    assert_eq!(newer.interface_version(), &Version::new(1, 2, 0));
    assert!(newer.has(Capability::GreetTo));
    assert_eq!(newer.greet().unwrap(), "Hello from interface 1.2!");
    assert_eq!(
        newer.greet_to("Ada").unwrap().unwrap(),
        "Hello from interface 1.2, Ada!"
    );
}

#[test]
fn older_and_newer_plugins_load_in_either_order() {
    // abi_stable keeps a process-wide record of the prefix types it has seen;
    // the order in which plugins of different minors arrive must not matter.
    for order in [["v1_2", "v1_0"], ["v1_0", "v1_2"]] {
        for version in order {
            let dir = PluginDir::new();
            dir.add_compat(version);
            let report = dir.load();
            assert!(
                report.rejected.is_empty(),
                "{version}: {:?}",
                report.rejected
            );
            assert_eq!(report.registry.len(), 1);
        }
    }
}

#[test]
fn a_plugin_of_another_major_is_refused_naming_both_versions() {
    let dir = PluginDir::with(&["hello"]);
    let path = dir.add_compat("v2_0");
    let report = dir.load();
    assert_eq!(report.registry.len(), 1);
    let error = &report.rejected[0];
    assert!(
        matches!(error, LoadError::IncompatibleInterface { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "{}: built against greeter interface 2.0.0, but this host has 1.1.0 \
             and accepts >=1.0.0, <2.0.0",
            path.display()
        )
    );
}

#[test]
fn a_changed_field_type_is_refused_with_the_field_and_both_types() {
    let dir = PluginDir::new();
    let changed = dir.add_compat("v1_1_changed");
    let older_and_changed = dir.add_compat("v1_0_changed");
    let report = dir.load();
    assert!(report.registry.is_empty());
    let messages: Vec<String> = report.rejected.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            format!(
                "{}: not a greeter plugin of a compatible layout (its interface version 1.0.0, \
                 the host's 1.1.0): field `version`: mismatched type: expected RStr<'a>, \
                 found u64; incompatible type size: expected 64, found 56 (and 1 more)",
                older_and_changed.display()
            ),
            format!(
                "{}: not a greeter plugin of a compatible layout (its interface version 1.1.0, \
                 the host's 1.1.0): field `host_requirement`: mismatched type: \
                 expected RStr<'a>, found u64",
                changed.display()
            ),
        ]
    );
}

#[test]
fn no_code_of_a_refused_plugin_runs() {
    let dir = PluginDir::new();
    for version in greeter_tests::COMPAT_VERSIONS {
        dir.add_compat(version);
    }
    let markers = PluginDir::new();
    let output = dir.run_with_env(
        &["check"],
        "GREETER_COMPAT_MARKERS",
        markers.path().to_str().unwrap(),
    );
    assert_eq!(output.status.code(), Some(1));
    let mut ran: Vec<String> = fs::read_dir(markers.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    ran.sort();
    assert_eq!(ran, ["compat-1.0", "compat-1.2"]);
}

#[test]
fn greet_to_uses_the_capability_where_present_and_falls_back_where_not() {
    let dir = PluginDir::with(&["hello", "hellohello"]);
    dir.add_compat("v1_0");
    let output = dir.run(&["greet", "--to", "Ada"]);
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "compat-1.0: Hello from interface 1.0!\nhello: Hello, Ada!\nhellohello: Hello, Ada!Hello, Ada!!\n"
    );
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "greeter-host: 'compat-1.0' predates interface 1.1.0 (built against 1.0.0): plain greeting instead\n"
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn check_prints_each_verdict_with_expected_and_found() {
    let dir = PluginDir::new();
    let old = dir.add_compat("v1_0");
    let major = dir.add_compat("v2_0");
    let output = dir.run(&["check"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "ok        {old}\n          plugin compat-1.0 1.0.0; interface 1.0.0 (host accepts >=1.0.0, <2.0.0); \
             host requirement any (host is {host}); missing capabilities: greet_to (since 1.1.0)\n\
             rejected  {major}\n          {major}: built against greeter interface 2.0.0, but this host has \
             1.1.0 and accepts >=1.0.0, <2.0.0\n\
             {dir}: 1 of 2 plugin files loaded\n",
            old = old.display(),
            major = major.display(),
            dir = dir.path().display(),
            host = greeter_host::HOST_VERSION,
        )
    );
}

#[test]
fn a_plugin_requiring_another_host_version_is_refused_before_init() {
    let dir = PluginDir::new();
    let path = dir.add("needs_new_host");
    let report = dir.load();
    assert_eq!(
        report.rejected[0].to_string(),
        format!(
            "{}: plugin 'needs-new-host' requires a host matching >=9.0.0, but this host is {}",
            path.display(),
            greeter_host::HOST_VERSION
        )
    );

    let report = Loader::<GreeterInterface>::builder()
        .dir(dir.path())
        .host_version(Version::new(9, 1, 0))
        .build()
        .load()
        .unwrap();
    let plugin = report
        .registry
        .get("needs-new-host")
        .expect("a 9.1 host loads it");
    assert_eq!(plugin.host_requirement().unwrap().to_string(), ">=9.0.0");
}

#[test]
fn a_host_can_narrow_the_interface_versions_it_accepts() {
    let dir = PluginDir::with(&["hello"]);
    let old = dir.add_compat("v1_0");
    let report = Loader::<GreeterInterface>::builder()
        .dir(dir.path())
        .accept_interface(VersionReq::parse(">=1.1").unwrap())
        .build()
        .load()
        .unwrap();
    assert!(report.registry.get("hello").is_some());
    assert_eq!(
        report.rejected[0].to_string(),
        format!(
            "{}: built against greeter interface 1.0.0, but this host has 1.1.0 and accepts >=1.1",
            old.display()
        )
    );

    let output = dir.run(&["--accept-interface", ">=1.1", "list"]);
    assert_eq!(output.status.code(), Some(1));
    let output = dir.run(&["--accept-interface", "not a requirement", "list"]);
    assert_eq!(output.status.code(), Some(2));
}
