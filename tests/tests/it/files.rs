//! What is not a plain, stable library file is refused at once, from the
//! one handle the loader opens: FIFOs, devices, oversized files, and files
//! someone is writing while the host copies them.

use std::{
    fs::{self, OpenOptions},
    os::unix::fs::FileExt,
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use dropin_host::{LoadErrorKind, Loader};
use greeter_interface::GreeterPlugin;
use greeter_tests::{PluginDir, artifacts, library_file_name};

#[test]
fn a_fifo_named_like_a_plugin_is_refused_without_waiting_for_a_writer() {
    let dir = PluginDir::with(&["hello"]);
    let fifo = dir.path().join(library_file_name("fifo"));
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let loading = greeter_tests::deadline(greeter_tests::HANG, "loading beside a FIFO");
    let report = dir.load();
    drop(loading);
    assert_eq!(
        report.rejected[0].to_string(),
        format!(
            "{}: expected a regular library file, found a FIFO",
            fifo.display()
        )
    );
    assert_eq!(
        report.registry.get("hello").unwrap().greet().unwrap(),
        "Hello!"
    );
}

#[test]
fn a_socket_named_like_a_plugin_is_refused_naming_it() {
    let dir = PluginDir::with(&["hello"]);
    let socket = dir.path().join(library_file_name("socket"));
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let loading = greeter_tests::deadline(greeter_tests::HANG, "loading beside a socket");
    let report = dir.load();
    drop(loading);
    let messages: Vec<String> = report.rejected.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [format!(
            "{}: expected a regular library file, found a socket",
            socket.display()
        )]
    );
    assert_eq!(
        report.registry.get("hello").unwrap().greet().unwrap(),
        "Hello!"
    );
}

#[test]
fn a_link_to_a_device_is_refused_without_reading_it() {
    let dir = PluginDir::with(&["hello"]);
    for device in ["/dev/zero", "/dev/null"] {
        let link = dir
            .path()
            .join(library_file_name(&device.replace('/', "_")));
        std::os::unix::fs::symlink(device, &link).unwrap();
    }
    let loading = greeter_tests::deadline(greeter_tests::HANG, "loading beside devices");
    let report = dir.load();
    drop(loading);
    assert_eq!(report.rejected.len(), 2);
    for error in &report.rejected {
        assert!(
            matches!(
                error.kind(),
                LoadErrorKind::NotAFile {
                    found: "a character device",
                    ..
                }
            ),
            "{error}"
        );
    }
    assert_eq!(report.registry.len(), 1);
}

#[test]
fn a_file_over_the_size_limit_is_refused_before_it_is_copied() {
    let dir = PluginDir::with(&["hello"]);
    let sparse = dir.path().join(library_file_name("sparse"));
    // 8 GiB that occupy no disk: copying them would.
    OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&sparse)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    let report = dir.load();
    assert_eq!(
        report.rejected[0].to_string(),
        format!(
            "{}: 8589934592 bytes; expected at most 268435456 (the loader's limit on a plugin file's size)",
            sparse.display()
        )
    );
    let report = greeter_tests::trusted(
        Loader::<GreeterPlugin>::builder()
            .dir(dir.path())
            .max_file_size(1000),
    )
    .load()
    .unwrap();
    assert_eq!(report.rejected.len(), 2, "hello is over 1000 bytes too");
}

/// A writer rewrites a plugin in place, alternating two builds of the same
/// size, while the host loads the folder again and again: every load either
/// gets one whole build, byte for byte, or refuses the file as changing.
///
/// The builds differ at both ends (the greeting, and the `.comment` section
/// at the end, which no loader reads), so a copy made while a write was under
/// way, half one build and half the other, is a third file that still loads
/// and greets: only its hash tells it apart.
#[test]
fn a_plugin_rewritten_in_place_during_loads_never_loads_torn() {
    let hello = fs::read(artifacts().library("hello")).unwrap();
    let (comment, _) = greeter_tests::elf_section(&hello, ".comment").expect("a .comment section");
    let greeting = greeter_tests::greeting_offset(&hello);
    assert!(greeting < comment);
    let mut other = hello.clone();
    other[greeting..greeting + 6].copy_from_slice(b"Howdy!");
    other[comment] ^= 0x20;
    let builds = [
        (greeter_tests::sha256_hex(&hello), "Hello!", hello),
        (greeter_tests::sha256_hex(&other), "Howdy!", other),
    ];
    let dir = PluginDir::new();
    let path = dir.write(&library_file_name("rewritten"), &builds[0].2);
    // Odd loads run while the writer rewrites the file without pause; even
    // loads run while it rests, after it finished a whole build.
    let writing = AtomicBool::new(false);
    // The writer's handle: it opens the file to write, and the test closes it
    // when the writer is to rest.
    let handle = Mutex::new(None);
    let done = AtomicBool::new(false);
    let rewrites = AtomicUsize::new(0);
    let (mut loaded, mut changing) = (0, 0);
    thread::scope(|scope| {
        scope.spawn(|| {
            let mut next = builds.iter().cycle();
            while !done.load(Ordering::SeqCst) {
                let mut file = handle.lock().unwrap();
                if !writing.load(Ordering::SeqCst) {
                    drop(file);
                    thread::yield_now();
                    continue;
                }
                let file =
                    file.get_or_insert_with(|| OpenOptions::new().write(true).open(&path).unwrap());
                let (_, _, bytes) = next.next().unwrap();
                // In place, in one write: the file is one build or the
                // other, except while the write is under way.
                file.write_all_at(bytes, 0).unwrap();
                rewrites.fetch_add(1, Ordering::SeqCst);
            }
        });
        // However the loop ends, the writer stops, so the scope can end.
        let _stop = StopOnDrop(&done);
        let started = Instant::now();
        for load in 0..200 {
            if load % 2 == 1 {
                let before = rewrites.load(Ordering::SeqCst);
                writing.store(true, Ordering::SeqCst);
                while rewrites.load(Ordering::SeqCst) < before + 2 {
                    assert!(
                        started.elapsed() < Duration::from_secs(60),
                        "the writer is stuck"
                    );
                    thread::yield_now();
                }
            }
            let report = dir.load();
            if let Some(plugin) = report.registry.get("hello") {
                let hash = plugin.sha256().unwrap();
                let Some((_, greeting, _)) = builds.iter().find(|(sha, ..)| *sha == hash) else {
                    panic!("load {load} mapped a copy that is neither build: {hash}");
                };
                assert_eq!(plugin.greet().unwrap(), *greeting);
                loaded += 1;
            } else {
                for error in &report.rejected {
                    assert!(matches!(error.kind(), LoadErrorKind::Changing), "{error}");
                    changing += 1;
                }
            }
            if load % 2 == 1 {
                // The writer stops after a whole build (it checks the flag
                // only while it holds the lock, and holds it while it
                // writes), and its file is closed.
                writing.store(false, Ordering::SeqCst);
                *handle.lock().unwrap() = None;
            }
        }
    });
    // Both outcomes happened: the writer was at work during loads, and the
    // loads while it rested got a whole build.
    assert!(
        loaded >= 100 && changing > 0,
        "{loaded} loaded, {changing} refused as changing"
    );
}

