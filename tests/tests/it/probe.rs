//! Libraries the dynamic loader cannot survive: `greeter-host` opens each
//! one first in a probe process, so the loader's crash, its own `_exit(127)`
//! or a constructor's `exit` ends the probe, not the host, and the file is
//! refused saying how.

use std::fs;

use greeter_tests::{PluginDir, artifacts, library_file_name, stderr, stdout};
use serde_json::Value;

const PT_DYNAMIC: u32 = 2;
const DT_NEEDED: u64 = 1;
const DT_RELAENT: u64 = 9;
const DT_PLTREL: u64 = 20;
const DT_INIT_ARRAYSZ: u64 = 27;
const DT_GNU_HASH: u64 = 0x6fff_fef5;

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The file offsets of the value of every dynamic entry, by tag.
fn dynamic_entries(elf: &[u8]) -> Vec<(u64, usize)> {
    let phoff = u64_at(elf, 32) as usize;
    let phnum = u16_at(elf, 56);
    let dynamic = (0..phnum)
        .map(|i| phoff + i * 56)
        .find(|&ph| u32_at(elf, ph) == PT_DYNAMIC)
        .expect("a shared library has a dynamic segment");
    let offset = u64_at(elf, dynamic + 8) as usize;
    let size = u64_at(elf, dynamic + 32) as usize;
    (offset..offset + size)
        .step_by(16)
        .map(|entry| (u64_at(elf, entry), entry + 8))
        .take_while(|&(tag, _)| tag != 0)
        .collect()
}

/// `hello` with the value of its first `tag` entry changed by `change`.
fn mutant(hello: &[u8], tag: u64, change: impl Fn(u64) -> u64) -> Vec<u8> {
    let (_, at) = *dynamic_entries(hello)
        .iter()
        .find(|(t, _)| *t == tag)
        .unwrap_or_else(|| panic!("hello has a dynamic entry {tag:#x}"));
    let mut bytes = hello.to_vec();
    let value = change(u64_at(&bytes, at));
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    bytes
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn dynamic_sections_the_loader_dies_on_are_refused_and_the_host_lives() {
    let hello = fs::read(artifacts().library("hello")).unwrap();
    // Without hello beside them: each mutant is a plugin named hello, and a
    // second one is refused from its description before anything opens it.
    let dir = PluginDir::new();
    let mutants: [(&str, Vec<u8>); 5] = [
        ("gnu-hash-zero", mutant(&hello, DT_GNU_HASH, |_| 0)),
        (
            "needed-past-strtab",
            mutant(&hello, DT_NEEDED, |_| 0x7fff_ffff),
        ),
        (
            "init-array-too-long",
            mutant(&hello, DT_INIT_ARRAYSZ, |n| n + 8),
        ),
        ("relaent-wrong", mutant(&hello, DT_RELAENT, |_| 7)),
        ("pltrel-wrong", mutant(&hello, DT_PLTREL, |_| 99)),
    ];
    for (name, bytes) in &mutants {
        dir.write(&library_file_name(&format!("zz-{name}")), bytes);
    }
    let output = dir.run(&["greet", "--format", "json"]);
    // Exit 1: files were rejected. Not a signal, not ld.so's 127.
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let entries: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(entries.len(), mutants.len());
    let mut probed = 0;
    for entry in &entries {
        assert_eq!(entry["status"], "rejected", "{entry}");
        let error = entry["error"].as_str().unwrap();
        if error.contains(": the probe process that opened it first ") {
            probed += 1;
        } else {
            // What the header checks can see, they refuse before any process
            // opens the file.
            assert!(error.contains(": not a loadable library: "), "{error}");
        }
    }
    // The others kill the dynamic loader (SIGSEGV, or its assertion and
    // `_exit(127)`): the probe died of each of them, the host of none.
    assert!(probed >= 4, "{}", stdout(&output));
    dir.add("hello");
    let output = dir.run(&["greet", "hello"]);
    assert_eq!(stdout(&output), "hello: Hello!\n");
}

#[cfg(any(target_os = "linux", target_vendor = "apple"))]
#[test]
fn a_constructor_that_exits_never_turns_into_a_success() {
    // `runs-at-open` exits from its constructor when asked to: loading it
    // in-process would end the host with status 0 and no output.
    let dir = PluginDir::with(&["hello", "runs_at_open"]);
    let output = dir.run_with_env(&["greet"], "GREETER_OPEN_EXIT", "1");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(stdout(&output), "hello: Hello!\n");
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: rejected {}: the probe process that opened it first exited with \
             status 0\n",
            dir.path().join(library_file_name("runs_at_open")).display()
        )
    );
}

