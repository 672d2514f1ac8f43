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
        "plugin 'panicky' panicked: greet is broken on purpose"
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