/// Sets its flag when dropped, also while a panic unwinds.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn past_the_cap_on_mapped_libraries_files_are_refused_and_loaded_ones_still_work() {
    let served = PluginDir::with(&["hello"]).load();
    let dir = PluginDir::with(&["hellohello", "counter"]);
    let report = greeter_tests::trusted(
        Loader::<GreeterPlugin>::builder()
            .dir(dir.path())
            .max_mapped(0),
    )
    .load()
    .unwrap();
    assert!(report.registry.is_empty());
    assert_eq!(report.rejected.len(), 2);
    for error in &report.rejected {
        assert_eq!(
            error.to_string(),
            format!(
                "{}: not opened: this process has mapped 0 libraries, the most the loader allows \
                 (libraries are never unloaded)",
                error.path().display()
            )
        );
    }
    assert_eq!(
        served.registry.get("hello").unwrap().greet().unwrap(),
        "Hello!"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_link_flipped_to_another_users_file_never_loads_that_file() {
    let Some(another) = greeter_tests::another_user(
        "files::a_link_flipped_to_another_users_file_never_loads_that_file",
    ) else {
        return;
    };
    // Two real libraries outside the plugins folder: one of ours, and one
    // that another user owns.
    let elsewhere = PluginDir::new();
    let mine = elsewhere.write("mine", &fs::read(artifacts().library("hello")).unwrap());
    let theirs = elsewhere.path().join("theirs");
    another.library(&artifacts().library("hellohello"), &theirs);
    let uid = another.uid();
    let me = std::os::unix::fs::MetadataExt::uid(&fs::metadata(&mine).unwrap());
    let dir = PluginDir::new();
    let link = dir.path().join(library_file_name("flipped"));
    let spare = dir.path().join(".flipping");
    std::os::unix::fs::symlink(&mine, &link).unwrap();
    let stop = AtomicBool::new(false);
    let (mut loaded, mut refused) = (0, 0);
    thread::scope(|scope| {
        scope.spawn(|| {
            let mut flip = false;
            while !stop.load(Ordering::Relaxed) {
                // Atomically, as another user would: a new link renamed over
                // the old one.
                let target = if flip { &theirs } else { &mine };
                let _ = fs::remove_file(&spare);
                std::os::unix::fs::symlink(target, &spare).unwrap();
                fs::rename(&spare, &link).unwrap();
                flip = !flip;
            }
        });
        let _stop = StopOnDrop(&stop);
        for _ in 0..200 {
            let report = dir.load();
            assert!(
                report.registry.get("hellohello").is_none(),
                "their file loaded"
            );
            if report.registry.get("hello").is_some() {
                loaded += 1;
            }
            for error in &report.rejected {
                assert_eq!(
                    greeter_tests::error_chain(error),
                    format!(
                        "{}: not safe to load: owned by uid {uid}; expected the host's user \
                         (uid {me}) or root",
                        link.display()
                    )
                );
                refused += 1;
            }
        }
    });
    // The race was run: both files were behind the link at some load.
    assert!(
        loaded > 0 && refused > 0,
        "{loaded} loaded, {refused} refused"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn links_to_kernel_files_are_refused_at_once() {
    let dir = PluginDir::with(&["hello"]);
    let status = dir.path().join(library_file_name("status"));
    let kmsg = dir.path().join(library_file_name("kmsg"));
    std::os::unix::fs::symlink("/proc/self/status", &status).unwrap();
    // Root-owned and not writable by others: it passes the permission
    // check, and a blocking read would wait for the next kernel message.
    std::os::unix::fs::symlink("/proc/kmsg", &kmsg).unwrap();
    let loading = greeter_tests::deadline(greeter_tests::HANG, "loading beside kernel files");
    let report = dir.load();
    drop(loading);
    assert!(report.registry.get("hello").is_some());
    let messages: Vec<String> = report.rejected.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            format!("{}: cannot read the file", kmsg.display()),
            format!(
                "{}: expected a regular library file, found a virtual file whose size reads as 0 \
                 (as in /proc or /sys)",
                status.display()
            ),
        ]
    );
}
