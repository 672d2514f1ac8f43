//! Host services: plugins call the application back, during `init`, during
//! their methods and from their own threads, in-process and isolated; a
//! panicking service, a missing one and a disabled plugin each give the
//! plugin a clean error. An isolated plugin's process that sends a call
//! over 16 MiB or a malformed one gets an error, and the host carries on;
//! `greeter-host`'s store keeps each plugin's keys apart and bounds them
//! (SECURITY.md, point 12).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use dropin_host::{LoadReport, Loader};
use greeter_interface::{BoxError, GreeterHost, GreeterHostHandle, GreeterPlugin};
use greeter_tests::PluginDir;

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
    served_by(recorder, "services-user", call)
}

/// How many times the application served `call` for `plugin`.
fn served_by(recorder: &Recorder, plugin: &str, call: &str) -> usize {
    recorder
        .served
        .lock()
        .unwrap()
        .iter()
        .filter(|(by, served)| by == plugin && served == call)
        .count()
}

/// The calls the application served for `services-user`, in order, but
/// the ticks of its thread.
fn served_but_ticks(recorder: &Recorder) -> Vec<String> {
    recorder
        .served
        .lock()
        .unwrap()
        .iter()
        .filter(|(by, served)| by == "services-user" && served != "load tick")
        .map(|(_, served)| served.clone())
        .collect()
}

/// How long a test waits for something that should happen at once.
const DEADLINE: Duration = greeter_tests::HANG;

/// Polls `done` until it holds; fails, naming `what`, after [`DEADLINE`].
fn wait_for(what: &str, done: impl FnMut() -> bool) {
    wait_for_or(done, || what.to_owned());
}

/// Polls `done` until it holds; fails after [`DEADLINE`] with what
/// `explain` says then.
fn wait_for_or(mut done: impl FnMut() -> bool, explain: impl Fn() -> String) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < DEADLINE,
            "waited {DEADLINE:?} for {}, in vain",
            explain()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Where the host logs what `services-user` logs.
const PLUGIN_LOGS: &str = "plugin::services-user";

/// Where the host logs about isolated processes.
#[cfg(target_os = "linux")]
const ISOLATION_LOGS: &str = "dropin_host::isolation";

/// What `services-user`'s thread logs when its `n`th tick fails because the
/// host disabled it.
fn refused_tick(n: u32) -> String {
    format!(
        "tick {n} failed: host service `load` failed: refused: plugin 'services-user' was \
         disabled by the host"
    )
}

#[test]
fn plugins_call_the_host_from_init_methods_and_threads_in_process_and_isolated() {
    // Keeps every log record, the plugin's among them.
    greeter_tests::captured_logs(PLUGIN_LOGS);
    let dir = PluginDir::with(&["services_user"]);
    for isolate in [false, true] {
        if !greeter_tests::mode_runs_here(isolate) {
            continue;
        }
        let recorder = Arc::new(Recorder::default());
        let loader = greeter_tests::in_mode(
            Loader::<GreeterPlugin>::builder().dir(dir.path()).services(
                GreeterHostHandle::provided_by(TestHost(Arc::clone(&recorder))),
            ),
            isolate,
        );
        let report: &'static _ = Box::leak(Box::new(loader.load().unwrap()));
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
        // they reach the application: its thread's ticks (one call every
        // 20 ms, one at a time) stop being served. In-process, it logs each
        // refusal, numbered (and goes on logging ticks numbered past 3
        // while the loop runs isolated); isolated, its process ends.
        wait_for("the plugin's thread to call `load tick`", || {
            served(&recorder, "load tick") > 0
        });
        let logged = greeter_tests::captured_logs(PLUGIN_LOGS).len();
        let before = served(&recorder, "load tick");
        plugin.disable("disabled by the test");
        let refused = |n| {
            greeter_tests::captured_logs(PLUGIN_LOGS)[logged..]
                .iter()
                .any(|record| record.message == refused_tick(n))
        };
        // A tick the application was serving as the plugin was disabled
        // still counts; no later one may.
        let no_tick_served_after_disable = || {
            let served = served(&recorder, "load tick");
            assert!(
                served <= before + 1,
                "isolated: {isolate}: {served} ticks served, {before} before the plugin was \
                 disabled: its calls reach the application"
            );
        };
        if isolate {
            assert_eq!(plugin.core().process_id(), None);
            thread::sleep(Duration::from_millis(200));
            no_tick_served_after_disable();
            continue;
        }
        let explain = |what: &str| {
            let logs = greeter_tests::captured_logs(PLUGIN_LOGS);
            format!(
                "{what} (isolated: {isolate}); the plugin logged since: {:?}",
                &logs[logged..]
            )
        };
        wait_for_or(
            || {
                no_tick_served_after_disable();
                refused(1)
            },
            || explain("the plugin's first refused tick"),
        );
        // The refused tick came after every tick served: none is in flight.
        let served_at_refusal = served(&recorder, "load tick");
        wait_for_or(
            || {
                no_tick_served_after_disable();
                refused(2) && refused(3)
            },
            || explain("two more refused ticks"),
        );
        assert_eq!(
            served(&recorder, "load tick"),
            served_at_refusal,
            "isolated: {isolate}"
        );
    }
}