#[cfg(any(target_os = "linux", target_vendor = "apple"))]
#[test]
fn a_probe_silent_for_ten_seconds_is_killed_and_the_file_refused() {
    // `runs-at-open`'s constructor never returns when asked: the probe
    // that opened it says nothing, ever.
    let dir = PluginDir::with(&["hello", "runs_at_open"]);
    let checking = greeter_tests::deadline(greeter_tests::HANG * 2, "check beside a silent probe");
    let output = dir.run_with_env(&["greet"], "GREETER_OPEN_HANG", "1");
    drop(checking);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let silent = dir.path().join(library_file_name("runs_at_open"));
    assert_eq!(stdout(&output), "hello: Hello!\n");
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: rejected {silent}: the probe process that opened it first did not \
             finish within 10s and was killed\n",
            silent = silent.display(),
        )
    );
}

#[cfg(any(target_os = "linux", target_vendor = "apple"))]
#[test]
fn an_exit_in_plugin_code_the_host_runs_never_turns_into_a_success() {
    let dir = PluginDir::with(&["hello", "runs_at_open"]);
    let file = dir.path().join(library_file_name("runs_at_open"));
    let expected = format!(
        "{}: the plugin's code called exit while it was being loaded; ending with status 4 \
         instead of reporting success\n",
        file.display()
    );
    // `init` runs in the host only (the probe never calls it).
    let output = dir.run_with_env(&["greet"], "GREETER_INIT_EXIT", "1");
    assert_eq!(stderr(&output), expected);
    assert_eq!(output.status.code(), Some(4));
    // Under a lock file nothing is probed: the constructor runs in the host.
    assert_eq!(dir.run(&["lock"]).status.code(), Some(0));
    let output = dir.run_with_env(&["--locked", "greet"], "GREETER_OPEN_EXIT", "1");
    assert_eq!(stderr(&output), expected);
    assert_eq!(output.status.code(), Some(4));
    // Without either, the same folder succeeds.
    assert_eq!(dir.run(&["--locked", "greet"]).status.code(), Some(0));
}

