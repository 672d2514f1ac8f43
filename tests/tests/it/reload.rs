//! Reloads: a plugin's new build becomes a new generation while other
//! threads keep calling; a build that fails a check leaves the old one
//! serving; earlier generations stay mapped, counted and capped.

use std::{
    fs,
    path::Path,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    thread,
    time::Duration,
};

use dropin_host::{
    ErrorChain, LoadError, LoadErrorKind, Loader, Registry, ReloadError, isolation::Isolate,
    probe::Probe,
};
use greeter_interface::GreeterPlugin;
use greeter_tests::{PluginDir, artifacts, library_file_name};

/// The bytes of the built library `lib` with every `from` replaced by `to`
/// (same length): a build of the same plugin with another text.
fn patched(lib: &str, from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut bytes = fs::read(artifacts().library(lib)).unwrap();
    let mut found = 0;
    for i in 0..bytes.len().saturating_sub(from.len()) {
        if &bytes[i..i + from.len()] == from.as_bytes() {
            bytes[i..i + from.len()].copy_from_slice(to.as_bytes());
            found += 1;
        }
    }
    assert!(found > 0, "{from:?} is not in {lib}");
    bytes
}

/// Installs `bytes` as `file` the way a deployment does: a new file renamed
/// over the old one.
fn install(dir: &Path, file: &str, bytes: &[u8]) {
    let temporary = dir.join(format!(".{file}.new"));
    fs::write(&temporary, bytes).unwrap();
    fs::rename(&temporary, dir.join(file)).unwrap();
}

fn loader(dir: &PluginDir) -> Loader<GreeterPlugin> {
    greeter_tests::trusted(Loader::<GreeterPlugin>::builder().dir(dir.path()))
}

/// Four threads greet through the registry while `reload` runs; returns
/// the greetings each saw, in order. `reload` starts once every thread has
/// made a call, and the threads stop once each has made one after it.
fn greet_during(
    registry: &Registry<GreeterPlugin>,
    name: &str,
    reload: impl FnOnce(),
) -> Vec<Vec<String>> {
    let stop = AtomicBool::new(false);
    let calls: [AtomicUsize; 4] = Default::default();
    // Waits until each caller made a call past `at`, or one of them ended:
    // a caller that panicked stops counting, and its join says why.
    let each_called_past = |at: &[usize; 4], callers: &[thread::ScopedJoinHandle<'_, _>]| {
        let _hang = greeter_tests::deadline(greeter_tests::HANG, "four threads' calls");
        while calls
            .iter()
            .zip(at)
            .any(|(made, &at)| made.load(Ordering::SeqCst) <= at)
            && !callers.iter().any(thread::ScopedJoinHandle::is_finished)
        {
            thread::yield_now();
        }
    };
    thread::scope(|scope| {
        let callers: Vec<_> = (0..4)
            .map(|i| {
                let (stop, made) = (&stop, &calls[i]);
                scope.spawn(move || {
                    let mut seen = Vec::new();
                    // Half look the plugin up each time, half hold a `Live`.
                    let live = registry.live(name).unwrap();
                    while !stop.load(Ordering::Relaxed) || seen.len() < 10 {
                        let greeting = if i % 2 == 0 {
                            registry.get(name).unwrap().greet()
                        } else {
                            live.greet()
                        };
                        seen.push(greeting.expect("no call fails during a reload").to_string());
                        made.fetch_add(1, Ordering::SeqCst);
                    }
                    seen
                })
            })
            .collect();
        each_called_past(&[0; 4], &callers);
        reload();
        each_called_past(
            &calls.each_ref().map(|made| made.load(Ordering::SeqCst)),
            &callers,
        );
        stop.store(true, Ordering::Relaxed);
        callers.into_iter().map(|c| c.join().unwrap()).collect()
    })
}

