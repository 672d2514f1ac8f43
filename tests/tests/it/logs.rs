use dropin::log_target;
use greeter_tests::{Captured, PluginDir, captured_logs_of_this_thread};

#[test]
fn plugin_records_reach_the_host_logger_under_the_plugin_name() {
    let target = log_target("counter");
    assert_eq!(target, "plugin::counter");
    // Installs the capturing logger before the plugin is initialised.
    assert_eq!(captured_logs_of_this_thread(&target), []);

    let dir = PluginDir::with(&["counter"]);
    let report = dir.load();
    let counter = report.registry.get("counter").unwrap();
    counter.greet().unwrap();
    counter.greet().unwrap();

    let message = |level, message: &str| Captured {
        level,
        target: target.clone(),
        message: message.to_owned(),
    };
    assert_eq!(
        captured_logs_of_this_thread(&target),
        [
            // The plugin learns the folder its file was found in, not the
            // private copy it runs from.
            message(
                log::Level::Debug,
                &format!(
                    "counter ready in {}, starting after 0",
                    dir.path().display()
                )
            ),
            message(log::Level::Info, "greeting visitor #1"),
            message(log::Level::Info, "greeting visitor #2"),
        ]
    );
}
