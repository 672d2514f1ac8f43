//! What the loader checks before the dynamic loader sees a file: the lock
//! file, private snapshots, permissions.

use std::{
    fs::{self, OpenOptions},
    io::Write,
    sync::atomic::{AtomicBool, Ordering},
    thread,
};

use dropin_host::{LoadErrorKind, Loader, LoaderError, LockMode};
use greeter_interface::GreeterPlugin;
use greeter_tests::{PluginDir, artifacts, library_file_name, stderr, stdout};
use serde_json::Value;

/// Whether this platform names a host build (by GNU build IDs), which the
/// snapshot cache's lists of proven copies need.
const BUILD_IDS: bool = cfg!(all(target_os = "linux", target_pointer_width = "64"));

/// Rewrites the `hello` plugin at `path` in place to greet with
/// `greeting` instead of "Hello!": another build, as far as any check can
/// tell.
fn greet_with(path: &std::path::Path, greeting: &[u8; 6]) {
    let mut bytes = fs::read(path).unwrap();
    let at = greeter_tests::greeting_offset(&bytes);
    bytes[at..at + 6].copy_from_slice(greeting);
    fs::write(path, &bytes).unwrap();
}

fn sha256(path: &std::path::Path) -> String {
    greeter_tests::sha256_hex(&fs::read(path).unwrap())
}

#[test]
fn lock_records_every_loaded_file_with_its_sha256() {
    let dir = PluginDir::with(&["hello", "hellohello"]);
    let output = dir.run(&["lock"]);
    let lockfile = dir.path().join("plugins.lock");
    assert_eq!(
        stdout(&output),
        format!("wrote {}: 2 plugin files locked\n", lockfile.display())
    );
    assert_eq!(output.status.code(), Some(0));
    let lock: Value = serde_json::from_slice(&fs::read(&lockfile).unwrap()).unwrap();
    assert_eq!(lock["format"], 1);
    let hello = dir.path().join(library_file_name("hello"));
    assert_eq!(
        lock["plugins"][0],
        serde_json::json!({
            "file": library_file_name("hello"),
            "sha256": sha256(&hello),
            "name": "hello",
            "version": "1.0.0",
            "interface_version": "2.1.0",
        })
    );
    assert_eq!(lock["plugins"][1]["name"], "hellohello");
    assert_eq!(dir.run(&["greet"]).status.code(), Some(0));
}

#[test]
fn the_lock_files_hashes_are_compared_without_regard_to_case() {
    let dir = PluginDir::with(&["hello", "hellohello"]);
    assert_eq!(dir.run(&["lock"]).status.code(), Some(0));
    let lockfile = dir.path().join("plugins.lock");
    let mut lock: Value = serde_json::from_slice(&fs::read(&lockfile).unwrap()).unwrap();
    // As a hand-written or another tool's lock file may spell them.
    for entry in lock["plugins"].as_array_mut().unwrap() {
        let upper = entry["sha256"].as_str().unwrap().to_uppercase();
        entry["sha256"] = Value::String(upper);
    }
    fs::write(&lockfile, serde_json::to_string(&lock).unwrap()).unwrap();
    let output = dir.run(&["--locked", "greet"]);
    assert_eq!(
        stdout(&output),
        "hello: Hello!\nhellohello: Hello!Hello!!\n",
        "{}",
        stderr(&output)
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn a_locked_file_replaced_by_other_bytes_is_refused_before_it_is_opened() {
    let dir = PluginDir::with(&["hello", "hellohello"]);
    assert_eq!(dir.run(&["lock"]).status.code(), Some(0));
    let hello = dir.path().join(library_file_name("hello"));
    let expected = sha256(&hello);
    // Another plugin's bytes, one whose constructor would leave a marker the
    // moment the dynamic loader opened it.
    fs::copy(artifacts().library("runs_at_open"), &hello).unwrap();
    let actual = sha256(&hello);
    let markers = PluginDir::new();
    let output = dir.run_with_env(
        &["greet"],
        "GREETER_OPEN_MARKERS",
        markers.path().to_str().unwrap(),
    );
    assert_eq!(stdout(&output), "hellohello: Hello!Hello!!\n");
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: rejected {}: SHA-256 mismatch: expected {expected} (from the lock file), \
             found {actual}\n",
            hello.display()
        )
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        fs::read_dir(markers.path()).unwrap().count(),
        0,
        "the file was opened"
    );

    // Without the lock, the same folder does open it: the marker works.
    fs::remove_file(dir.path().join("plugins.lock")).unwrap();
    let output = dir.run_with_env(
        &["greet"],
        "GREETER_OPEN_MARKERS",
        markers.path().to_str().unwrap(),
    );
    assert_eq!(output.status.code(), Some(0));
    assert_ne!(fs::read_dir(markers.path()).unwrap().count(), 0);
}

