//! Host services: plugins call the application back, during `init`, during
//! their methods and from their own threads, in-process and isolated; a
//! panicking service, a missing one and a disabled plugin each give the
//! plugin a clean error.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use dropin_host::{Loader, isolation::Isolate, probe::Probe};
use greeter_interface::{BoxError, GreeterHost, GreeterHostHandle, GreeterPlugin};
use greeter_tests::{PluginDir, artifacts};

/// The application's services, as a test sees them: what plugins keep, and
/// every call served, with the plugin it came from.
#[derive(Default)]
struct Recorder {
    kept: Mutex<HashMap<(String, String), String>>,
    served: Mutex<Vec<(String, String)>>,
    /// The registry, for a service that calls the plugin back.
    registry: std::sync::OnceLock<&'static dropin_host::Registry<GreeterPlugin>>,
}

/// The services handed to the loader; the test keeps the recorder.
struct TestHost(Arc<Recorder>);

impl TestHost {
    fn caller(&self, service: &str, key: &str) -> String {
        let plugin = dropin::calling_plugin().expect("called from a plugin");
        self.0
            .served
            .lock()
            .unwrap()
            .push((plugin.clone(), format!("{service} {key}")));
        plugin
    }
}

impl GreeterHost for TestHost {
    fn load(&self, key: &str) -> Result<Option<String>, BoxError> {
        let plugin = self.caller("load", key);
        if key == "panic" {
            panic!("the host's store exploded");
        }
        if key == "fail" {
            return Err("no such shelf".into());
        }
        if key == "callback" {
            // Calls back into the plugin that is calling this service.
            let registry = self.0.registry.get().expect("set by the test");
            let answer = registry.get(&plugin).unwrap().greet_to("init");
            return Ok(Some(match answer {
                Ok(text) => format!("called back: {text}"),
                Err(error) => format!("refused: {error}"),
            }));
        }
        Ok(self
            .0
            .kept
            .lock()
            .unwrap()
            .get(&(plugin, key.to_owned()))
            .cloned())
    }

    fn store(&self, key: &str, value: &str) -> Result<(), BoxError> {
        let plugin = self.caller("store", key);
        self.0
            .kept
            .lock()
            .unwrap()
            .insert((plugin, key.to_owned()), value.to_owned());
        Ok(())
    }
}

fn served(recorder: &Recorder, call: &str) -> usize {
    recorder
        .served
        .lock()
        .unwrap()
        .iter()
        .filter(|(plugin, served)| plugin == "services-user" && served == call)
        .count()
}

#[test]
fn plugins_call_the_host_from_init_methods_and_threads_in_process_and_isolated() {
    let dir = PluginDir::with(&["services_user"]);
    for isolate in [false, cfg!(target_os = "linux")] {
        let recorder = Arc::new(Recorder::default());
        let mut builder = Loader::<GreeterPlugin>::builder().dir(dir.path()).services(
            GreeterHostHandle::provided_by(TestHost(Arc::clone(&recorder))),
        );
        if isolate {
            builder = builder
                .probe(Probe::command(artifacts().host_binary()))
                .isolate(Isolate::All);
        }
        let report: &'static _ = Box::leak(Box::new(builder.build().load().unwrap()));
        assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        let _ = recorder.registry.set(&report.registry);
        let plugin = report.registry.get("services-user").unwrap();
        assert_eq!(plugin.is_isolated(), isolate);
        // During init, from the plugin's thread, and during this call.
        assert_eq!(
            plugin.greet().unwrap(),
            "init: (); thread: () Some(\"stored from a thread\"); load: Some(\"stored during init\")",
            "isolated: {isolate}"
        );
        assert_eq!(
            plugin.greet_to("init").unwrap(),
            "Some(\"stored during init\")"
        );
        assert_eq!(plugin.greet_to("nothing").unwrap(), "None");
        assert_eq!(
            plugin.greet_to("fail").unwrap(),
            "Failed: host service `load` failed: no such shelf"
        );
        // A panic in the application's service reaches the plugin as an
        // error; the host and the plugin carry on.
        assert_eq!(
            plugin.greet_to("panic").unwrap(),
            "Panicked: host service `load` panicked: the host's store exploded"
        );
        assert_eq!(
            plugin.greet_to("init").unwrap(),
            "Some(\"stored during init\")"
        );
        // A service that calls back into the plugin calling it: in-process,
        // a nested call; isolated, refused (the plugin's process waits for
        // that very service), never a deadlock.
        let callback = plugin.greet_to("callback").unwrap();
        if isolate {
            assert_eq!(
                callback,
                "Some(\"refused: plugin 'services-user' failed: refused: the host's service \
                 that serves this plugin called it back; the plugin may be waiting for that very \
                 service\")"
            );
        } else {
            assert_eq!(
                callback,
                "Some(\"called back: Some(\\\"stored during init\\\")\")"
            );
        }
        assert_eq!(served(&recorder, "store init"), 1);
        assert_eq!(served(&recorder, "store thread"), 1);
        // Once the host disables the plugin, its calls are refused before
        // they reach the application: its thread's ticks stop being served.
        while served(&recorder, "load tick") == 0 {
            thread::sleep(Duration::from_millis(10));
        }
        plugin.disable("disabled by the test");
        thread::sleep(Duration::from_millis(100));
        let after_disable = served(&recorder, "load tick");
        thread::sleep(Duration::from_millis(200));
        assert_eq!(served(&recorder, "load tick"), after_disable);
    }
}

