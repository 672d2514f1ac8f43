use greeter_interface::GreetErrorKind;
use greeter_tests::PluginDir;

#[test]
fn a_panicking_greet_is_an_error_naming_the_plugin_and_the_host_carries_on() {
    let report = PluginDir::with(&["panicky", "hello"]).load();
    let panicky = report
        .registry
        .get("panicky")
        .expect("panicky loads: only its greet panics");
    for _ in 0..3 {
        let error = panicky.greet().unwrap_err();
        assert_eq!(error.kind(), GreetErrorKind::Panicked);
        assert_eq!(error.plugin(), "panicky");
        assert_eq!(
            error.to_string(),
            "plugin 'panicky' panicked: greet is broken on purpose"
        );
    }
    assert_eq!(
        report.registry.get("hello").unwrap().greet().unwrap(),
        "Hello!"
    );
}