/// The names of the marker files `runs-at-open`'s constructor left in
/// `markers`: `opened-<id of the process that opened it>`.
fn openers(markers: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(markers)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn listing_checking_and_locking_run_no_plugin_code_anywhere() {
    let dir = PluginDir::with(&["hello", "runs_at_open"]);
    let markers = PluginDir::new();
    let run = |args: &[&str]| {
        let child = dir
            .command(args)
            .env("GREETER_OPEN_MARKERS", markers.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let host = format!("opened-{}", child.id());
        (host, child.wait_with_output().unwrap())
    };
    let (_, output) = run(&["lock"]);
    assert_eq!(
        stdout(&output),
        format!(
            "wrote {}: 2 plugin files locked\n",
            dir.path().join("plugins.lock").display()
        )
    );
    assert_eq!(output.status.code(), Some(0));
    let lockfile = fs::read_to_string(dir.path().join("plugins.lock")).unwrap();
    let runs_at_open = dir.path().join(library_file_name("runs_at_open"));
    assert!(lockfile.contains(&sha256(&runs_at_open)), "{lockfile}");
    assert!(
        lockfile.contains("\"name\": \"runs-at-open\""),
        "{lockfile}"
    );
    // Each of these reads descriptions only: no process, the host or a
    // probe, opened the library, so its constructor never ran.
    for args in [
        &["list"][..],
        &["check"],
        &["--update-lock", "check"],
        &["--isolate", "list"],
        &["--locked", "check", "--format", "json"],
    ] {
        let (_, output) = run(args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(openers(markers.path()), Vec::<String>::new(), "{args:?}");
    }

    // The recorded file is approved: the host now opens it itself, without
    // a probe, which the marker shows.
    let (host, output) = run(&["greet", "runs-at-open"]);
    assert_eq!(
        stdout(&output),
        "runs-at-open: Hello from a library with a constructor!\n"
    );
    assert_eq!(openers(markers.path()), [host]);
}

#[test]
fn a_file_missing_from_the_lock_is_refused_and_the_others_load() {
    let dir = PluginDir::with(&["hello"]);
    assert_eq!(dir.run(&["lock"]).status.code(), Some(0));
    let newcomer = dir.add("hellohello");
    let report = dir.load();
    assert_eq!(
        report.registry.get("hello").unwrap().greet().unwrap(),
        "Hello!"
    );
    assert!(
        matches!(&report.rejected[..], [error] if matches!(error.kind(), LoadErrorKind::NotLocked { .. }) && error.path() == newcomer)
    );
    assert_eq!(
        report.rejected[0].to_string(),
        format!(
            "{}: not listed in {}; expected only locked plugins",
            newcomer.display(),
            dir.path().join("plugins.lock").display()
        )
    );

    // --update-lock records it, and the folder loads cleanly again; it never
    // runs what it just recorded, which nobody has reviewed yet.
    let output = dir.run(&["--update-lock", "greet"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "greeter-host: --update-lock records plugins.lock for review and cannot be combined \
         with greet or watch, which would run what nobody reviewed: run `greeter-host lock`, \
         review plugins.lock, then greet\n"
    );
    let output = dir.run(&["--update-lock", "check"]);
    assert_eq!(output.status.code(), Some(0));
    let output = dir.run(&["--locked", "greet"]);
    assert!(stdout(&output).ends_with("hello: Hello!\nhellohello: Hello!Hello!!\n"));
    assert!(dir.load().rejected.is_empty());
}

#[test]
fn a_locked_file_that_went_missing_is_reported() {
    let dir = PluginDir::with(&["hello", "hellohello"]);
    assert_eq!(dir.run(&["lock"]).status.code(), Some(0));
    let gone = dir.path().join(library_file_name("hellohello"));
    fs::remove_file(&gone).unwrap();
    let output = dir.run(&["greet"]);
    assert_eq!(stdout(&output), "hello: Hello!\n");
    assert!(
        stderr(&output).contains(&format!(
            "{} is listed in {} but missing from the folder",
            gone.display(),
            dir.path().join("plugins.lock").display()
        )),
        "{}",
        stderr(&output)
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn a_lock_file_that_does_not_parse_names_the_line_and_nothing_loads() {
    let dir = PluginDir::with(&["hello"]);
    let lockfile = dir.path().join("plugins.lock");
    fs::write(&lockfile, "{\n  \"format\": 1,\n  \"plugins\": [}\n").unwrap();
    let output = dir.run(&["greet"]);
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: {}:3:15: invalid lock file: expected value\n",
            lockfile.display()
        )
    );
    assert_eq!(output.status.code(), Some(2));
    let error = greeter_tests::trusted(Loader::<GreeterPlugin>::builder().dir(dir.path()))
        .load()
        .unwrap_err();
    assert!(matches!(error, LoaderError::Lockfile(_)), "{error:?}");
}

#[test]
fn locked_requires_a_lock_file() {
    let dir = PluginDir::with(&["hello"]);
    let output = dir.run(&["--locked", "greet"]);
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: {} does not exist; expected a lock file (create it with `greeter-host lock`)\n",
            dir.path().join("plugins.lock").display()
        )
    );
    assert_eq!(output.status.code(), Some(2));
    let report = greeter_tests::trusted(
        Loader::<GreeterPlugin>::builder()
            .dir(dir.path())
            .lock(LockMode::Required),
    )
    .load();
    assert!(matches!(report, Err(LoaderError::Lockfile(_))));
}

#[test]
fn plugins_are_loaded_from_a_private_copy_that_goes_away_with_the_registry() {
    let dir = PluginDir::with(&["hello"]);
    let report = dir.load();
    let hello = report.registry.get("hello").unwrap();
    let copy = hello.loaded_from().to_owned();
    assert_ne!(copy, hello.path());
    assert_eq!(sha256(&copy), sha256(hello.path()));
    assert_eq!(hello.sha256().unwrap(), sha256(hello.path()));
    let folder = copy.parent().unwrap().to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&folder).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
    drop(report);
    assert!(!folder.exists());
}

#[test]
fn overwriting_a_loaded_plugin_file_in_place_does_not_crash_the_host() {
    let dir = PluginDir::with(&["hello"]);
    let report = dir.load();
    let hello = report.registry.get("hello").unwrap();
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let caller = scope.spawn(|| {
            let mut calls = 0u64;
            while !stop.load(Ordering::Relaxed) || calls < 1000 {
                assert_eq!(hello.greet().unwrap(), "Hello!");
                calls += 1;
            }
            calls
        });
        // In place: same inode, new bytes, as `cp` over an existing file does.
        let garbage: Vec<u8> = (0..fs::metadata(hello.path()).unwrap().len())
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        for _ in 0..5 {
            let mut file = OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(hello.path())
                .unwrap();
            file.write_all(&garbage).unwrap();
            file.sync_all().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(caller.join().unwrap() >= 1000);
    });
    assert_eq!(hello.greet().unwrap(), "Hello!");
}