#[test]
fn a_service_the_host_lacks_is_missing_never_a_crash() {
    let dir = PluginDir::new();
    dir.add_compat("compat_newer_minor_greeter");
    // A plugin built against interface 2.2, whose services add a clock,
    // in this host of 2.1, whose services have none.
    let recorder = Arc::new(Recorder::default());
    let report = Loader::<GreeterPlugin>::builder()
        .dir(dir.path())
        .services(GreeterHostHandle::provided_by(TestHost(Arc::clone(
            &recorder,
        ))))
        .build()
        .load()
        .unwrap();
    let plugin = report.registry.get("greeter-2.2").unwrap();
    assert_eq!(
        plugin.greet_to("clock").unwrap(),
        "host service `time_of_day` is missing: the host offers \
         greeter-interface::GreeterHost 2.1.0; `time_of_day` was added in 2.2.0 (Missing)"
    );
    // The services both know work.
    assert_eq!(plugin.greet_to("store").unwrap(), "Ok(None)");
    // A host that offers no services at all.
    let report = Loader::<GreeterPlugin>::builder()
        .dir(dir.path())
        .build()
        .load()
        .unwrap();
    let plugin = report.registry.get("greeter-2.2").unwrap();
    assert_eq!(
        plugin.greet_to("store").unwrap(),
        "Err(ServiceError { kind: Missing, service: \"load\", message: \"the host offers no \
         greeter-interface::GreeterHost services\" })"
    );
}

#[test]
fn greeter_host_keeps_the_counter_across_runs_with_a_store() {
    let dir = PluginDir::with(&["counter"]);
    let store = dir.path().join("store.json");
    let store = store.to_str().unwrap();
    for (run, isolate) in [(1, false), (2, false), (3, true)] {
        let mut args = vec!["--store", store];
        if isolate {
            args.push("--isolate");
        }
        args.push("greet");
        let output = dir.run(&args);
        assert_eq!(
            greeter_tests::stdout(&output),
            format!("counter: Hello, visitor #{run}!\n")
        );
        assert_eq!(greeter_tests::stderr(&output), "");
    }
    // Without the store, every run starts afresh.
    let output = dir.run(&["greet"]);
    assert_eq!(
        greeter_tests::stdout(&output),
        "counter: Hello, visitor #1!\n"
    );
}

#[test]
fn services_of_another_trait_are_never_called_in_process_or_isolated() {
    /// The services of the example transform interface, handed to a
    /// greeter loader by mistake.
    struct Words;
    impl transform_interface::TransformHost for Words {
        fn protected_words(&self) -> Result<Vec<String>, BoxError> {
            Ok(vec!["never".to_owned()])
        }
    }
    let dir = PluginDir::with(&["services_user"]);
    for isolate in [false, cfg!(target_os = "linux")] {
        let mut builder = Loader::<GreeterPlugin>::builder()
            .dir(dir.path())
            .services(transform_interface::TransformHostHandle::provided_by(Words));
        if isolate {
            builder = builder
                .probe(Probe::command(artifacts().host_binary()))
                .isolate(Isolate::All);
        }
        let report = builder.build().load().unwrap();
        let plugin = report.registry.get("services-user").unwrap();
        assert_eq!(
            plugin.greet_to("init").unwrap(),
            "Missing: host service `load` is missing: the host offers no \
             greeter-interface::GreeterHost services",
            "isolated: {isolate}"
        );
    }
}