#[test]
fn a_service_the_host_lacks_is_missing_never_a_crash() {
    let dir = PluginDir::new();
    dir.add_compat("compat_newer_minor_greeter");
    // A plugin built against interface 2.2, whose services add a clock,
    // in this host of 2.1, whose services have none.
    let recorder = Arc::new(Recorder::default());
    let report =
        greeter_tests::trusted(Loader::<GreeterPlugin>::builder().dir(dir.path()).services(
            GreeterHostHandle::provided_by(TestHost(Arc::clone(&recorder))),
        ))
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
    let report = greeter_tests::trusted(Loader::<GreeterPlugin>::builder().dir(dir.path()))
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
    for isolate in [false, true] {
        if !greeter_tests::mode_runs_here(isolate) {
            continue;
        }
        let loader = greeter_tests::in_mode(
            Loader::<GreeterPlugin>::builder()
                .dir(dir.path())
                .services(transform_interface::TransformHostHandle::provided_by(Words)),
            isolate,
        );
        let report = loader.load().unwrap();
        let plugin = report.registry.get("services-user").unwrap();
        assert_eq!(
            plugin.greet_to("init").unwrap(),
            "Missing: host service `load` is missing: the host offers no \
             greeter-interface::GreeterHost services",
            "isolated: {isolate}"
        );
    }
}

/// A loader of `dir` whose plugins all run isolated, with the services
/// `recorder` sees.
#[cfg(target_os = "linux")]
/// Loads `dir` isolated, each call bounded by [`DEADLINE`].
fn load_isolated(dir: &PluginDir, recorder: &Arc<Recorder>) -> LoadReport<GreeterPlugin> {
    isolated_loader(dir, recorder)
        .call_timeout(DEADLINE)
        .build_isolated()
        .load()
        .unwrap()
}

fn isolated_loader(
    dir: &PluginDir,
    recorder: &Arc<Recorder>,
) -> dropin_host::LoaderBuilder<GreeterPlugin> {
    dir.probed_loader()
        .services(GreeterHostHandle::provided_by(TestHost(Arc::clone(
            recorder,
        ))))
}

/// The most bytes one service call from an isolated process may carry
/// (SECURITY.md, point 12).
#[cfg(target_os = "linux")]
const MAX_SERVICE_CALL: usize = 16 << 20;

/// The `greet_to` argument that has `services-user` write `bytes` as they
/// are on its services channel.
#[cfg(target_os = "linux")]
fn raw(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("raw:{hex}")
}

/// The `greet_to` argument that has `services-user` send one frame: its
/// length, then `call`.
#[cfg(target_os = "linux")]
fn raw_frame(call: &[u8]) -> String {
    let mut frame = u32::try_from(call.len()).unwrap().to_le_bytes().to_vec();
    frame.extend_from_slice(call);
    raw(&frame)
}

/// A service call as the channel carries it: its kind (`0`, a service),
/// the service's number, then its encoded arguments as bytes (a `u64`
/// length), each text in them a `u64` length and the bytes.
#[cfg(target_os = "linux")]
fn call(service: u32, texts: &[&[u8]]) -> Vec<u8> {
    let mut args = Vec::new();
    for text in texts {
        args.extend_from_slice(&(text.len() as u64).to_le_bytes());
        args.extend_from_slice(text);
    }
    service_call(service, &args)
}

/// A call of service number `service` whose arguments are `args`.
#[cfg(target_os = "linux")]
fn service_call(service: u32, args: &[u8]) -> Vec<u8> {
    let mut call = 0_u32.to_le_bytes().to_vec();
    call.extend_from_slice(&service.to_le_bytes());
    call.extend_from_slice(&(args.len() as u64).to_le_bytes());
    call.extend_from_slice(args);
    call
}