#[cfg(unix)]
mod permissions {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    #[test]
    fn a_plugin_file_writable_by_group_or_others_is_refused_naming_the_bit() {
        let dir = PluginDir::with(&["hellohello"]);
        let hello = dir.add("hello");
        fs::set_permissions(&hello, fs::Permissions::from_mode(0o775)).unwrap();
        let report = dir.load();
        assert_eq!(report.registry.len(), 1);
        assert_eq!(
            greeter_tests::error_chain(&report.rejected[0]),
            format!(
                "{}: not safe to load: writable by group (mode 0775); \
                 expected no write permission for group or others",
                hello.display()
            )
        );
        let output = dir.run(&["--allow-insecure-permissions", "greet", "hello"]);
        assert_eq!(stdout(&output), "hello: Hello!\n");
    }

    #[test]
    fn a_plugins_folder_writable_by_others_loads_nothing() {
        let dir = PluginDir::with(&["hello"]);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let error = greeter_tests::trusted(Loader::<GreeterPlugin>::builder().dir(dir.path()))
            .load()
            .unwrap_err();
        assert_eq!(
            greeter_tests::error_chain(&error),
            format!(
                "plugins folder {} is not safe: writable by group and others (mode 0777); \
                 expected no write permission for group or others",
                dir.path().display()
            )
        );
        let output = dir.run(&["greet"]);
        assert_eq!(output.status.code(), Some(2));
        assert_eq!(stdout(&output), "");
        let output = dir.run(&["--allow-insecure-permissions", "greet"]);
        assert_eq!(stdout(&output), "hello: Hello!\n");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_plugin_file_owned_by_another_user_is_refused() {
        let Some(another) = greeter_tests::another_user(
            "trust::permissions::a_plugin_file_owned_by_another_user_is_refused",
        ) else {
            return;
        };
        let dir = PluginDir::with(&["hello"]);
        let mine = fs::metadata(dir.path().join(library_file_name("hello")))
            .unwrap()
            .uid();
        let theirs = dir.path().join(library_file_name("hellohello"));
        another.library(&greeter_tests::artifacts().library("hellohello"), &theirs);
        let report = dir.load();
        assert_eq!(report.registry.len(), 1);
        assert!(report.registry.get("hello").is_some());
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(
            greeter_tests::error_chain(&report.rejected[0]),
            format!(
                "{}: not safe to load: owned by uid {}; expected the host's user (uid {mine}) \
                 or root",
                theirs.display(),
                another.uid()
            )
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_snapshot_cache_owned_by_another_user_is_not_used() {
        let Some(another) = greeter_tests::another_user(
            "trust::permissions::a_snapshot_cache_owned_by_another_user_is_not_used",
        ) else {
            return;
        };
        let dir = PluginDir::with(&["hello"]);
        let scratch = tempfile::tempdir().unwrap();
        let theirs = another.folder(scratch.path());
        // The cache serves locked folders only.
        assert_eq!(dir.run(&["lock"]).status.code(), Some(0));
        let output = dir
            .command(&[
                "--locked",
                "--snapshot-cache",
                theirs.to_str().unwrap(),
                "greet",
            ])
            .env("RUST_LOG", "dropin_host=debug")
            .output()
            .unwrap();
        // Its copies would be mapped without being hashed again: the host
        // copies and hashes as if there were no cache, and keeps nothing.
        assert_eq!(stdout(&output), "hello: Hello!\n");
        assert_eq!(stderr(&output).matches(" is kept").count(), 0);
        assert!(
            stderr(&output).contains(&format!(
                "snapshot cache {} not used: owned by uid {}",
                theirs.display(),
                another.uid()
            )),
            "{}",
            stderr(&output)
        );
    }
}

/// The lock file gets a plugin's checks: a FIFO, a link to a device, an
/// unsafe one, or one listing a file twice stops everything, at once, naming
/// it; and writing one never follows a link planted beside it.
#[cfg(unix)]
#[test]
fn the_lock_file_is_checked_like_a_plugin() {
    use std::os::unix::fs::PermissionsExt;

    let dir = PluginDir::with(&["hello"]);
    let lock = dir.path().join("plugins.lock");
    let refused = |expected: &str| {
        let listing = greeter_tests::deadline(greeter_tests::HANG, "list beside that lock file");
        let output = dir.run(&["list"]);
        drop(listing);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        let message = stderr(&output);
        assert!(message.contains(expected), "{message}");
    };

    let status = std::process::Command::new("mkfifo")
        .arg(&lock)
        .status()
        .unwrap();
    assert!(status.success());
    refused("plugins.lock: expected a regular lock file, found a FIFO");
    fs::remove_file(&lock).unwrap();

    std::os::unix::fs::symlink("/dev/zero", &lock).unwrap();
    refused("plugins.lock: expected a regular lock file, found a character device");
    fs::remove_file(&lock).unwrap();

    let socket = std::os::unix::net::UnixListener::bind(&lock).unwrap();
    refused("plugins.lock: expected a regular lock file, found a socket");
    drop(socket);
    fs::remove_file(&lock).unwrap();

    assert_eq!(dir.run(&["lock"]).status.code(), Some(0));
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o666)).unwrap();
    refused("lock file");
    refused("is not safe: writable by group and others");
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).unwrap();

