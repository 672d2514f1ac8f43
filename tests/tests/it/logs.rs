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

/// An isolated plugin's records reach the host's logger under its name
/// from the first one on, `init`'s included: the name its file's
/// description gives, known before its process starts.
#[test]
fn an_isolated_plugins_records_from_init_on_are_under_its_name() {
    let target = log_target("counter");
    // Installs the capturing logger before the plugin is initialised.
    greeter_tests::captured_logs(&target);
    let dir = PluginDir::with(&["counter"]);
    let report = dropin_host::Loader::<greeter_interface::GreeterPlugin>::builder()
        .dir(dir.path())
        .probe(dropin_host::probe::Probe::command(
            greeter_tests::artifacts().host_binary(),
        ))
        .isolate(dropin_host::isolation::Isolate::All)
        .build_isolated()
        .load()
        .unwrap();
    let counter = report.registry.get("counter").unwrap();
    assert_eq!(counter.greet().unwrap(), "Hello, visitor #1!");
    // Records cross from the plugin's process on a thread of their own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let messages = loop {
        let messages: Vec<String> = greeter_tests::captured_logs(&target)
            .into_iter()
            .map(|captured| captured.message)
            .collect();
        if messages.len() >= 2 || std::time::Instant::now() > deadline {
            break messages;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(
        messages,
        [
            format!(
                "counter ready in {}, starting after 0",
                dir.path().display()
            ),
            "greeting visitor #1".to_owned(),
        ]
    );
    // Nothing under the file's path.
    let file_target = format!("plugin::{}", dir.path().display());
    assert!(
        greeter_tests::captured_logs(&file_target).is_empty()
            && greeter_tests::captured_logs(&format!("{file_target}/libcounter.so")).is_empty()
    );
}