/// The warnings the host logged about isolated processes.
#[cfg(target_os = "linux")]
fn isolation_warnings() -> Vec<String> {
    greeter_tests::captured_logs(ISOLATION_LOGS)
        .into_iter()
        .filter(|record| record.level == log::Level::Warn)
        .map(|record| record.message)
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn an_isolated_plugins_service_call_over_16_mib_is_refused_and_the_host_carries_on() {
    greeter_tests::captured_logs(ISOLATION_LOGS);
    let dir = PluginDir::with(&["services_user", "counter"]);
    let recorder = Arc::new(Recorder::default());
    let report = isolated_loader(&dir, &recorder)
        .build_isolated()
        .load()
        .unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    let plugin = report.registry.get("services-user").unwrap();
    assert_eq!(
        plugin.greet_to("init").unwrap(),
        "Some(\"stored during init\")"
    );
    // A call of `load` carries its kind and the service's number (4 bytes
    // each), the arguments' length and the key's (8 bytes each), and the
    // key: a key of 16 MiB - 24 bytes makes a call of exactly 16 MiB,
    // which is served.
    let largest = "k".repeat(MAX_SERVICE_CALL - 24);
    assert_eq!(plugin.greet_to(&largest).unwrap(), "None");
    assert_eq!(served(&recorder, &format!("load {largest}")), 1);
    // One byte more is refused before it reaches the application: the
    // host reads the length, closes the channel (the plugin's process finds
    // it closed as it writes the rest), and logs why.
    let over = "k".repeat(MAX_SERVICE_CALL - 23);
    assert_eq!(
        plugin.greet_to(&over).unwrap(),
        "Failed: host service `load` failed: the host cannot be reached: Broken pipe (os \
         error 32)"
    );
    assert_eq!(served(&recorder, &format!("load {over}")), 0);
    assert_eq!(
        isolation_warnings(),
        ["an isolated process sent a service call of 16777217 bytes: closed"]
    );
    // That process's later calls fail too, cleanly; the plugin still
    // answers, and the host serves its other plugins.
    assert_eq!(
        plugin.greet_to("init").unwrap(),
        "Failed: host service `load` failed: the host cannot be reached: Broken pipe (os \
         error 32)"
    );
    let counter = report.registry.get("counter").unwrap();
    assert_eq!(counter.greet().unwrap(), "Hello, visitor #1!");
    assert_eq!(counter.greet().unwrap(), "Hello, visitor #2!");
    assert_eq!(served_by(&recorder, "counter", "store visitors"), 2);

    // A process that only claims a call over 16 MiB, and sends none of it,
    // is cut off at once: the host never waits for the bytes.
    let recorder = Arc::new(Recorder::default());
    let report = load_isolated(&dir, &recorder);
    let plugin = report.registry.get("services-user").unwrap();
    assert_eq!(plugin.greet_to(&raw(&[0xff; 4])).unwrap(), "closed");
    assert_eq!(
        isolation_warnings(),
        [
            "an isolated process sent a service call of 16777217 bytes: closed",
            "an isolated process sent a service call of 4294967295 bytes: closed"
        ]
    );
    assert_eq!(
        report.registry.get("counter").unwrap().greet().unwrap(),
        "Hello, visitor #1!"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_malformed_service_call_from_an_isolated_plugin_is_answered_with_an_error() {
    let dir = PluginDir::with(&["services_user"]);
    let recorder = Arc::new(Recorder::default());
    let report = load_isolated(&dir, &recorder);
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    let plugin = report.registry.get("services-user").unwrap();
    // Its thread has made its first calls: from now on it calls `load tick`
    // only, never while the plugin writes raw bytes.
    plugin.greet().unwrap();
    let before = ["store init", "store thread", "load thread", "load init"];
    assert_eq!(served_but_ticks(&recorder), before);
    // Raw bytes that make a well-formed call are served like any call:
    // `load` (service 0) of `nothing` answers `Ok(None)`.
    assert_eq!(
        plugin
            .greet_to(&raw_frame(&call(0, &[b"nothing"])))
            .unwrap(),
        "answer [0, 0]"
    );
    let before = [&before[..], &["load nothing"]].concat();
    assert_eq!(served_but_ticks(&recorder), before);
    let could_not_read = "Failed: the host could not read the call: malformed message: ";
    for (what, frame, answer) in [
        ("an empty call", vec![], "expected 4 more bytes, found 0"),
        ("half a kind", vec![0, 0], "expected 4 more bytes, found 2"),
        (
            "a kind the host lacks",
            vec![3, 0, 0, 0],
            "Back has no variant 3",
        ),
        (
            "half a service number",
            vec![0, 0, 0, 0, 0, 0],
            "expected 4 more bytes, found 2",
        ),
        (
            "arguments longer than the call",
            [
                &0_u32.to_le_bytes()[..],
                &0_u32.to_le_bytes(),
                &1000_u64.to_le_bytes(),
            ]
            .concat(),
            "a length of 1000, more than the 0 bytes left can hold",
        ),
        (
            "a service the host lacks",
            call(2, &[b"nothing"]),
            "the services have no service number 2",
        ),
        (
            "the last service number",
            call(u32::MAX, &[]),
            "the services have no service number 4294967295",
        ),
        (
            "`load` without its key",
            call(0, &[]),
            "expected 8 more bytes, found 0",
        ),
        (
            "a key longer than the call",
            service_call(0, &[&1000_u64.to_le_bytes()[..], b"abc"].concat()),
            "a length of 1000, more than the 3 bytes left can hold",
        ),
        (
            "a key of 2^64 - 1 bytes",
            service_call(0, &[&u64::MAX.to_le_bytes()[..], b"abc"].concat()),
            "a length of 18446744073709551615, more than the 3 bytes left can hold",
        ),
        (
            "a key that is not UTF-8",
            call(0, &[b"\xff"]),
            "not UTF-8: invalid utf-8 sequence of 1 bytes from index 0",
        ),
        (
            "bytes after the key",
            service_call(0, &[&7_u64.to_le_bytes()[..], b"nothing!!"].concat()),
            "2 bytes after the arguments",
        ),
        (
            "`store` without its value",
            call(1, &[b"key"]),
            "expected 8 more bytes, found 0",
        ),
    ] {
        assert_eq!(
            plugin.greet_to(&raw_frame(&frame)).unwrap(),
            format!("{could_not_read}{answer}"),
            "{what}"
        );
    }
    // None reached the application, the channel still carries calls in
    // step, and the plugin is not disabled.
    assert_eq!(served_but_ticks(&recorder), before);
    assert_eq!(
        plugin.greet_to("init").unwrap(),
        "Some(\"stored during init\")"
    );
    assert_eq!(
        plugin
            .greet_to(&raw_frame(&call(1, &[b"key", b"value"])))
            .unwrap(),
        "answer [0]"
    );
    assert_eq!(plugin.greet_to("key").unwrap(), "Some(\"value\")");
    let ticks = served(&recorder, "load tick");
    wait_for("the plugin's thread to call `load tick` again", || {
        served(&recorder, "load tick") > ticks
    });
}

/// The store file `greeter-host --store` wrote, as JSON.
fn store_file(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn greeter_host_keeps_each_plugins_store_apart_and_bounds_it() {
    let dir = PluginDir::with(&["counter", "services_user"]);
    let store = dir.path().join("store.json");
    let store_arg = store.to_str().unwrap();
    // `services-user` greets with what it loads under the key it is given,
    // or stores with `store:KEY=VALUE`.
    let greet = |plugin: &str, to: Option<&str>, isolate: bool| {
        let mut args = vec!["--store", store_arg];
        if isolate {
            args.push("--isolate");
        }
        args.extend(["greet", plugin]);
        if let Some(to) = to {
            args.extend(["--to", to]);
        }
        let output = dir.run(&args);
        (
            output.status.code(),
            greeter_tests::stdout(&output),
            greeter_tests::stderr(&output),
        )
    };
    let services_user = |to: &str, isolate: bool| {
        let (status, stdout, stderr) = greet("services-user", Some(to), isolate);
        assert_eq!((status, stderr.as_str()), (Some(0), ""), "--to {to}");
        stdout
    };
    let counter = || {
        let (status, stdout, stderr) = greet("counter", None, false);
        assert_eq!((status, stderr.as_str()), (Some(0), ""));
        stdout
    };
    assert_eq!(counter(), "counter: Hello, visitor #1!\n");
    // Each plugin has keys of its own: `services-user` neither sees nor
    // changes `counter`'s, in-process or isolated.
    for isolate in [false, true] {
        assert_eq!(services_user("visitors", isolate), "services-user: None\n");
    }
    assert_eq!(
        services_user("store:visitors=999", true),
        "services-user: ()\n"
    );
    assert_eq!(
        services_user("visitors", false),
        "services-user: Some(\"999\")\n"
    );
    assert_eq!(counter(), "counter: Hello, visitor #2!\n");
    let kept = store_file(&store);
    assert_eq!(kept["counter"], serde_json::json!({ "visitors": "2" }));
    assert_eq!(kept["services-user"]["visitors"], "999");

    // Keys of at most 256 bytes and values of at most 64 KiB, in-process
    // or isolated; a refusal keeps nothing.
    let refused = |key: usize, value: usize| {
        format!(
            "services-user: Failed: host service `store` failed: expected a key of at most 256 \
             bytes and a value of at most 65536, found {key} and {value}\n"
        )
    };
    for isolate in [false, true] {
        let (key, value) = ("k".repeat(256), "v".repeat(64 * 1024));
        assert_eq!(
            services_user(&format!("store:{key}=v"), isolate),
            "services-user: ()\n"
        );
        assert_eq!(
            services_user(&format!("store:big={value}"), isolate),
            "services-user: ()\n"
        );
        assert_eq!(
            services_user(&format!("store:{key}k=v"), isolate),
            refused(257, 1)
        );
        assert_eq!(
            services_user(&format!("store:bigger={value}v"), isolate),
            refused(6, 65537)
        );
        let kept = store_file(&store);
        let kept = kept["services-user"].as_object().unwrap();
        assert_eq!(kept[&key], "v");
        assert_eq!(kept["big"], value.as_str());
        assert!(!kept.contains_key(&format!("{key}k")));
        assert!(!kept.contains_key("bigger"));
    }

    // At most 1024 keys a plugin: a new key beyond is refused, a kept one
    // may change; another plugin's keys do not count.
    let mut full = serde_json::Map::new();
    full.insert("init".to_owned(), "stored during init".into());
    full.insert("thread".to_owned(), "stored from a thread".into());
    for n in 0..1022 {
        full.insert(format!("key {n}"), "kept".into());
    }
    std::fs::write(
        &store,
        serde_json::to_vec(&serde_json::json!({ "services-user": full })).unwrap(),
    )
    .unwrap();
    for isolate in [false, true] {
        assert_eq!(
            services_user("store:one more=value", isolate),
            "services-user: Failed: host service `store` failed: expected at most 1024 keys \
             per plugin\n"
        );
    }
    assert_eq!(
        services_user("store:key 7=changed", false),
        "services-user: ()\n"
    );
    assert_eq!(counter(), "counter: Hello, visitor #1!\n");
    let kept = store_file(&store);
    full.insert("key 7".to_owned(), "changed".into());
    assert_eq!(kept["services-user"], serde_json::Value::Object(full));
    assert_eq!(kept["counter"], serde_json::json!({ "visitors": "1" }));
}

/// A panic in the application's service is caught and logged with where it
/// happened, and never reaches the process's panic hook (the default one
/// would print it and a note on backtraces to standard error); a panic
/// anywhere else still does.
#[test]
fn a_panicking_service_is_logged_with_its_location_not_printed_by_the_panic_hook() {
    greeter_tests::captured_logs("dropin::services");
    let hooked = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&hooked);
    std::panic::set_hook(Box::new(move |info| {
        seen.lock().unwrap().push(info.to_string());
    }));
    let dir = PluginDir::with(&["services_user"]);
    let recorder = Arc::new(Recorder::default());
    let report = greeter_tests::in_mode(
        Loader::<GreeterPlugin>::builder()
            .dir(dir.path())
            .services(GreeterHostHandle::provided_by(TestHost(recorder))),
        false,
    )
    .load()
    .unwrap();
    let plugin = report.registry.get("services-user").unwrap();
    assert_eq!(
        plugin.greet_to("panic").unwrap(),
        "Panicked: host service `load` panicked: the host's store exploded"
    );
    assert_eq!(*hooked.lock().unwrap(), Vec::<String>::new());
    let logged: Vec<String> = greeter_tests::captured_logs("dropin::services")
        .into_iter()
        .map(|record| record.message)
        .collect();
    assert!(
        logged.iter().any(|message| message
            .starts_with("the host's service panicked at tests/tests/it/services.rs:")
            && message
                .ends_with(" while serving plugin 'services-user': the host's store exploded")),
        "{logged:?}"
    );
    // Elsewhere, the hook sees panics as before.
    assert!(std::panic::catch_unwind(|| panic!("not in a service")).is_err());
    assert_eq!(hooked.lock().unwrap().len(), 1);
}