    let text = fs::read_to_string(&lock).unwrap();
    let entry_start = text.find('{').unwrap() + 1;
    let entry =
        &text[text[entry_start..].find('{').unwrap() + entry_start..text.rfind('}').unwrap()];
    let entry = entry.trim_end().trim_end_matches(']').trim_end();
    let doubled = text.replacen(entry, &format!("{entry},\n    {entry}"), 1);
    fs::write(&lock, doubled).unwrap();
    refused("a second entry for libhello.so; expected one entry per file");

    // A link planted under any temporary name is never written through.
    fs::remove_file(&lock).unwrap();
    let target = dir.path().join("elsewhere");
    for name in ["plugins.lock.tmp", "plugins.lock.1.tmp"] {
        std::os::unix::fs::symlink(&target, dir.path().join(name)).unwrap();
    }
    assert_eq!(dir.run(&["lock"]).status.code(), Some(0));
    assert!(!target.exists());
    assert!(fs::read_to_string(&lock).unwrap().contains("libhello.so"));
}

#[test]
fn recording_refuses_what_loading_would_without_opening_anything_in_the_host() {
    let dir = PluginDir::with(&["hello", "not_a_plugin", "panicky"]);
    let next_major = dir.add_compat("compat_next_major_greeter");
    let twin = dir.add_as("hello", &library_file_name("zz_hello_again"));
    let opened = PluginDir::new();
    // A probe, with the markers folder in its environment, that recording
    // never starts.
    let marking = format!("GREETER_OPEN_MARKERS={}", opened.path().display());
    let loader = Loader::<GreeterPlugin>::builder()
        .dir(dir.path())
        .probe(
            dropin_host::probe::Probe::command("env")
                .args([marking.into(), artifacts().host_binary().into_os_string()]),
        )
        // Recording runs nothing, here or anywhere: no trust to grant.
        .build_isolated();
    let recording = loader.record().unwrap();
    // Every library was judged from its description (or the lack of one):
    // no process opened any, the probe's included, and this process, the
    // host, mapped none of them.
    let openers = open_marker::openers(opened.path());
    assert_eq!(openers, []);
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    for lib in [
        "hello",
        "not_a_plugin",
        "panicky",
        "compat_next_major_greeter",
    ] {
        let file = library_file_name(lib);
        assert!(
            !maps.lines().any(|line| line.ends_with(&file)),
            "{file} is mapped"
        );
    }
    let names: Vec<&str> = recording.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["hello", "panicky"]);
    assert_eq!(
        recording.entries[0].sha256,
        sha256(&dir.path().join(library_file_name("hello")))
    );
    let not_a_plugin = dir.path().join(library_file_name("not_a_plugin"));
    let reasons: Vec<String> = recording.refused.iter().map(ToString::to_string).collect();
    assert_eq!(
        reasons,
        [
            format!(
                "{}: built against greeter interface 3.0.0, another major version than \
                 this host's 2.1.0; expected greeter 2.x: rebuild the plugin against it",
                next_major.display()
            ),
            format!(
                "{}: not a plugin: expected the description a dropin plugin exports, found a \
                 library without one (a greeter plugin exports it with `export_greeter!(YourType);`; \
                 a plugin built with an earlier dropin must be rebuilt)",
                not_a_plugin.display()
            ),
            format!(
                "{}: a plugin named 'hello' is already loaded from {}",
                twin.display(),
                dir.path().join(library_file_name("hello")).display()
            ),
        ]
    );
    // What was recorded is what loads under the lock it makes.
    recording
        .lockfile()
        .write(&dir.path().join("plugins.lock"))
        .unwrap();
    let report = greeter_tests::trusted(Loader::<GreeterPlugin>::builder().dir(dir.path()))
        .load()
        .unwrap();
    assert_eq!(report.registry.len(), 2);
}