/// Every call returned the old or the new greeting, each thread switched
/// once and for all, and both were seen.
fn assert_switched(seen: &[Vec<String>], old: &str, new: &str) {
    for calls in seen {
        let first_new = calls.iter().position(|g| g == new);
        for (i, greeting) in calls.iter().enumerate() {
            assert!(greeting == old || greeting == new, "{greeting:?}");
            if first_new.is_some_and(|first| i >= first) {
                assert_eq!(greeting, new, "an old greeting after the new one");
            }
        }
        assert_eq!(calls.last().unwrap(), new);
    }
    assert!(seen.iter().flatten().any(|g| g == old));
}

#[test]
fn a_reload_switches_four_calling_threads_without_a_failed_call() {
    let dir = PluginDir::with(&["hello"]);
    let loader = loader(&dir);
    let report = loader.load().unwrap();
    let registry = &report.registry;
    let first = registry.get("hello").unwrap();
    assert_eq!(first.generation(), 1);
    let file = library_file_name("hello");
    let seen = greet_during(registry, "hello", || {
        install(dir.path(), &file, &patched("hello", "Hello!", "Howdy!"));
        let reloaded = loader.reload(registry, "hello").unwrap();
        assert_eq!(reloaded.generation, 2);
        assert_eq!(reloaded.name, "hello");
        assert!(!reloaded.handed_over);
    });
    assert_switched(&seen, "Hello!", "Howdy!");
    let current = registry.get("hello").unwrap();
    assert_eq!(current.generation(), 2);
    assert_eq!(current.greet().unwrap(), "Howdy!");
    assert_eq!(current.greet_to("Ada").unwrap(), "Hello, Ada!");
    assert_ne!(current.loaded_from(), first.loaded_from());
    // A reference taken before the reload still reaches its generation,
    // which stays mapped.
    assert_eq!(first.greet().unwrap(), "Hello!");
    assert_eq!(registry.len(), 1);
}

#[test]
fn a_build_that_fails_a_check_leaves_the_old_generation_serving() {
    let dir = PluginDir::with(&["hello"]);
    let loader = loader(&dir);
    let report = loader.load().unwrap();
    let registry = &report.registry;
    let file = library_file_name("hello");
    type Case = (&'static str, fn(&LoadError) -> bool, &'static str);
    let cases: [Case; 4] = [
        // A method whose signature changed, read from its description
        // before anything opens it.
        (
            "compat_changed_type_greeter",
            |e| matches!(e.kind(), LoadErrorKind::Signature { .. }),
            "expected &str, found String",
        ),
        // Another major version of the interface.
        (
            "compat_next_major_greeter",
            |e| matches!(e.kind(), LoadErrorKind::AnotherMajor { .. }),
            "another major",
        ),
        // A valid plugin of another name.
        (
            "hellohello",
            |e| matches!(e.kind(), LoadErrorKind::Renamed { .. }),
            "expected 'hello'",
        ),
        // Not a plugin at all.
        (
            "not_a_plugin",
            |e| matches!(e.kind(), LoadErrorKind::NoDescription { .. }),
            "not a plugin",
        ),
    ];
    for (lib, kind, words) in cases {
        let bytes = if lib.starts_with("compat_") {
            fs::read(greeter_tests::compat_artifacts().library(lib)).unwrap()
        } else {
            fs::read(artifacts().library(lib)).unwrap()
        };
        install(dir.path(), &file, &bytes);
        let error = loader.reload(registry, "hello").unwrap_err();
        let ReloadError::Refused {
            name,
            serving,
            source,
        } = &error
        else {
            panic!("{lib}: {error:?}");
        };
        assert!(kind(source.as_ref()), "{lib}: {source:?}");
        assert_eq!((name.as_str(), *serving), ("hello", 1));
        assert_eq!(source.path(), dir.path().join(&file));
        let message = ErrorChain(&error).to_string();
        assert!(
            message.starts_with("'hello' not reloaded; generation 1 keeps serving: ")
                && message.contains(words),
            "{message}"
        );
        assert_eq!(registry.get("hello").unwrap().greet().unwrap(), "Hello!");
        assert_eq!(registry.get("hello").unwrap().generation(), 1);
    }
    // The folder did not gain a plugin from any of them.
    assert_eq!(registry.len(), 1);
    let error = loader.reload(registry, "nobody").unwrap_err();
    assert_eq!(error.to_string(), "no plugin named 'nobody' is loaded");
}

