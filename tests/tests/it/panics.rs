use greeter_host::CallError;
use greeter_interface::GreetErrorKind;
use greeter_tests::PluginDir;

#[test]
fn a_panicking_greet_is_an_error_naming_the_plugin_and_the_host_carries_on() {
    let report = PluginDir::with(&["panicky", "hello"]).load();
    let panicky = report
        .registry
        .get("panicky")
        .expect("panicky loads: only its greet panics");
    let CallError::Plugin(error) = panicky.greet().unwrap_err() else {
        panic!("the first call reaches the plugin");
    };
    assert_eq!(error.kind(), GreetErrorKind::Panicked);
    assert_eq!(error.plugin(), "panicky");
    assert_eq!(
        error.to_string(),
        "plugin 'panicky' panicked: greet is broken on purpose"
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
    assert!(matches!(panicky.greet(), Err(CallError::Plugin(_))));
    assert_eq!(
        panicky.failure(),
        Some("panicked: greet is broken on purpose")
    );
    for _ in 0..3 {
        let error = panicky.greet().unwrap_err();
        assert_eq!(
            error,
            CallError::Disabled {
                plugin: "panicky".to_owned(),
                reason: "panicked: greet is broken on purpose".to_owned(),
            }
        );
        assert_eq!(
            error.to_string(),
            "plugin 'panicky' is disabled after an earlier panic (panicked: greet is broken on purpose)"
        );
    }
    assert!(matches!(
        panicky.greet_to("Ada"),
        Some(Err(CallError::Disabled { .. }))
    ));
}