#[test]
fn a_snapshot_cache_forgets_what_no_load_used_for_a_month() {
    use std::time::{Duration, SystemTime};
    let dir = PluginDir::with(&["hello"]);
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("kept");
    let run = || {
        dir.command(&[
            "--locked",
            "--snapshot-cache",
            cache_dir.to_str().unwrap(),
            "greet",
        ])
        .output()
        .unwrap()
    };
    let files = |suffix: &str| {
        let mut files: Vec<String> = fs::read_dir(&cache_dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(suffix))
            .collect();
        files.sort();
        files
    };
    let age = |name: &str, days: u64| {
        let then = SystemTime::now() - Duration::from_secs(days * 86_400);
        fs::File::open(cache_dir.join(name))
            .unwrap()
            .set_times(fs::FileTimes::new().set_accessed(then).set_modified(then))
            .unwrap();
    };
    assert_eq!(dir.run(&["lock"]).status.code(), Some(0));
    assert_eq!(stdout(&run()), "hello: Hello!\n");
    let first = files(".so");
    assert_eq!(first.len(), 1);
    // Its copy not used for 40 days; a temporary file that a process which
    // died left behind 2 days ago, and one made a moment ago.
    age(&first[0], 40);
    let private = |name: &str| {
        use std::os::unix::fs::PermissionsExt;
        fs::write(cache_dir.join(name), b"x").unwrap();
        fs::set_permissions(cache_dir.join(name), fs::Permissions::from_mode(0o500)).unwrap();
    };
    let left = format!("{}.1.0.new", first[0].trim_end_matches(".so"));
    let busy = format!("{}.2.0.new", first[0].trim_end_matches(".so"));
    private(&left);
    age(&left, 2);
    private(&busy);
    // Named as kept copies: one used yesterday though made long ago, which
    // stays; one that others may read, and one not named as the cache
    // names anything, which are not the cache's to remove.
    let used = format!("{}-used.so", "1".repeat(64));
    private(&used);
    age(&used, 40);
    fs::File::open(cache_dir.join(&used))
        .unwrap()
        .set_times(
            fs::FileTimes::new().set_accessed(SystemTime::now() - Duration::from_secs(86_400)),
        )
        .unwrap();
    let readable = format!("{}-readable.so", "2".repeat(64));
    fs::write(cache_dir.join(&readable), b"x").unwrap();
    age(&readable, 40);
    private("libforeign.so");
    age("libforeign.so", 40);
    // A new build, locked: its copy is kept, and keeping it clears out what
    // went unused.
    let hello = dir.path().join(library_file_name("hello"));
    greet_with(&hello, b"Howdy!");
    assert_eq!(dir.run(&["lock"]).status.code(), Some(0));
    assert_eq!(stdout(&run()), "hello: Howdy!\n");
    let second: Vec<String> = files(".so")
        .into_iter()
        .filter(|name| ![&used, &readable, "libforeign.so"].contains(&name.as_str()))
        .collect();
    assert_eq!(second.len(), 1);
    assert_ne!(second, first);
    assert_eq!(files(".new"), [busy]);
    for stays in [&used, &readable, "libforeign.so"] {
        assert!(cache_dir.join(stays).exists(), "{stays} was removed");
    }
    // The list of proven copies names only what is left.
    if BUILD_IDS {
        let lists = files("");
        let list = lists
            .iter()
            .find(|name| name.starts_with("proven-"))
            .expect("a list of proven copies");
        // Each line: the copy's name, then its description in hexadecimal.
        let text = fs::read_to_string(cache_dir.join(list)).unwrap();
        let (name, description) = text
            .strip_suffix('\n')
            .and_then(|line| line.split_once(' '))
            .expect("one line: a name and a description");
        assert_eq!(name, second[0]);
        assert!(description.starts_with("64726f70696e0064"), "{description}");
    }
}