/// The probe's process is the plugin's: nothing it writes is trusted. One
/// that answers what is not a report and stays, or floods its output, is
/// killed at its deadline; the host reads at most a report's worth of it
/// and goes on.
#[cfg(unix)]
#[test]
fn a_probe_that_answers_garbage_or_floods_is_killed() {
    use std::time::{Duration, Instant};

    use dropin_host::{
        LoadErrorKind, Loader,
        probe::{Probe, ProbeFailure},
    };
    use greeter_interface::GreeterPlugin;

    // How each ends: `None` for killed at its deadline, else the words of
    // the refusal.
    for (script, refused) in [
        // A length over any report's, then silence.
        ("printf 'garbage!'; exec sleep 60", None),
        // A whole frame that is not a report, then silence: it is killed
        // at once, for it is no probe.
        (
            "printf '\\001\\000\\000\\000x'; exec sleep 60",
            Some("answered with a malformed message: expected an option tag (0 or 1), found 120"),
        ),
        // Output without end: lines, and one line without end.
        ("exec yes", None),
        ("exec cat /dev/zero", None),
    ] {
        let dir = PluginDir::with(&["hello"]);
        let watchdog = greeter_tests::deadline(greeter_tests::HANG, script);
        let started = Instant::now();
        let report = greeter_tests::trusted(
            Loader::<GreeterPlugin>::builder().dir(dir.path()).probe(
                Probe::command("/bin/sh")
                    .args(["-c", script])
                    .timeout(Duration::from_secs(1)),
            ),
        )
        .load()
        .unwrap();
        drop(watchdog);
        assert!(report.registry.is_empty(), "{script}");
        let [error] = &report.rejected[..] else {
            panic!("{script}: {:?}", report.rejected);
        };
        match (error.kind(), refused) {
            (
                LoadErrorKind::Probe {
                    how: ProbeFailure::Hung { timeout },
                },
                None,
            ) => {
                assert_eq!(*timeout, Duration::from_secs(1), "{script}");
            }
            (
                LoadErrorKind::Probe {
                    how: ProbeFailure::Unavailable { message },
                },
                Some(words),
            ) => {
                assert_eq!(message, words, "{script}");
            }
            _ => panic!("{script}: {error:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{script}");
    }
}

/// A child's environment variable alone never makes a run a child: set by
/// hand, with any value or input, the program says so and exits 2 instead
/// of serving (or of printing nothing and exiting 0, as it once did).
#[test]
fn a_child_variable_alone_never_makes_a_run_a_child() {
    use std::io::Write as _;
    use std::process::Stdio;

    let dir = PluginDir::with(&["hello", "not_a_plugin"]);
    let refused = |why: &str| {
        format!(
            "dropin: {why}: this process was not started by a dropin loader; unset the variable \
             to run the program normally\n"
        )
    };
    let nonce = "0123456789abcdef0123456789abcdef";
    for (variable, value, why) in [
        (
            "DROPIN_PROBE",
            "1",
            "DROPIN_PROBE is set, but not to a value a dropin loader gives its children",
        ),
        (
            "DROPIN_PROBE",
            nonce,
            "DROPIN_PROBE is set, but standard input is not the pipe a dropin loader gives its \
             children",
        ),
        (
            "DROPIN_ISOLATED",
            "greeter",
            "DROPIN_ISOLATED is set, but not to a value a dropin loader gives its children",
        ),
    ] {
        let output = dir.run_with_env(&["check"], variable, value);
        assert_eq!(stderr(&output), refused(why), "{variable}={value}");
        assert_eq!(stdout(&output), "");
        assert_eq!(output.status.code(), Some(2));
    }
    // A pipe, but not a host's message on it.
    for (variable, value, why) in [
        (
            "DROPIN_PROBE",
            nonce.to_owned(),
            "standard input does not start with a host's request",
        ),
        (
            "DROPIN_ISOLATED",
            format!("greeter:{nonce}"),
            "the first message on standard input does not carry its nonce",
        ),
    ] {
        let mut child = dir
            .command(&["check"])
            .env(variable, &value)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child
            .stdin
            .take()
            .unwrap()
            .write_all(b"\x05\x00\x00\x00hello");
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            stderr(&output),
            refused(&format!("{variable} is set, but {why}"))
        );
        assert_eq!(output.status.code(), Some(2));
    }
    // A variable no entry point serves: the program runs, and refuses to
    // load plugins as if it were its own child.
    let output = dir.run_with_env(&["greet"], "DROPIN_ISOLATED", "another:interface");
    assert_eq!(
        stderr(&output),
        "greeter-host: this process was started as a dropin loader's child (DROPIN_ISOLATED is \
         set) but went on to load plugins itself; expected \
         dropin_host::isolation::serve_if_requested::<YourPlugin>() for each interface first \
         thing in main (or, if the variable was set by hand, unset it)\n"
    );
    assert_eq!(output.status.code(), Some(2));
}

/// An application that forgets the child's entry point: each probe it
/// starts runs its `main`, which refuses to load plugins in a child, so no
/// second generation starts; every plugin is refused with the call to add.
#[test]
fn an_application_that_forgets_the_child_entry_point_starts_no_second_generation() {
    let dir = PluginDir::with(&["hello", "runs_at_open"]);
    let markers = PluginDir::new();
    let watchdog = greeter_tests::deadline(greeter_tests::HANG, "forgetful-app");
    let output = std::process::Command::new(artifacts().binary("forgetful-app"))
        .arg(dir.path())
        .env("GREETER_OPEN_MARKERS", markers.path())
        .output()
        .unwrap();
    drop(watchdog);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let expected: String = ["hello", "runs_at_open"]
        .iter()
        .map(|lib| {
            format!(
                "rejected: {}: the probe process that opened it first exited with status 2 \
                 (forgetful-app: this process was started as a dropin loader's child \
                 (DROPIN_PROBE is set) but went on to load plugins itself; expected \
                 dropin_host::probe::serve_if_requested() first thing in main (or, if the \
                 variable was set by hand, unset it))\n",
                dir.path().join(library_file_name(lib)).display()
            )
        })
        .collect();
    assert_eq!(stdout(&output), expected);
    // No process opened a plugin: the probes stopped before they could.
    assert_eq!(open_marker::openers(markers.path()), []);
}
