use dropin::Interface;
use greeter_interface::GreeterPlugin;
use greeter_tests::PluginDir;

#[test]
fn every_example_plugin_loads_and_greets_with_its_exact_text() {
    let dir = PluginDir::with(&["hello", "hellohello", "counter"]);
    let report = dir.load();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    let greetings: Vec<(String, String)> = report
        .registry
        .iter()
        .map(|plugin| {
            (
                plugin.name().to_owned(),
                plugin.greet().unwrap().into_string(),
            )
        })
        .collect();
    assert_eq!(
        greetings,
        [
            ("counter".to_owned(), "Hello, visitor #1!".to_owned()),
            ("hello".to_owned(), "Hello!".to_owned()),
            ("hellohello".to_owned(), "Hello!Hello!!".to_owned()),
        ]
    );
}

#[test]
fn a_plugin_reports_its_name_versions_and_file() {
    let dir = PluginDir::new();
    let path = dir.add("hello");
    let report = dir.load();
    let hello = report.registry.get("hello").expect("hello is loaded");
    assert_eq!(hello.version().to_string(), "1.0.0");
    assert_eq!(
        hello.interface_version().to_string(),
        GreeterPlugin::VERSION
    );
    assert_eq!(GreeterPlugin::VERSION, "2.1.0");
    assert_eq!(hello.path(), path);
}

#[test]
fn a_plugin_keeps_its_state_between_calls() {
    let report = PluginDir::with(&["counter"]).load();
    let counter = report.registry.get("counter").unwrap();
    for n in 1..=3 {
        assert_eq!(counter.greet().unwrap(), format!("Hello, visitor #{n}!"));
    }
}

#[test]
fn a_plugin_with_a_large_thread_local_loads() {
    // Its `.tbss` makes the TLS segment's memory size reach past the
    // loadable segments; glibc loads it, and so must the host.
    let report = PluginDir::with(&["big_tls"]).load();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(
        report.registry.get("big-tls").unwrap().greet().unwrap(),
        "Hello from a big thread-local! (1)"
    );
}