/// The checks a first load makes before opening a file, a reload makes too:
/// the file's permissions, and the probe.
#[cfg(target_os = "linux")]
#[test]
fn a_reload_checks_permissions_and_probes_before_opening() {
    use std::os::unix::fs::PermissionsExt;
    let dir = PluginDir::with(&["hello"]);
    // The probe's constructor exits with status 0 in `runs-at-open`: the
    // probe dies of it, while in this process the library would map.
    let loader = greeter_tests::trusted(Loader::<GreeterPlugin>::builder().dir(dir.path()).probe(
        Probe::command("env").args([
            "GREETER_OPEN_EXIT=1".into(),
            artifacts().host_binary().into_os_string(),
        ]),
    ));
    let report = loader.load().unwrap();
    let registry = &report.registry;
    let file = dir.path().join(library_file_name("hello"));
    let refused = |what: &str| {
        let error = loader.reload(registry, "hello").unwrap_err();
        assert_eq!(
            ErrorChain(&error).to_string(),
            format!(
                "'hello' not reloaded; generation 1 keeps serving: {}: {what}",
                file.display()
            )
        );
        assert_eq!(registry.get("hello").unwrap().greet().unwrap(), "Hello!");
    };
    install(
        dir.path(),
        &library_file_name("hello"),
        &patched("hello", "Hello!", "Howdy!"),
    );
    fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
    refused(
        "not safe to load: writable by group and others (mode 0666); expected no write \
         permission for group or others",
    );
    install(
        dir.path(),
        &library_file_name("hello"),
        &fs::read(artifacts().library("runs_at_open")).unwrap(),
    );
    // Opened by the probe only: this process mapped nothing new.
    let mapped = || {
        fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter(|line| line.contains(".so"))
            .map(|line| line.split_whitespace().last().unwrap().to_owned())
            .collect::<std::collections::BTreeSet<_>>()
    };
    // Its description names another plugin: refused from the file, before
    // the probe (whose constructor exit would refuse it next) or this
    // process opens it.
    let before = mapped();
    refused(
        "a plugin named 'runs-at-open'; expected 'hello', the plugin it would replace (a \
         reload keeps the name)",
    );
    assert_eq!(mapped(), before);
    // The folder's build of hello reloads.
    install(
        dir.path(),
        &library_file_name("hello"),
        &patched("hello", "Hello!", "Howdy!"),
    );
    assert_eq!(loader.reload(registry, "hello").unwrap().generation, 2);
    assert_eq!(registry.get("hello").unwrap().greet().unwrap(), "Howdy!");
}

#[test]
fn earlier_generations_are_counted_and_capped() {
    let dir = PluginDir::with(&["hello"]);
    let loader = greeter_tests::trusted(
        Loader::<GreeterPlugin>::builder()
            .dir(dir.path())
            .max_retained(2),
    );
    let report = loader.load().unwrap();
    let registry = &report.registry;
    assert!(registry.retained().is_empty());
    let file = library_file_name("hello");
    for (i, text) in ["Howdy!", "Hiya!!"].iter().enumerate() {
        install(dir.path(), &file, &patched("hello", "Hello!", text));
        loader.reload(registry, "hello").unwrap();
        let retained = registry.retained();
        assert_eq!(retained.len(), 1);
        assert_eq!(retained[0].name, "hello");
        assert_eq!(retained[0].generations, i + 1);
        // Each mapped library is at least its code: more than 100 KiB.
        assert!(
            retained[0].bytes > 100 * 1024 * (i as u64 + 1),
            "{retained:?}"
        );
    }
    install(dir.path(), &file, &patched("hello", "Hello!", "Hey!!!"));
    let error = loader.reload(registry, "hello").unwrap_err();
    assert!(
        matches!(&error, ReloadError::Refused { source, serving: 3, .. }
            if matches!(source.kind(), LoadErrorKind::Retained { limit: 2, .. })),
        "{error:?}"
    );
    assert!(
        ErrorChain(&error).to_string().contains(
            "'hello' already keeps 2 earlier generations mapped, the most the loader allows"
        ),
        "{}",
        ErrorChain(&error)
    );
    assert_eq!(registry.get("hello").unwrap().greet().unwrap(), "Hiya!!");
}