#[test]
fn a_snapshot_cache_maps_verified_copies_of_unchanged_files_and_nothing_else() {
    let dir = PluginDir::with(&["hello", "counter"]);
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("kept");
    let cache_arg = cache_dir.to_str().unwrap();
    assert_eq!(dir.run(&["lock"]).status.code(), Some(0));
    // A library whose root module has another layout, approved by hand (the
    // recording would refuse it): only the layout check refuses it.
    let wrong = dir.add("wrong_layout");
    let lockfile = dir.path().join("plugins.lock");
    let mut lock: Value = serde_json::from_str(&fs::read_to_string(&lockfile).unwrap()).unwrap();
    lock["plugins"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "file": library_file_name("wrong_layout"),
            "sha256": sha256(&wrong),
            "name": "wrong-layout",
            "version": "1.0.0",
            "interface_version": "2.1.0",
        }));
    fs::write(&lockfile, serde_json::to_string(&lock).unwrap()).unwrap();
    let run = || {
        dir.command(&["--locked", "--snapshot-cache", cache_arg, "greet"])
            .env("RUST_LOG", "dropin_host=debug")
            .output()
            .unwrap()
    };
    let kept = |output: &std::process::Output| stderr(output).matches(" is kept").count();
    let proven = |output: &std::process::Output| {
        stderr(output)
            .matches("its headers and layout proven by this build")
            .count()
    };
    let refused = format!(
        "{}: not a dropin root module of a compatible layout",
        wrong.display()
    );
    // The first run copies, hashes, and keeps the three verified copies;
    // two of them pass the layout check.
    let first = run();
    assert_eq!(first.status.code(), Some(1));
    assert_eq!(
        stdout(&first),
        "counter: Hello, visitor #1!\nhello: Hello!\n"
    );
    assert!(stderr(&first).contains(&refused), "{}", stderr(&first));
    assert_eq!(kept(&first), 0);
    let entries = |dir: &std::path::Path| {
        fs::read_dir(dir)
            .unwrap()
            .filter(|entry| entry.as_ref().unwrap().path().extension() == Some("so".as_ref()))
            .count()
    };
    assert_eq!(entries(&cache_dir), 3);
    // What this build proved: the two plugins' copies, by name.
    let lists: Vec<_> = fs::read_dir(&cache_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().contains("proven-"))
        .collect();
    assert_eq!(lists.len(), usize::from(BUILD_IDS), "{lists:?}");
    if BUILD_IDS {
        assert_eq!(fs::read_to_string(&lists[0]).unwrap().lines().count(), 2);
    }
    // The next maps them: the same greetings, nothing copied, the two
    // proven copies not checked again, the third refused by the layout
    // check again.
    let second = run();
    assert_eq!(second.status.code(), Some(1));
    assert_eq!(stdout(&second), stdout(&first));
    assert_eq!(kept(&second), 3, "{}", stderr(&second));
    assert_eq!(
        proven(&second),
        if BUILD_IDS { 2 } else { 0 },
        "{}",
        stderr(&second)
    );
    assert!(stderr(&second).contains(&refused), "{}", stderr(&second));
    // The list names what was proven, nothing more: a copy added to it by
    // hand would be mapped unchecked, which is why it is trusted as the
    // lock file is. Without it, everything is checked again.
    for list in &lists {
        fs::remove_file(list).unwrap();
    }
    let unlisted = run();
    assert_eq!(stdout(&unlisted), stdout(&first));
    assert_eq!(proven(&unlisted), 0, "{}", stderr(&unlisted));
    assert!(stderr(&unlisted).contains(&refused));
    fs::remove_file(&wrong).unwrap();
    // A changed file misses the cache: its new bytes are hashed, and
    // refused, since the lock file names the old ones.
    let hello = dir.path().join(library_file_name("hello"));
    greet_with(&hello, b"Howdy!");
    let third = run();
    assert_eq!(third.status.code(), Some(1));
    assert_eq!(stdout(&third), "counter: Hello, visitor #1!\n");
    assert!(
        stderr(&third).contains("SHA-256 mismatch"),
        "{}",
        stderr(&third)
    );
    assert_eq!(kept(&third), 1);
    // Locked anew, the new build loads, and is kept beside the old one.
    assert_eq!(dir.run(&["lock"]).status.code(), Some(0));
    let fourth = run();
    assert_eq!(
        stdout(&fourth),
        "counter: Hello, visitor #1!\nhello: Howdy!\n"
    );
    assert_eq!(entries(&cache_dir), 4);
    // A cache folder others may write is not used at all.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&cache_dir, fs::Permissions::from_mode(0o777)).unwrap();
        let fifth = run();
        assert_eq!(stdout(&fifth), stdout(&fourth));
        assert_eq!(kept(&fifth), 0);
        assert!(stderr(&fifth).contains("not used"), "{}", stderr(&fifth));
        // Nor one in a folder others may write (without the sticky bit
        // that `/tmp` has): they could put another folder in its place
        // between the check of a kept copy and its mapping.
        let open = cache.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let inside = open.join("kept");
        let exposed = dir
            .command(&[
                "--locked",
                "--snapshot-cache",
                inside.to_str().unwrap(),
                "greet",
            ])
            .env("RUST_LOG", "dropin_host=debug")
            .output()
            .unwrap();
        assert_eq!(stdout(&exposed), stdout(&fourth));
        assert!(
            stderr(&exposed).contains(&format!(
                "not used: the folder above it {} may be written by others (mode 0777)",
                open.display()
            )),
            "{}",
            stderr(&exposed)
        );
    }
}

