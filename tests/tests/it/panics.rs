use dropin::{CallErrorKind, log_target};
use greeter_tests::{PluginDir, captured_logs};

#[test]
fn a_panicking_greet_is_an_error_naming_the_plugin_and_the_host_carries_on() {
    let target = log_target("panicky");
    // Installs the capturing logger before the plugin is initialised.
    captured_logs(&target);
    let report = PluginDir::with(&["panicky", "hello"]).load();
    let panicky = report
        .registry
        .get("panicky")
        .expect("panicky loads: only its greet panics");
    let error = panicky.greet().unwrap_err();
    assert_eq!(error.kind(), CallErrorKind::Panicked);
    assert_eq!(error.plugin(), "panicky");
    assert_eq!(error.message(), "greet is broken on purpose");
    assert_eq!(
        error.location(),
        Some("tests/fixtures/panicky/src/lib.rs:13:9")
    );
    assert_eq!(
        error.to_string(),
        "plugin 'panicky' panicked at tests/fixtures/panicky/src/lib.rs:13:9: greet is broken on purpose"
    );
    // Reported at warn, the command line's default level, with where.
    let logged = captured_logs(&target);
    assert!(
        logged.iter().any(|record| record.level == log::Level::Warn
            && record.message
                == "panicked at tests/fixtures/panicky/src/lib.rs:13:9: greet is broken on purpose; \
                    the plugin is disabled for the rest of this process"),
        "{logged:?}"
    );
    assert_eq!(
        report.registry.get("hello").unwrap().greet().unwrap(),
        "Hello!"
    );
}

#[test]
fn a_plugin_that_panicked_is_disabled_and_never_called_again() {
    let report = PluginDir::with(&["panicky"]).load();
    let panicky = report.registry.get("panicky").unwrap();
    assert_eq!(panicky.failure(), None);
    assert_eq!(panicky.greet().unwrap_err().kind(), CallErrorKind::Panicked);
    assert_eq!(
        panicky.failure(),
        Some("panicked: greet is broken on purpose")
    );
    for _ in 0..3 {
        let error = panicky.greet().unwrap_err();
        assert_eq!(error.kind(), CallErrorKind::Disabled);
        assert_eq!(error.message(), "panicked: greet is broken on purpose");
        assert_eq!(
            error.to_string(),
            "plugin 'panicky' is disabled after an earlier panic (panicked: greet is broken on purpose)"
        );
    }
    assert_eq!(
        panicky.greet_to("Ada").unwrap_err().kind(),
        CallErrorKind::Disabled
    );
}

/// Loads `runs-at-open` (configured with `config`) beside `hello`, in this
/// process or, with `isolated`, in a process of its own.
fn load_configured(
    dir: &PluginDir,
    config: &str,
    isolated: bool,
) -> dropin_host::LoadReport<greeter_interface::GreeterPlugin> {
    let builder = dropin_host::Loader::<greeter_interface::GreeterPlugin>::builder()
        .dir(dir.path())
        .config("runs-at-open", config);
    greeter_tests::in_mode(builder, isolated).load().unwrap()
}

/// The same error in both modes: an isolated plugin's failing `init` comes
/// back as the kind and words it has in-process.
#[test]
fn a_panic_in_init_rejects_the_plugin_at_load_and_the_others_load() {
    for isolated in [false, true] {
        if !greeter_tests::mode_runs_here(isolated) {
            continue;
        }
        let dir = PluginDir::with(&["runs_at_open", "hello"]);
        let report = load_configured(&dir, "init = \"panic\"", isolated);
        assert!(report.registry.get("runs-at-open").is_none());
        assert_eq!(
            report.registry.get("hello").unwrap().greet().unwrap(),
            "Hello!"
        );
        assert!(
            matches!(&report.rejected[..], [error] if matches!(error.kind(), dropin_host::LoadErrorKind::Init { .. })),
            "isolated: {isolated}: {:?}",
            report.rejected
        );
        let messages: Vec<String> = report.rejected.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [format!(
                "{}: plugin failed to initialise: panicked: init is broken on purpose",
                dir.path()
                    .join(greeter_tests::library_file_name("runs_at_open"))
                    .display(),
            )],
            "isolated: {isolated}"
        );
    }
}

/// An error is formatted and dropped, and a panic's payload dropped, by the
/// plugin's own code: a panic there is caught like any other.
#[test]
fn a_panic_while_formatting_or_dropping_an_error_or_a_payload_is_caught() {
    for (mode, message) in [
        (
            "error-format-panics",
            "formatting the error is broken on purpose",
        ),
        ("error-drop-panics", "dropping it is broken on purpose"),
        ("payload-drop-panics", "panic with a non-string payload"),
    ] {
        for isolated in [false, true] {
            if !greeter_tests::mode_runs_here(isolated) {
                continue;
            }
            let dir = PluginDir::with(&["runs_at_open", "hello"]);
            let report = load_configured(&dir, &format!("greet = \"{mode}\""), isolated);
            let plugin = report.registry.get("runs-at-open").unwrap();
            let error = plugin.greet().unwrap_err();
            assert_eq!(
                (error.kind(), error.message()),
                (CallErrorKind::Panicked, message),
                "{mode}, isolated: {isolated}"
            );
            assert_eq!(plugin.greet().unwrap_err().kind(), CallErrorKind::Disabled);
            assert_eq!(
                report.registry.get("hello").unwrap().greet().unwrap(),
                "Hello!"
            );
        }
    }
}