#[test]
fn reload_changed_reloads_what_changed_adds_what_is_new_and_retries_only_changes() {
    let dir = PluginDir::with(&["hello", "counter"]);
    let loader = loader(&dir);
    let report = loader.load().unwrap();
    let registry = &report.registry;
    assert!(loader.reload_changed(registry).unwrap().is_empty());
    // One changed file, one new plugin, one broken file.
    install(
        dir.path(),
        &library_file_name("hello"),
        &patched("hello", "Hello!", "Howdy!"),
    );
    dir.add("hellohello");
    dir.write(&library_file_name("broken"), b"\x7fELF nothing");
    let report = loader.reload_changed(registry).unwrap();
    let reloaded: Vec<_> = report
        .reloaded
        .iter()
        .map(|r| (r.name.as_str(), r.generation, r.previous.is_some()))
        .collect();
    assert_eq!(reloaded, [("hello", 2, true), ("hellohello", 1, false)]);
    assert_eq!(report.refused.len(), 1, "{:?}", report.refused);
    assert!(matches!(
        &report.refused[0],
        ReloadError::Rejected(error)
            if matches!(error.kind(), LoadErrorKind::InvalidLibrary { .. }) && error.path().ends_with(library_file_name("broken"))
    ));
    assert_eq!(registry.get("hello").unwrap().greet().unwrap(), "Howdy!");
    assert_eq!(
        registry.get("hellohello").unwrap().greet().unwrap(),
        "Hello!Hello!!"
    );
    assert_eq!(registry.get("counter").unwrap().generation(), 1);
    // Nothing changed since: nothing is tried again, the broken file
    // included.
    assert!(loader.reload_changed(registry).unwrap().is_empty());
    // Another plugin of a taken name is refused as a duplicate...
    fs::remove_file(dir.path().join(library_file_name("broken"))).unwrap();
    dir.add_as("hello", &library_file_name("broken"));
    let report = loader.reload_changed(registry).unwrap();
    assert!(report.reloaded.is_empty());
    assert!(matches!(
        &report.refused[..],
        [ReloadError::Rejected(error)]
            if matches!(error.kind(), LoadErrorKind::DuplicateName { name, first }
                if name == "hello" && first.ends_with(library_file_name("hello")))
    ));
    // ... and once it is a plugin of its own, it loads.
    fs::remove_file(dir.path().join(library_file_name("broken"))).unwrap();
    dir.add_as("big_tls", &library_file_name("broken"));
    let report = loader.reload_changed(registry).unwrap();
    assert_eq!(report.reloaded.len(), 1, "{:?}", report.refused);
    assert_eq!(report.reloaded[0].name, "big-tls");
    // The same bytes touched, or copied over again: nothing to reload.
    let hello = dir.path().join(library_file_name("hello"));
    install(
        dir.path(),
        &library_file_name("hello"),
        &fs::read(&hello).unwrap(),
    );
    assert!(loader.reload_changed(registry).unwrap().is_empty());
    assert_eq!(registry.get("hello").unwrap().generation(), 2);
    // A removed file leaves its plugin serving.
    fs::remove_file(dir.path().join(library_file_name("counter"))).unwrap();
    assert!(loader.reload_changed(registry).unwrap().is_empty());
    assert_eq!(
        registry.get("counter").unwrap().greet().unwrap(),
        "Hello, visitor #1!"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn an_isolated_reload_switches_and_ends_the_old_process() {
    let dir = PluginDir::with(&["hello"]);
    let loader = dir.probed_loader().isolate(Isolate::All).build_isolated();
    let report = loader.load().unwrap();
    let registry = &report.registry;
    let first = registry.get("hello").unwrap();
    let old_pid = first.core().process_id().unwrap();
    let file = library_file_name("hello");
    let seen = greet_during(registry, "hello", || {
        install(dir.path(), &file, &patched("hello", "Hello!", "Howdy!"));
        loader.reload(registry, "hello").unwrap();
    });
    assert_switched(&seen, "Hello!", "Howdy!");
    let current = registry.get("hello").unwrap();
    assert!(current.is_isolated());
    let new_pid = current.core().process_id().unwrap();
    assert_ne!(new_pid, old_pid);
    // The old process is gone, reaped, not a zombie.
    assert!(!Path::new(&format!("/proc/{old_pid}")).exists());
    assert_eq!(first.core().process_id(), None);
    // A reference to the old generation reaches the new process.
    assert_eq!(first.greet().unwrap(), "Howdy!");
    // Nothing stays mapped for an isolated plugin.
    assert!(registry.retained().is_empty());
    // A refused build leaves the running process serving.
    install(
        dir.path(),
        &file,
        &fs::read(greeter_tests::compat_artifacts().library("compat_next_major_greeter")).unwrap(),
    );
    let error = loader.reload(registry, "hello").unwrap_err();
    assert!(
        matches!(
            &error,
            ReloadError::Refused { source, serving: 2, .. }
                if matches!(source.kind(), LoadErrorKind::AnotherMajor { .. })
        ),
        "{error:?}"
    );
    assert_eq!(registry.get("hello").unwrap().greet().unwrap(), "Howdy!");
    assert_eq!(current.core().process_id(), Some(new_pid));
}

#[test]
fn a_plugin_that_hands_its_state_over_keeps_counting() {
    let dir = PluginDir::with(&["counter"]);
    for isolate in [false, true] {
        if !greeter_tests::mode_runs_here(isolate) {
            continue;
        }
        let loader =
            greeter_tests::in_mode(Loader::<GreeterPlugin>::builder().dir(dir.path()), isolate);
        let report = loader.load().unwrap();
        let registry = &report.registry;
        let counter = registry.live("counter").unwrap();
        assert_eq!(counter.is_isolated(), isolate);
        for n in 1..=3 {
            assert_eq!(counter.greet().unwrap(), format!("Hello, visitor #{n}!"));
        }
        install(
            dir.path(),
            &library_file_name("counter"),
            &patched("counter", "visitor", "Visitor"),
        );
        let reloaded = loader.reload(registry, "counter").unwrap();
        assert!(reloaded.handed_over, "isolated: {isolate}");
        assert_eq!(counter.generation(), 2);
        assert_eq!(counter.greet().unwrap(), "Hello, Visitor #4!");
        // Back to the first build: the count still goes on.
        dir.add("counter");
        loader.reload(registry, "counter").unwrap();
        assert_eq!(counter.greet().unwrap(), "Hello, visitor #5!");
        // A plugin that saves nothing starts afresh.
        dir.add("hello");
        let hello = loader.reload_changed(registry).unwrap();
        assert_eq!(hello.reloaded[0].name, "hello");
        assert!(!hello.reloaded[0].handed_over);
        install(
            dir.path(),
            &library_file_name("hello"),
            &patched("hello", "Hello!", "Howdy!"),
        );
        let hello = loader.reload(registry, "hello").unwrap();
        assert!(!hello.handed_over);
        fs::remove_file(dir.path().join(library_file_name("hello"))).unwrap();
    }
}

/// Reads `from` line by line into a channel, on a thread of its own.
fn lines(from: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (send, receive) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in std::io::BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// Waits for a line equal to `wanted`, returning every line before it.
fn wait_for(lines: &std::sync::mpsc::Receiver<String>, wanted: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line == wanted => return before,
            Ok(line) => before.push(line),
            Err(_) => panic!("no line {wanted:?}; got {before:?}"),
        }
    }
}

#[cfg(unix)]
#[test]
fn greeter_host_watch_greets_with_the_new_build_until_interrupted() {
    use std::process::Stdio;
    let dir = PluginDir::with(&["hello", "counter"]);
    let mut child = dir
        .command(&["watch", "--every", "200ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(child.stdout.take().unwrap());
    let err = lines(child.stderr.take().unwrap());
    // Greets at once, then every 200ms.
    assert_eq!(
        wait_for(&out, "hello: Hello!"),
        ["counter: Hello, visitor #1!"]
    );
    wait_for(&out, "counter: Hello, visitor #2!");
    // A new build: the running host greets with its text, and the counter,
    // rebuilt too, goes on counting.
    install(
        dir.path(),
        &library_file_name("hello"),
        &patched("hello", "Hello!", "Howdy!"),
    );
    let hello = dir.path().join(library_file_name("hello"));
    let reloaded = err.recv_timeout(Duration::from_secs(20)).unwrap();
    let expected = format!(
        "greeter-host: reloaded 'hello' 1.0.0 (was 1.0.0) from {}: generation 2; earlier \
         generations: 1, ",
        hello.display()
    );
    assert!(
        reloaded.starts_with(&expected) && reloaded.ends_with(" KiB mapped"),
        "{reloaded}"
    );
    let before = wait_for(&out, "hello: Howdy!");
    assert!(
        before
            .iter()
            .all(|line| line == "hello: Hello!" || line.starts_with("counter: Hello, visitor #")),
        "{before:?}"
    );
    // A broken build is refused, one line, and the plugin keeps greeting.
    install(dir.path(), &library_file_name("hello"), b"\x7fELF broken");
    wait_for(
        &err,
        &format!(
            "greeter-host: 'hello' not reloaded; generation 2 keeps serving: {}: not a loadable \
             library: truncated or corrupt: the ELF header ends at byte 20, but the file has 11 \
             bytes",
            hello.display()
        ),
    );
    wait_for(&out, "hello: Howdy!");
    wait_for(&out, "hello: Howdy!");
    // Interrupted, it stops cleanly.
    let interrupt = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = err.try_iter().collect();
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn a_watched_file_written_slowly_in_place_is_reloaded_once_whole() {
    use dropin_host::WatchEvent;
    use std::io::Write;
    let dir = PluginDir::with(&["hello"]);
    let loader = loader(&dir);
    let report = loader.load().unwrap();
    let registry = &report.registry;
    let mut watch = loader.watch(registry).unwrap();
    assert!(watch.next_within(Duration::from_millis(300)).is_none());
    // Written in place in four parts, with pauses longer than the folder's
    // settle time: nothing may read it before its writer closes it.
    let bytes = patched("hello", "Hello!", "Howdy!");
    let path = dir.path().join(library_file_name("hello"));
    let writer = thread::spawn(move || {
        let mut file = fs::File::create(&path).unwrap();
        for part in bytes.chunks(bytes.len() / 4 + 1) {
            file.write_all(part).unwrap();
            file.flush().unwrap();
            thread::sleep(dropin_host::DEFAULT_SETTLE * 2);
        }
    });
    let event = watch.next_within(Duration::from_secs(20));
    writer.join().unwrap();
    match event {
        Some(WatchEvent::Reloaded(reloaded)) => assert_eq!(reloaded.generation, 2),
        other => panic!("{other:?}"),
    }
    assert!(watch.next_within(Duration::from_millis(500)).is_none());
    assert_eq!(registry.get("hello").unwrap().greet().unwrap(), "Howdy!");
}

#[test]
fn reloads_run_one_at_a_time_and_isolation_still_needs_a_probe() {
    let dir = PluginDir::with(&["hello"]);
    let loader = loader(&dir);
    let report = loader.load().unwrap();
    let registry = &report.registry;
    let mut generations: Vec<u32> = thread::scope(|scope| {
        let reloads: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| loader.reload(registry, "hello").unwrap().generation))
            .collect();
        reloads.into_iter().map(|r| r.join().unwrap()).collect()
    });
    generations.sort_unstable();
    assert_eq!(generations, [2, 3]);
    // Isolating without a probe (whose program runs isolated plugins) is
    // refused by reloads as by the first load: never a plugin mapped in
    // the host instead.
    let isolating = Loader::<GreeterPlugin>::builder()
        .dir(dir.path())
        .isolate(Isolate::All)
        .build_isolated();
    let empty = Registry::<GreeterPlugin>::new();
    assert!(matches!(
        isolating.reload_changed(&empty),
        Err(dropin_host::LoaderError::NoProbe)
    ));
    assert!(matches!(
        isolating.reload(registry, "hello"),
        Err(ReloadError::Folder(dropin_host::LoaderError::NoProbe))
    ));
    assert!(empty.is_empty());
}

#[test]
fn a_reload_reads_the_lock_file_again() {
    let dir = PluginDir::with(&["hello"]);
    let lock = |dir: &PluginDir| {
        let output = dir.run(&["lock"]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            greeter_tests::stderr(&output)
        );
    };
    lock(&dir);
    let loader = loader(&dir);
    let report = loader.load().unwrap();
    let registry = &report.registry;
    install(
        dir.path(),
        &library_file_name("hello"),
        &patched("hello", "Hello!", "Howdy!"),
    );
    let error = loader.reload(registry, "hello").unwrap_err();
    assert!(
        matches!(&error, ReloadError::Refused { source, .. }
            if matches!(source.kind(), LoadErrorKind::HashMismatch { .. })),
        "{error:?}"
    );
    assert_eq!(registry.get("hello").unwrap().greet().unwrap(), "Hello!");
    // Locked anew, the same build passes.
    lock(&dir);
    loader.reload(registry, "hello").unwrap();
    assert_eq!(registry.get("hello").unwrap().greet().unwrap(), "Howdy!");
}

#[test]
fn a_build_that_fails_once_mapped_stays_mapped_and_counts() {
    let dir = PluginDir::with(&["hello"]);
    let loader = greeter_tests::trusted(
        Loader::<GreeterPlugin>::builder()
            .dir(dir.path())
            .max_retained(1),
    );
    let report = loader.load().unwrap();
    let registry = &report.registry;
    // A build whose description lies about its version: refused once
    // opened, when its root module says otherwise, so it stays mapped.
    install(
        dir.path(),
        &library_file_name("hello"),
        &greeter_tests::description_patched(
            &fs::read(artifacts().library("hello")).unwrap(),
            "1.0.0",
            "9.9.9",
        ),
    );
    let error = loader.reload(registry, "hello").unwrap_err();
    assert!(
        matches!(&error, ReloadError::Refused { source, .. }
            if matches!(source.kind(), LoadErrorKind::Disagrees { field: "plugin version", .. })),
        "{error:?}"
    );
    let retained = registry.retained();
    assert_eq!(
        (retained[0].generations, retained[0].failed),
        (0, 1),
        "{retained:?}"
    );
    // It counts against the limit: a good build is refused now.
    dir.add("hello");
    let error = loader.reload(registry, "hello").unwrap_err();
    assert!(
        matches!(&error, ReloadError::Refused { source, .. }
            if matches!(source.kind(), LoadErrorKind::Retained { limit: 1, .. })),
        "{error:?}"
    );
    assert_eq!(registry.get("hello").unwrap().greet().unwrap(), "Hello!");
}