/// A host killed by any signal leaves its snapshot folder; the next host to
/// start removes it at once, however recently the first died, and keeps the
/// folder of a host that still runs.
#[test]
fn a_killed_hosts_snapshot_folder_is_swept_by_the_next_start() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = PluginDir::with(&["hello"]);
    let snapshots = PluginDir::new();
    let start = || {
        let mut child = dir
            .command(&[
                "--snapshot-dir",
                snapshots.path().to_str().unwrap(),
                "watch",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Loaded once it greets.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "hello: Hello!\n");
        child
    };
    let folders = || -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(snapshots.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let mut killed = start();
    let mut live = start();
    assert_eq!(folders().len(), 2);
    let killed_folder = folders()
        .into_iter()
        .find(|name| name.contains(&format!("-{}-", killed.id())))
        .expect("the first host's folder");
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(folders().contains(&killed_folder));
    let output = dir.run(&[
        "--snapshot-dir",
        snapshots.path().to_str().unwrap(),
        "greet",
    ]);
    assert_eq!(stdout(&output), "hello: Hello!\n");
    let left = folders();
    assert!(!left.contains(&killed_folder), "{left:?}");
    assert!(
        left.iter()
            .any(|name| name.contains(&format!("-{}-", live.id()))),
        "{left:?}"
    );
    live.kill().unwrap();
    live.wait().unwrap();
}
