use dropin::log_target;
use greeter_tests::{Captured, PluginDir, captured_logs};

#[test]
fn plugin_records_reach_the_host_logger_under_the_plugin_name() {
    let target = log_target("counter");
    assert_eq!(target, "plugin::counter");
    // Installs the capturing logger before the plugin is initialised.
    assert_eq!(captured_logs(&target), []);

    let report = PluginDir::with(&["counter"]).load();
    let counter = report.registry.get("counter").unwrap();
    counter.greet().unwrap();
    counter.greet().unwrap();

    let message = |level, message: &str| Captured {
        level,
        target: target.clone(),
        message: message.to_owned(),
    };
    assert_eq!(
        captured_logs(&target),
        [
            message(log::Level::Debug, "counter ready"),
            message(log::Level::Info, "greeting visitor #1"),
            message(log::Level::Info, "greeting visitor #2"),
        ]
    );
}
