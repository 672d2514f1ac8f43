//! The example store interface (`examples/store/`): a method's error is a
//! value of the interface, which the application matches on, apart from
//! the framework's own failures, the same in the application's process and
//! isolated.

use std::process::Command;

use dropin::CallErrorKind;
use dropin_host::{Loader, probe::Probe};
use greeter_tests::{PluginDir, artifacts, mode_runs_here, stderr, stdout, trusted};
use store_interface::{StoreError, StorePlugin, Visitor, Watcher};

/// The store's loader for one half of a test: isolated, the example
/// application serves as the plugins' process.
fn loader(dir: &PluginDir, config: Option<&str>, isolated: bool) -> Loader<StorePlugin> {
    let mut builder = Loader::<StorePlugin>::builder().dir(dir.path());
    if let Some(config) = config {
        builder = builder.config("memory", config);
    }
    if isolated {
        builder
            .probe(Probe::command(artifacts().binary("store-app")))
            .build_isolated()
    } else {
        trusted(builder)
    }
}

#[test]
fn a_typed_error_reaches_the_application_as_the_value_the_plugin_returned() {
    let dir = PluginDir::with(&["memory"]);
    for isolated in [false, true] {
        if !mode_runs_here(isolated) {
            continue;
        }
        let report = loader(&dir, None, isolated).load().unwrap();
        assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        let store = report.registry.get("memory").unwrap();
        assert_eq!(store.is_isolated(), isolated);
        assert_eq!(store.put("a", "1").unwrap(), Ok(None));
        assert_eq!(store.put("a", "2").unwrap(), Ok(Some("1".into())));
        assert_eq!(store.get("a").unwrap(), Ok("2".into()));
        // The plugin's error, as the value it returned: no framework
        // failure, and the plugin stays usable.
        assert_eq!(
            store.get("b").unwrap(),
            Err(StoreError::NotFound {
                key: "b".to_owned()
            }),
            "isolated: {isolated}"
        );
        assert_eq!(store.failure(), None);
        assert_eq!(store.get("a").unwrap(), Ok("2".into()));
        // A map crosses as a value.
        assert_eq!(
            store.entries(None).unwrap(),
            std::collections::BTreeMap::from([("a".into(), "2".into())])
        );
        // Its keys come back as Text, looked up by &str.
        assert_eq!(store.entries(None).unwrap()["a"], "2");
        assert_eq!(store.entries(Some("b")).unwrap(), Default::default());
        // A slice of values crosses as its items.
        let entries = [("x", "1"), ("y", "2")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(store.put_all(&entries).unwrap(), Ok(2));
        assert_eq!(store.get("y").unwrap(), Ok("2".into()));
        assert_eq!(store.put_all(&[]).unwrap(), Ok(0));

        let report = loader(&dir, Some("read-only"), isolated).load().unwrap();
        let store = report.registry.get("memory").unwrap();
        assert_eq!(store.put("a", "1").unwrap(), Err(StoreError::ReadOnly));
        // The framework's own failures stay apart: a disabled plugin is a
        // `CallError`, never a `StoreError`.
        store.disable("disabled by the test");
        assert_eq!(
            store.get("a").unwrap_err().kind(),
            CallErrorKind::Disabled,
            "isolated: {isolated}"
        );
    }
}

#[test]
fn the_store_application_matches_each_error_the_same_in_both_modes() {
    let dir = PluginDir::with(&["memory"]);
    let run = |args: &[&str]| {
        Command::new(artifacts().binary("store-app"))
            .arg("--plugins-dir")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    for mode in [&[][..], &["--isolate"][..]] {
        if !mode_runs_here(!mode.is_empty()) {
            continue;
        }
        let requests = [
            "put:greeting=hello",
            "put:greeting=hi",
            "get:greeting",
            "get:missing",
            "put:farewell=bye",
            "list",
            "list:fare",
            "put:t/a=1",
            "table:t:a",
            "table:x/y:a",
            "put:t/b=2",
            "rows:t",
        ];
        let output = run(&[mode, &requests[..]].concat());
        assert_eq!(
            stdout(&output),
            "memory: put:greeting=hello: stored\n\
             memory: put:greeting=hi: stored, replacing hello\n\
             memory: get:greeting: hi\n\
             memory: get:missing: nothing stored under missing\n\
             memory: put:farewell=bye: stored\n\
             memory: list: 2 entries: farewell=bye, greeting=hi\n\
             memory: list:fare: 1 entry: farewell=bye\n\
             memory: put:t/a=1: stored\n\
             memory: table:t:a: Some(\"1\") (1 read)\n\
             memory: table:x/y:a: no table \"x/y\"\n\
             memory: put:t/b=2: stored\n\
             memory: rows:t: a=1, b=2\n",
            "{mode:?}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), "");
        assert_eq!(output.status.code(), Some(0));

        let output = run(&[mode, &["--config", "memory=read-only", "put:a=b", "get:a"]].concat());
        assert_eq!(
            stdout(&output),
            "memory: put:a=b: refused: the store is read-only\n\
             memory: get:a: nothing stored under a\n",
            "{mode:?}: {}",
            stderr(&output)
        );
        assert_eq!(output.status.code(), Some(0));
    }
}

/// A typed error is part of the signature: a store built against a
/// `StoreError` that gained a variant in place is refused before anything
/// of it runs, naming the method and the difference, in both modes.
#[test]
fn a_store_built_with_another_error_type_is_refused_naming_the_difference() {
    let dir = PluginDir::new();
    let full = dir.add_compat("compat_changed_type_store");
    refused_alone_in_both_modes(
        &dir,
        &format!(
            "{}: not compatible with store 1.1.0 (the plugin was built against 1.0.0): \
                 method `get`: result: StoreError: expected 2 variants, found 3",
            full.display()
        ),
    );
}

/// Loads `dir`, whose one plugin is refused, in both modes: the refusal
/// reads `expected`, and nothing loads.
fn refused_alone_in_both_modes(dir: &PluginDir, expected: &str) {
    for isolated in [false, true] {
        if !mode_runs_here(isolated) {
            continue;
        }
        let report = loader(dir, None, isolated).load().unwrap();
        assert!(report.registry.is_empty(), "isolated: {isolated}");
        let [error] = &report.rejected[..] else {
            panic!("isolated: {isolated}: {:?}", report.rejected);
        };
        assert_eq!(error.to_string(), expected, "isolated: {isolated}");
    }
}

/// An object a plugin returns: the application calls it through its handle,
/// the object keeps its own state between calls, and dropping the handle
/// drops the object in the plugin's code (its `Drop` logs), the same in the
/// application's process and isolated. Two objects of one plugin are apart.
#[test]
fn an_object_is_created_called_and_dropped_in_the_plugin_in_both_modes() {
    let dir = PluginDir::with(&["memory"]);
    for isolated in [false, true] {
        if !mode_runs_here(isolated) {
            continue;
        }
        let before = closed().len();
        let report = loader(&dir, None, isolated).load().unwrap();
        let store = report.registry.get("memory").unwrap();
        store.put("t/a", "1").unwrap().unwrap();
        let table = store.open("t").unwrap().unwrap();
        let other = store.open("u").unwrap().unwrap();
        assert_eq!(table.get("a").unwrap(), Some("1".into()));
        assert_eq!(table.get("b").unwrap(), None);
        assert_eq!(table.reads().unwrap(), 2, "isolated: {isolated}");
        assert_eq!(other.reads().unwrap(), 0);
        // The store's own error, as for any method.
        assert_eq!(
            store.open("x/y").unwrap().unwrap_err(),
            StoreError::NotFound {
                key: "x/y".to_owned()
            }
        );
        assert_eq!(closed()[before..], [] as [String; 0]);
        drop(table);
        let closing = ["table t closed after 2 reads".to_owned()];
        assert_eq!(wait_for_closed(before, 1), closing, "isolated: {isolated}");
        drop(other);
        assert_eq!(
            wait_for_closed(before, 2),
            [
                closing[0].clone(),
                "table u closed after 0 reads".to_owned()
            ],
            "isolated: {isolated}"
        );
        // An object an object returned: rows produced one by one, consumed
        // in part, dropped (in the plugin) before its table.
        store.put("t/b", "2").unwrap().unwrap();
        let table = store.open("t").unwrap().unwrap();
        let rows = table.rows().unwrap();
        assert_eq!(rows.next().unwrap(), Some(("a".into(), "1".into())));
        drop(rows);
        assert_eq!(
            wait_for_closed(before, 3)[2..],
            ["rows of table t closed after 1".to_owned()],
            "isolated: {isolated}"
        );
        drop(table);
    }
}

/// The tables the plugin logged as closed so far, in order.
fn closed() -> Vec<String> {
    greeter_tests::captured_logs("plugin::memory")
        .into_iter()
        .map(|record| record.message)
        .filter(|message| message.starts_with("table ") || message.starts_with("rows "))
        .collect()
}

/// The tables closed since `before`, once there are `count` (an isolated
/// plugin's records arrive from its process a moment later), or after 10 s.
fn wait_for_closed(before: usize, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let closed = closed()[before..].to_vec();
        if closed.len() >= count || std::time::Instant::now() > deadline {
            return closed;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A panic in an object's method, or in its drop, is contained like one in
/// a plugin's method: the call fails as `Panicked`, and the plugin is
/// disabled, its objects with it, in both modes.
#[test]
fn a_panicking_object_disables_its_plugin_and_its_other_objects() {
    let dir = PluginDir::with(&["memory"]);
    for isolated in [false, true] {
        if !mode_runs_here(isolated) {
            continue;
        }
        let report = loader(&dir, None, isolated).load().unwrap();
        let store = report.registry.get("memory").unwrap();
        let table = store.open("t").unwrap().unwrap();
        let other = store.open("u").unwrap().unwrap();
        let error = table.get("panic").unwrap_err();
        assert_eq!(
            error.kind(),
            CallErrorKind::Panicked,
            "isolated: {isolated}"
        );
        assert_eq!(
            error.to_string(),
            "plugin 'memory' panicked at examples/store/memory/src/lib.rs:163:9: table t cannot \
             read `panic`"
        );
        assert_eq!(other.reads().unwrap_err().kind(), CallErrorKind::Disabled);
        assert_eq!(store.get("a").unwrap_err().kind(), CallErrorKind::Disabled);

        let report = loader(&dir, None, isolated).load().unwrap();
        let store = report.registry.get("memory").unwrap();
        drop(store.open("breaks").unwrap().unwrap());
        assert_eq!(
            store.failure(),
            Some("panicked: table breaks as it closes"),
            "isolated: {isolated}"
        );
        assert_eq!(store.get("a").unwrap_err().kind(), CallErrorKind::Disabled);
    }
}

/// The application's visitor: records what it is shown; stops after
/// `limit` entries; panics at `panic_at`.
struct Recorder {
    seen: std::sync::Mutex<Vec<String>>,
    limit: usize,
    panic_at: Option<&'static str>,
}

impl Recorder {
    fn new(limit: usize, panic_at: Option<&'static str>) -> Self {
        Self {
            seen: std::sync::Mutex::default(),
            limit,
            panic_at,
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Visitor for Recorder {
    fn entry(&self, key: &str, value: &str) -> bool {
        assert!(Some(key) != self.panic_at, "the recorder refuses {key}");
        let mut seen = self.seen.lock().unwrap();
        seen.push(format!("{key}={value}"));
        seen.len() < self.limit
    }
}

/// The application's watcher: sends each change, records its drop, and
/// panics if told of `panic_at`.
struct Told {
    changes: std::sync::Mutex<std::sync::mpsc::Sender<String>>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicBool>,
    panics: bool,
    /// The thread it was told on.
    threads: std::sync::Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>,
}

impl Watcher for Told {
    fn changed(&self, key: &str, value: &str) {
        self.threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        assert!(!self.panics, "this watcher refuses {key}");
        let _ = self.changes.lock().unwrap().send(format!("{key}={value}"));
    }
}

impl Drop for Told {
    fn drop(&mut self) {
        self.dropped
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A watcher given to an isolated store goes with the process that kept it:
/// when that process ends (killed here, as the kernel's out-of-memory killer
/// would), the application's object is dropped, whether the store then
/// stays failed or restarts (in a process that never had it); one given to
/// the restarted process stays, and is told of changes.
#[test]
fn objects_given_to_an_isolated_plugin_go_when_its_process_ends() {
    use std::sync::{Arc, Mutex, atomic::AtomicBool, atomic::Ordering::SeqCst, mpsc};
    if !mode_runs_here(true) {
        return;
    }
    let dir = PluginDir::with(&["memory"]);
    for restarts in [0, 1] {
        let mut builder = Loader::<StorePlugin>::builder()
            .dir(dir.path())
            .probe(Probe::command(artifacts().binary("store-app")));
        if restarts > 0 {
            builder = builder.isolation_recovery(dropin_host::isolation::Recovery::Restart {
                attempts: restarts,
                backoff: std::time::Duration::ZERO,
            });
        }
        let report = builder.build_isolated().load().unwrap();
        let store = report.registry.get("memory").unwrap();
        let dropped = Arc::new(AtomicBool::new(false));
        let (send, _changes) = mpsc::channel();
        store
            .watch(Box::new(Told {
                changes: Mutex::new(send),
                dropped: Arc::clone(&dropped),
                panics: false,
                threads: Arc::default(),
            }))
            .unwrap();
        assert!(!dropped.load(SeqCst));
        greeter_tests::kill(store.core().process_id().expect("running"));
        // The plugin's process ends shortly after the host's child: the
        // first call that finds it gone.
        let started = std::time::Instant::now();
        let error = loop {
            match store.get("a") {
                Err(error) => break error,
                Ok(_) => {
                    assert!(started.elapsed() < greeter_tests::HANG, "still answering");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        };
        assert_eq!(error.kind(), CallErrorKind::Crashed, "{error}");
        assert!(dropped.load(SeqCst), "restarts: {restarts}");
        if restarts > 0 {
            // One given to the new process stays, and is told.
            let kept = Arc::new(AtomicBool::new(false));
            let (send, changes) = mpsc::channel();
            store
                .watch(Box::new(Told {
                    changes: Mutex::new(send),
                    dropped: Arc::clone(&kept),
                    panics: false,
                    threads: Arc::default(),
                }))
                .unwrap();
            store.put("a", "1").unwrap().unwrap();
            assert_eq!(store.get("a").unwrap(), Ok("1".into()));
            assert_eq!(
                changes.recv_timeout(greeter_tests::HANG).unwrap(),
                "a=1".to_owned()
            );
            assert!(!kept.load(SeqCst));
        }
    }
}

/// Callbacks, the application's objects passed to a plugin, in both modes:
/// one lent for a call, called during it; one given to the plugin, called
/// later from the plugin's own thread, and dropped (in the application)
/// when the plugin drops it. A panic in the application's callback fails
/// the plugin's call, and the plugin, which did nothing wrong, stays
/// enabled; one from the plugin's thread is caught there
/// (`dropin::try_callback`), and the plugin goes on to its other watcher.
#[test]
fn a_callback_is_called_during_the_call_and_later_from_a_plugin_thread_in_both_modes() {
    use std::sync::{Arc, Mutex, atomic::AtomicBool, atomic::Ordering::SeqCst, mpsc};
    let dir = PluginDir::with(&["memory"]);
    for isolated in [false, true] {
        if !mode_runs_here(isolated) {
            continue;
        }
        let report = loader(&dir, None, isolated).load().unwrap();
        let store = report.registry.get("memory").unwrap();
        for (key, value) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")] {
            store.put(key, value).unwrap().unwrap();
        }
        // Lent for the call, called during it, in key order; it stops the
        // scan by returning `false`.
        let recorder = Recorder::new(usize::MAX, None);
        assert_eq!(
            store.scan("", &recorder).unwrap(),
            4,
            "isolated: {isolated}"
        );
        assert_eq!(recorder.seen(), ["a=1", "b=2", "c=3", "d=4"]);
        let recorder = Recorder::new(2, None);
        assert_eq!(store.scan("", &recorder).unwrap(), 2);
        assert_eq!(recorder.seen(), ["a=1", "b=2"]);

        // A panic in the application's callback: the call fails, naming
        // the callback; the plugin stays enabled.
        let recorder = Recorder::new(usize::MAX, Some("b"));
        let error = store.scan("", &recorder).unwrap_err();
        assert_eq!(error.kind(), CallErrorKind::Failed, "isolated: {isolated}");
        assert_eq!(
            error.to_string(),
            "plugin 'memory' failed: the application's callback `Visitor::entry` panicked: \
             the recorder refuses b"
        );
        assert_eq!(recorder.seen(), ["a=1"]);
        assert_eq!(store.failure(), None);
        assert_eq!(store.get("a").unwrap(), Ok("1".into()));

        // Given to the plugin: called later, from the plugin's thread (a
        // thread of the application's when isolated: the one that serves
        // the plugin's process), never the caller's.
        let threads = Arc::new(Mutex::new(Vec::new()));
        let (send, changes) = mpsc::channel();
        let panicking_dropped = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicBool::new(false));
        store
            .watch(Box::new(Told {
                changes: Mutex::new(send.clone()),
                dropped: Arc::clone(&panicking_dropped),
                panics: true,
                threads: Arc::clone(&threads),
            }))
            .unwrap();
        store
            .watch(Box::new(Told {
                changes: Mutex::new(send),
                dropped: Arc::clone(&dropped),
                panics: false,
                threads: Arc::clone(&threads),
            }))
            .unwrap();
        store.put("e", "5").unwrap().unwrap();
        let told = changes.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(told, Ok("e=5".into()), "isolated: {isolated}");
        let threads = threads.lock().unwrap().clone();
        assert_eq!(threads.len(), 2);
        assert!(!threads.contains(&std::thread::current().id()));
        assert_eq!(store.failure(), None);
        assert!(!dropped.load(SeqCst));
        // The plugin drops them: the application's drop runs, before the
        // call that dropped them returns.
        assert_eq!(store.unwatch().unwrap(), 2);
        assert!(dropped.load(SeqCst), "isolated: {isolated}");
        assert!(panicking_dropped.load(SeqCst));
        store.put("f", "6").unwrap().unwrap();
        assert_eq!(
            changes.recv_timeout(std::time::Duration::from_millis(200)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }
}

/// The store application gives the same answers to callbacks', `async
/// fn`s' and streams' requests in both modes.
#[test]
fn the_store_application_passes_callbacks_the_same_in_both_modes() {
    let dir = PluginDir::with(&["memory"]);
    for mode in [&[][..], &["--isolate"][..]] {
        if !mode_runs_here(!mode.is_empty()) {
            continue;
        }
        let requests = [
            "put:a=1",
            "put:b=2",
            "put:c=3",
            "scan:",
            "scan::2",
            "scan:b",
            "scan-panic:",
            "watch",
            "put:d=4",
            "unwatch",
            "get:d",
            "fetch:b",
            "fetch:z",
            "follow:b:1",
            "follow::4",
        ];
        let output = Command::new(artifacts().binary("store-app"))
            .arg("--plugins-dir")
            .arg(dir.path())
            .args(mode)
            .args(requests)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        assert_eq!(
            stdout(&output),
            "memory: put:a=1: stored\n\
             memory: put:b=2: stored\n\
             memory: put:c=3: stored\n\
             memory: scan:: visited 3: a=1, b=2, c=3\n\
             memory: scan::2: visited 2: a=1, b=2\n\
             memory: scan:b: visited 1: b=2\n\
             memory: scan-panic:: Failed: the application's callback `Visitor::entry` \
             panicked: the visitor refuses a\n\
             memory: watch: watching\n\
             memory: put:d=4: stored; watcher told d=4\n\
             memory: unwatch: dropped 1 watcher(s); ours dropped: true\n\
             memory: get:d: 4\n\
             memory: fetch:b: 2\n\
             memory: fetch:z: nothing stored under z\n\
             memory: follow:b:1: b=2\n\
             memory: follow::4: a=1, b=2, c=3, d=4\n",
            "{mode:?}: {}",
            stderr(&output)
        );
        assert_eq!(output.status.code(), Some(0));
    }
}

/// The store's log records about cancelled waits, in order.
fn cancelled() -> Vec<String> {
    greeter_tests::captured_logs("plugin::memory")
        .into_iter()
        .map(|record| record.message)
        .filter(|message| message.starts_with("wait for "))
        .collect()
}

/// The number of threads of this process.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `async fn` methods, awaited on tokio, in both modes: one ready at once;
/// one that a later call wakes from another task; one dropped before it
/// finished, which the plugin observes as cancelled (its future dropped,
/// in the plugin's code); and, isolated, 100 calls in flight to one
/// plugin at once, which hold no thread of the host each.
#[test]
fn an_async_method_is_awaited_cancelled_and_called_100_times_at_once_in_both_modes() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let dir = PluginDir::with(&["memory"]);
    // The logger, before the plugins that log to it.
    cancelled();
    for isolated in [false, true] {
        if !mode_runs_here(isolated) {
            continue;
        }
        let report = loader(&dir, None, isolated).load().unwrap();
        // Shared with the runtime's tasks for the rest of the test.
        let registry = Box::leak(Box::new(report.registry));
        let store: &'static _ = registry.get("memory").unwrap();
        runtime.block_on(async {
            store.put("a", "1").unwrap().unwrap();
            assert_eq!(store.fetch("a").await.unwrap(), Ok("1".into()));
            assert_eq!(
                store.fetch("b").await.unwrap(),
                Err(StoreError::NotFound {
                    key: "b".to_owned()
                }),
                "isolated: {isolated}"
            );

            // Woken by a `put` from another task.
            let waiting =
                tokio::spawn(async move { store.wait_for("later").await.unwrap().to_string() });
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            assert!(!waiting.is_finished());
            store.put("later", "now").unwrap().unwrap();
            let woken = tokio::time::timeout(std::time::Duration::from_secs(10), waiting).await;
            assert_eq!(woken.unwrap().unwrap(), "now", "isolated: {isolated}");

            // Dropped before it finished: the plugin's future is dropped.
            let before = cancelled().len();
            let timed_out = tokio::time::timeout(
                std::time::Duration::from_millis(50),
                store.wait_for("never"),
            )
            .await;
            assert!(timed_out.is_err());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while cancelled().len() == before && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert_eq!(
                cancelled()[before..],
                ["wait for never cancelled".to_owned()],
                "isolated: {isolated}"
            );
            assert_eq!(store.failure(), None);

            // 100 calls in flight at once, then all woken.
            let threads_before = threads();
            let calls: Vec<_> = (0..100)
                .map(|i| tokio::spawn(async move { store.wait_for(&format!("k{i}")).await }))
                .collect();
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            assert!(calls.iter().all(|call| !call.is_finished()));
            if isolated {
                // The host waits for all of them with the threads it had.
                assert!(threads() <= threads_before + 2, "{} threads", threads());
            }
            let entries: Vec<(String, String)> =
                (0..100).map(|i| (format!("k{i}"), i.to_string())).collect();
            assert_eq!(store.put_all(&entries).unwrap(), Ok(100));
            for (i, call) in calls.into_iter().enumerate() {
                let answer = tokio::time::timeout(std::time::Duration::from_secs(10), call).await;
                assert_eq!(answer.unwrap().unwrap().unwrap(), i.to_string());
            }
        });
    }
}

/// An object trait evolves like an interface: a store built with
/// store-interface 1.0 (its tables lack `Table::count`, added in 1.1) and one
/// built with 1.2 (its tables have `Table::first`, which this host does not
/// know) both load; the older one's tables answer every call but `count`,
/// which fails as missing, in both modes.
#[test]
fn an_object_trait_evolves_by_minor_versions_like_an_interface() {
    let dir = PluginDir::new();
    dir.add_compat("compat_older_minor_store");
    dir.add_compat("compat_newer_minor_store");
    for isolated in [false, true] {
        if !mode_runs_here(isolated) {
            continue;
        }
        let report = loader(&dir, None, isolated).load().unwrap();
        assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        for name in ["old-store", "new-store"] {
            let store = report.registry.get(name).unwrap();
            store.put("t/a", "1").unwrap().unwrap();
            store.put("t/b", "2").unwrap().unwrap();
            let table = store.open("t").unwrap().unwrap();
            assert_eq!(table.get("a").unwrap(), Some("1".into()));
            let rows = table.rows().unwrap();
            assert_eq!(rows.next().unwrap(), Some(("a".into(), "1".into())));
            let count = table.count();
            if name == "new-store" {
                assert_eq!(count.unwrap(), 2, "isolated: {isolated}");
            } else {
                let error = count.unwrap_err();
                assert_eq!(error.kind(), CallErrorKind::Missing, "isolated: {isolated}");
                assert_eq!(
                    error.to_string(),
                    "plugin 'old-store' has no method `Table::count`: it was added in interface \
                     1.1.0, the plugin was built against 1.0.1"
                );
                assert_eq!(
                    error.missing_method(),
                    Some(("Table::count", "1.1.0", "1.0.1"))
                );
                // Not a failure of the plugin's: it goes on.
                assert_eq!(table.get("b").unwrap(), Some("2".into()));
                assert_eq!(store.failure(), None);
            }
        }
    }
}

/// The store's log records about closed feeds, in order.
fn feeds_closed() -> Vec<String> {
    greeter_tests::captured_logs("plugin::memory")
        .into_iter()
        .map(|record| record.message)
        .filter(|message| message.starts_with("feed "))
        .collect()
}

/// An async stream: an object whose `async fn next` the plugin answers as
/// entries come, awaited on tokio, consumed in part and dropped (in the
/// plugin), the same in both modes; an older store lacks it.
#[test]
fn an_async_stream_is_consumed_in_part_and_dropped_in_both_modes() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let dir = PluginDir::with(&["memory"]);
    dir.add_compat("compat_older_minor_store");
    // The logger, before the plugins that log to it.
    feeds_closed();
    for isolated in [false, true] {
        if !mode_runs_here(isolated) {
            continue;
        }
        let report = loader(&dir, None, isolated).load().unwrap();
        assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        let registry = Box::leak(Box::new(report.registry));
        let store: &'static _ = registry.get("memory").unwrap();
        let before = feeds_closed().len();
        runtime.block_on(async {
            store.put("f/a", "1").unwrap().unwrap();
            store.put("g/x", "0").unwrap().unwrap();
            store.put("f/b", "2").unwrap().unwrap();
            let feed = store.follow("f/").unwrap();
            let pair = |k: &str, v: &str| Some((k.into(), v.into()));
            assert_eq!(
                feed.next().await.unwrap(),
                pair("f/a", "1"),
                "isolated: {isolated}"
            );
            assert_eq!(feed.next().await.unwrap(), pair("f/b", "2"));
            // The next one comes when it is stored.
            let next = feed.next();
            let put = async {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                store.put("f/c", "3").unwrap().unwrap();
            };
            let (next, ()) = tokio::join!(next, put);
            assert_eq!(next.unwrap(), pair("f/c", "3"));
            drop(feed);
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while feeds_closed().len() == before && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            feeds_closed()[before..],
            ["feed f/ closed after 3".to_owned()],
            "isolated: {isolated}"
        );
        // A store built with 1.0 has no `follow`.
        let old = registry.get("old-store").unwrap();
        assert_eq!(old.follow("f/").unwrap_err().kind(), CallErrorKind::Missing);
    }
}

/// An object trait is part of the signature of the methods that return it:
/// a store built against a `Table` whose `get` changed its result in place
/// is refused before anything of it runs, naming the method and the
/// object's method, in both modes.
#[test]
fn a_store_built_with_a_changed_object_trait_is_refused_naming_the_method() {
    let dir = PluginDir::new();
    let changed = dir.add_compat("compat_changed_object_store");
    refused_alone_in_both_modes(
        &dir,
        &format!(
            "{}: not compatible with store 1.1.0 (the plugin was built against 1.1.1): method \
                 `open`: result: Box<dyn Table>::get: field `->`: expected String, found Vec<u8>",
            changed.display()
        ),
    );
}

/// The application's async stream, lent to the store: yields `items`, then
/// none; or, with `stuck`, never yields at all.
struct Items {
    items: std::sync::Mutex<Vec<(String, String)>>,
    stuck: bool,
}

#[store_interface::object]
impl store_interface::Feed for Items {
    async fn next(&self) -> Option<(String, String)> {
        if self.stuck {
            std::future::pending::<()>().await;
        }
        let mut items = self.items.lock().unwrap();
        (!items.is_empty()).then(|| items.remove(0))
    }
}

/// An application's object with an `async fn`, lent to a plugin, which
/// awaits it on a thread of its own, in both modes. Isolated, one that
/// never answers does not hold the application past the call's timeout:
/// releasing it gives up the application's future.
#[test]
fn an_applications_async_stream_lent_to_a_plugin_is_awaited_and_given_up_at_the_timeout() {
    let dir = PluginDir::with(&["memory"]);
    for isolated in [false, true] {
        if !mode_runs_here(isolated) {
            continue;
        }
        let report = loader(&dir, None, isolated).load().unwrap();
        let store = report.registry.get("memory").unwrap();
        let source = Items {
            items: std::sync::Mutex::new(vec![
                ("i/a".to_owned(), "1".to_owned()),
                ("i/b".to_owned(), "2".to_owned()),
            ]),
            stuck: false,
        };
        assert_eq!(store.import(&source).unwrap(), 2, "isolated: {isolated}");
        assert_eq!(store.get("i/b").unwrap(), Ok("2".into()));
    }
    if !mode_runs_here(true) {
        return;
    }
    let report = Loader::<StorePlugin>::builder()
        .dir(dir.path())
        .probe(Probe::command(artifacts().binary("store-app")))
        .call_timeout(std::time::Duration::from_secs(1))
        .build_isolated()
        .load()
        .unwrap();
    let registry = Box::leak(Box::new(report.registry));
    let store: &'static _ = registry.get("memory").unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    let started = std::time::Instant::now();
    std::thread::spawn(move || {
        let stuck = Items {
            items: std::sync::Mutex::default(),
            stuck: true,
        };
        let _ = done.send(store.import(&stuck).map_err(|error| error.kind()));
    });
    let outcome = finished.recv_timeout(std::time::Duration::from_secs(20));
    assert_eq!(outcome, Ok(Err(CallErrorKind::TimedOut)));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// A plugin's future that lives in the application's future's room is
/// dropped when the application's future is, even after its plugin was
/// disabled by a panic meanwhile: the room is freed, and the plugin's
/// future may have lent its address to something that outlives it.
#[test]
fn a_pending_future_in_the_applications_room_is_dropped_even_after_its_plugin_is_disabled() {
    let dir = PluginDir::with(&["memory"]);
    cancelled();
    let report = loader(&dir, None, false).load().unwrap();
    let store = report.registry.get("memory").unwrap();
    let table = store.open("t").unwrap().unwrap();
    let before = cancelled().len();
    {
        let mut waiting = std::pin::pin!(store.wait_for("never"));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(waiting.as_mut().poll(&mut context).is_pending());
        // Another call panics: the plugin is disabled.
        assert_eq!(
            table.get("panic").unwrap_err().kind(),
            CallErrorKind::Panicked
        );
        assert_eq!(
            waiting
                .as_mut()
                .poll(&mut context)
                .map(|answer| answer.map_err(|e| e.kind())),
            std::task::Poll::Ready(Err(CallErrorKind::Disabled))
        );
    }
    assert_eq!(
        cancelled()[before..],
        ["wait for never cancelled".to_owned()]
    );
}
