//! Isolated plugins: the same plugin files run in processes of their own,
//! answer exactly as in-process, and whatever kills a process (a crash, an
//! abort, an exit, a stack overflow, a hang) fails that plugin's call and
//! nothing else.

use std::{
    fs,
    process::Stdio,
    time::{Duration, Instant},
};

use dropin_host::{
    Loader,
    isolation::{Isolate, Recovery},
};
use greeter_interface::GreeterPlugin;
use greeter_tests::{PluginDir, artifacts, stderr, stdout};

#[test]
fn the_example_plugins_greet_identically_isolated() {
    let dir = PluginDir::with(&["hello", "hellohello", "counter"]);
    let in_process = dir.run(&["greet"]);
    let isolated = dir.run(&["--isolate", "greet"]);
    assert_eq!(
        stdout(&isolated),
        "counter: Hello, visitor #1!\nhello: Hello!\nhellohello: Hello!Hello!!\n"
    );
    assert_eq!(stdout(&isolated), stdout(&in_process));
    assert_eq!(stderr(&isolated), "");
    assert_eq!(isolated.status.code(), Some(0));
    // A library that is not a plugin is refused as such, isolated or not,
    // without a process started for it.
    dir.add("not_a_plugin");
    let isolated = dir.run(&["--isolate", "list"]);
    let in_process = dir.run(&["list"]);
    assert_eq!(
        stdout(&isolated),
        stdout(&in_process).replace("accepted", "isolated")
    );
    assert!(
        stdout(&isolated)
            .contains("not a plugin: expected the description a dropin plugin exports"),
        "{}",
        stdout(&isolated)
    );
    // By name, and through `greet_to`.
    let output = dir.run(&[
        "--isolate=hello",
        "greet",
        "--to",
        "Ada",
        "hello",
        "counter",
    ]);
    assert_eq!(
        stdout(&output),
        "hello: Hello, Ada!\ncounter: Ada, Hello, visitor #1!\n"
    );
}

#[test]
fn the_library_api_isolates_by_rule_and_the_handle_is_the_same() {
    let dir = PluginDir::with(&["hello", "counter"]);
    let report = greeter_tests::trusted(
        dir.probed_loader()
            .isolate(Isolate::Plugins(vec!["counter".to_owned()])),
    )
    .load()
    .unwrap();
    let counter = report.registry.get("counter").unwrap();
    let hello = report.registry.get("hello").unwrap();
    assert!(counter.is_isolated() && !hello.is_isolated());
    assert_eq!(counter.greet().unwrap(), "Hello, visitor #1!");
    assert_eq!(counter.greet().unwrap(), "Hello, visitor #2!");
    assert_eq!(counter.greet_to("Ada").unwrap(), "Ada, Hello, visitor #3!");
    assert_eq!(hello.greet().unwrap(), "Hello!");

    // Without a probe, whose program runs isolated plugins, nothing loads.
    let error = Loader::<GreeterPlugin>::builder()
        .dir(dir.path())
        .isolate(Isolate::All)
        .build_isolated()
        .load()
        .unwrap_err();
    assert!(matches!(error, dropin_host::LoaderError::NoProbe));
}

#[test]
fn a_plugin_that_kills_its_process_fails_its_call_and_the_host_carries_on() {
    let dir = PluginDir::with(&["hello", "runs_at_open"]);
    for (mode, how) in [
        ("segv", "was killed by signal 11 (SIGSEGV)"),
        ("abort", "was killed by signal 6 (SIGABRT)"),
        ("exit", "exited with status 3"),
        ("overflow", "was killed by signal 6 (SIGABRT)"),
        // Its pipes closed, as an ending process's are: not waited for.
        (
            "close-pipes",
            "closed its pipe to the host but had not ended 1s later, and was killed",
        ),
    ] {
        assert_eq!(
            fails_alone_isolated(&dir, mode),
            format!("greeter-host: plugin 'runs-at-open' crashed: its process {how}\n"),
            "{mode}"
        );
    }
}

/// `greeter-host --isolate greet` of `runs-at-open`, greeting as `mode`
/// says, and `hello`: `hello` greets, the command fails; what it wrote to
/// standard error.
fn fails_alone_isolated(dir: &PluginDir, mode: &str) -> String {
    let output = dir
        .command(&["--isolate", "greet", "runs-at-open", "hello"])
        .env("GREETER_GREET", mode)
        .output()
        .unwrap();
    assert_eq!(stdout(&output), "hello: Hello!\n", "{mode}");
    assert_eq!(output.status.code(), Some(1), "{mode}");
    stderr(&output)
}

#[test]
fn a_plugin_that_never_answers_times_out_and_its_process_is_killed() {
    let dir = PluginDir::with(&["hello", "runs_at_open"]);
    let greeting = greeter_tests::deadline(greeter_tests::HANG, "greet with a 500 ms call timeout");
    let output = dir
        .command(&[
            "--isolate",
            "--call-timeout",
            "500ms",
            "greet",
            "runs-at-open",
            "hello",
        ])
        .env("GREETER_GREET", "hang")
        .output()
        .unwrap();
    drop(greeting);
    assert_eq!(stdout(&output), "hello: Hello!\n");
    assert_eq!(
        stderr(&output),
        "greeter-host: plugin 'runs-at-open' timed out: its process did not answer within \
         500ms and was killed\n"
    );
    assert_eq!(output.status.code(), Some(1));

    // A plugin's own timeout, from plugins.toml, wins over the default.
    dir.write(
        "plugins.toml",
        b"isolate = true\n\n[call_timeout]\nruns-at-open = \"300ms\"\n",
    );
    let output = dir
        .command(&["greet", "runs-at-open", "hello"])
        .env("GREETER_GREET", "hang")
        .output()
        .unwrap();
    assert_eq!(stdout(&output), "hello: Hello!\n");
    assert_eq!(
        stderr(&output),
        "greeter-host: plugin 'runs-at-open' timed out: its process did not answer within \
         300ms and was killed\n"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn a_crashed_plugin_stays_failed_and_says_why() {
    let dir = PluginDir::with(&["runs_at_open"]);
    // The same plugin named twice: called twice.
    let output = dir
        .command(&["--isolate", "greet", "runs-at-open", "runs-at-open"])
        .env("GREETER_GREET", "segv")
        .output()
        .unwrap();
    assert_eq!(
        stderr(&output),
        "greeter-host: plugin 'runs-at-open' crashed: its process was killed by signal 11 \
         (SIGSEGV)\n\
         greeter-host: plugin 'runs-at-open' crashed: its process ended earlier (was killed by \
         signal 11 (SIGSEGV))\n"
    );
    assert_eq!(output.status.code(), Some(1));
}

/// `failure()` says why an isolated plugin will not answer again: at once
/// without restarts, after its last process crashed with them, and never
/// while a restart is left.
#[test]
fn an_isolated_plugins_failure_says_why_once_it_is_not_restarted() {
    let dir = PluginDir::with(&["runs_at_open"]);
    for attempts in [0, 2] {
        let recovery = match attempts {
            0 => Recovery::Disable,
            attempts => Recovery::Restart {
                attempts,
                backoff: Duration::ZERO,
            },
        };
        let report = dir
            .probed_loader()
            .isolation_recovery(recovery)
            .config("runs-at-open", "greet = \"segv\"")
            .build_isolated()
            .load()
            .unwrap();
        let plugin = report.registry.get("runs-at-open").unwrap();
        assert_eq!(plugin.failure(), None);
        for restart in 0..attempts {
            let error = plugin.greet().unwrap_err();
            assert_eq!(error.kind(), dropin::CallErrorKind::Crashed, "{error}");
            assert_eq!(
                plugin.failure(),
                None,
                "restart {restart} of {attempts} is left"
            );
        }
        let error = plugin.greet().unwrap_err();
        assert_eq!(error.kind(), dropin::CallErrorKind::Crashed, "{error}");
        assert_eq!(
            plugin.failure(),
            Some("its process was killed by signal 11 (SIGSEGV)"),
            "{attempts} restarts"
        );
        // What the application disables it for later does not replace it.
        plugin.disable("disabled by the test");
        assert_eq!(
            plugin.failure(),
            Some("its process was killed by signal 11 (SIGSEGV)")
        );
    }
}

/// A process that ends between calls (here killed from outside, as the
/// kernel's out-of-memory killer would) shows in `failure()` before any
/// call finds out.
#[test]
fn an_isolated_plugins_failure_shows_a_process_that_ended_between_calls() {
    let dir = PluginDir::with(&["hello"]);
    let report = dir.probed_loader().build_isolated().load().unwrap();
    let plugin = report.registry.get("hello").unwrap();
    assert_eq!(plugin.greet().unwrap(), "Hello!");
    assert_eq!(plugin.failure(), None);
    greeter_tests::kill(plugin.core().process_id().expect("running"));
    let started = Instant::now();
    while plugin.failure().is_none() && started.elapsed() < greeter_tests::HANG {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        plugin.failure(),
        Some("its process was killed by signal 9 (SIGKILL)")
    );
    assert_eq!(plugin.core().process_id(), None);
    let error = plugin.greet().unwrap_err();
    assert_eq!(
        error.to_string(),
        "plugin 'hello' crashed: its process ended earlier (was killed by signal 9 (SIGKILL))"
    );
}

#[test]
fn a_crashed_plugin_is_restarted_when_asked_and_within_the_limit() {
    let dir = PluginDir::with(&["runs_at_open"]);
    let markers = PluginDir::new();
    let marker = markers.path().join("crashed");
    let run = |restarts: &str| {
        let _ = fs::remove_file(&marker);
        dir.command(&[
            "--isolate",
            "--restarts",
            restarts,
            "greet",
            "runs-at-open",
            "runs-at-open",
        ])
        .env("GREETER_GREET", "segv-once")
        .env("GREETER_GREET_MARKER", &marker)
        .output()
        .unwrap()
    };
    // The failed call fails; the next one runs in a new process.
    let output = run("1");
    assert_eq!(
        stdout(&output),
        "runs-at-open: Hello from a library with a constructor!\n"
    );
    let log = stderr(&output);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines[0],
        "greeter-host: plugin 'runs-at-open' crashed: its process was killed by signal 11 \
         (SIGSEGV)"
    );
    // The restart is logged at `warn`, under the plugin's target.
    assert!(
        lines.len() == 2
            && lines[1]
                .ends_with(" WARN  plugin::runs-at-open] its process was restarted (1 of 1)"),
        "{log}"
    );
    // Without restarts it stays failed.
    let output = run("0");
    assert_eq!(stdout(&output), "");
    assert!(
        stderr(&output).ends_with(
            "greeter-host: plugin 'runs-at-open' crashed: its process ended earlier (was killed \
             by signal 11 (SIGSEGV)); not restarted: 0 restarts already\n"
        ),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_confined_plugin_has_no_network_and_no_new_privileges() {
    let dir = PluginDir::with(&["runs_at_open"]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let run = |args: &[&str], mode: &str| {
        dir.command(args)
            .env("GREETER_GREET", mode)
            .env("GREETER_NET_PORT", &port)
            .output()
            .unwrap()
    };
    // Isolated but not confined: the network is there.
    let output = run(&["--isolate", "greet"], "net");
    assert_eq!(
        stdout(&output),
        "runs-at-open: connected; NoNewPrivs: 0\n",
        "{}",
        stderr(&output)
    );
    let output = run(&["--isolate", "--confine", "greet"], "net");
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        "greeter-host: plugin 'runs-at-open' failed: cannot connect: Network is unreachable \
         (os error 101)\n"
    );
    let output = run(&["--isolate", "--confine", "greet"], "privs");
    assert_eq!(stdout(&output), "runs-at-open: NoNewPrivs: 1\n");
}

/// Confined, a plugin's process keeps no capability, as root as much as
/// as anyone: it runs in a user namespace of its own, its bounding set is
/// empty, so it can neither undo its read-only mounts nor rejoin the
/// host's network. The control: isolated without confinement, a root host's
/// plugin keeps its capabilities.
#[test]
fn a_confined_plugin_keeps_no_capability_as_root_or_as_anyone() {
    let dir = PluginDir::with(&["runs_at_open"]);
    let run = |args: &[&str]| {
        dir.command(args)
            .env("GREETER_GREET", "caps")
            .output()
            .unwrap()
    };
    let output = run(&["--isolate", "--confine", "greet"]);
    assert_eq!(
        stdout(&output),
        "runs-at-open: CapPrm: 0000000000000000; CapEff: 0000000000000000; CapBnd: \
         0000000000000000; CapAmb: 0000000000000000; own user namespace: true\n",
        "{}",
        stderr(&output)
    );
    let root = std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self").unwrap()) == 0;
    let output = run(&["--isolate", "greet"]);
    if root {
        assert!(
            !stdout(&output).contains("CapEff: 0000000000000000"),
            "{}",
            stdout(&output)
        );
    }
}

/// Confined, a plugin reaches no other local service or process: a Unix
/// socket on the file system, an abstract one, a signal to a process
/// outside its own, tracing that process, its `/proc` files and a namespace
/// of its own are each tried from inside a real plugin and denied, and so
/// are the ways around them an attack pass found: a socket pair aimed at a
/// path, a socket made through io_uring, tracing process 1 of its PID
/// namespace or writing the memory of the processes waiting above its own
/// (to keep its processes alive after its host), the host's
/// System V message queues, writing to a device node, a virtual-machine
/// socket. The control: isolated without confinement, the same plugin
/// reaches the sockets, the queue and the device (and, as root, the `/proc`
/// files, process 1 and the waiting processes).
#[cfg(target_os = "linux")]
#[test]
fn a_confined_plugin_reaches_no_local_service_or_process() {
    use std::os::unix::net::{UnixDatagram, UnixListener};

    let dir = PluginDir::with(&["runs_at_open"]);
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("service.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let datagram_path = sockets.path().join("datagram.sock");
    let datagram = UnixDatagram::bind(&datagram_path).unwrap();
    // Anyone may connect, as to a real local service.
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(sockets.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&socket, fs::Permissions::from_mode(0o777)).unwrap();
        fs::set_permissions(&datagram_path, fs::Permissions::from_mode(0o777)).unwrap();
    }
    listener.set_nonblocking(true).unwrap();
    datagram.set_nonblocking(true).unwrap();
    let abstract_name = format!("dropin-test-{}", std::process::id());
    let abstract_listener = {
        use std::os::linux::net::SocketAddrExt;
        let address = std::os::unix::net::SocketAddr::from_abstract_name(&abstract_name).unwrap();
        UnixListener::bind_addr(&address).unwrap()
    };
    abstract_listener.set_nonblocking(true).unwrap();
    // A System V message queue anyone may use, removed when the test ends.
    struct Queue(i32);
    impl Drop for Queue {
        fn drop(&mut self) {
            // SAFETY: removes the queue this test made.
            unsafe { libc::msgctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
        }
    }
    let key = 0x4452_0000 | (std::process::id() & 0xffff) as libc::key_t;
    // SAFETY: makes a queue; its id is checked.
    let _queue = Queue(unsafe { libc::msgget(key, libc::IPC_CREAT | 0o666) });
    assert!(_queue.0 >= 0, "{}", std::io::Error::last_os_error());
    let run = |args: &[&str]| {
        dir.command(args)
            .env("GREETER_GREET", "reach")
            .env("GREETER_SOCKET", &socket)
            .env("GREETER_DATAGRAM_SOCKET", &datagram_path)
            .env("GREETER_ABSTRACT_SOCKET", &abstract_name)
            .env("GREETER_SIGNAL_PID", std::process::id().to_string())
            .env("GREETER_QUEUE_KEY", key.to_string())
            .output()
            .unwrap()
    };
    let output = run(&["--isolate", "--confine", "greet"]);
    assert_eq!(
        stdout(&output),
        "runs-at-open: socket denied, abstract socket denied, signal denied, ptrace denied, \
         proc denied, namespace denied, socket pair denied, io_uring denied, process 1 denied, \
         waiting processes denied, queue denied, device denied, vsock denied\n",
        "{}",
        stderr(&output)
    );
    assert!(listener.accept().is_err(), "the confined plugin connected");
    assert!(
        abstract_listener.accept().is_err(),
        "the confined plugin connected"
    );
    assert!(
        datagram.recv(&mut [0; 8]).is_err(),
        "the confined plugin sent a datagram"
    );
    // Without confinement the sockets, the queue and the device are
    // reached, and as root the `/proc` files and process 1 too (another
    // user's unconfined plugin makes its PID namespace in a user namespace
    // of its own, from which the kernel guards them, and process 1 is not
    // dumpable); a signal and tracing are not reached even then: no process
    // outside the plugin's PID namespace has a number in it. io_uring and
    // vsock depend on the machine.
    let root = std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self").unwrap()) == 0;
    let output = run(&["--isolate", "greet"]);
    let text = stdout(&output);
    let verdicts: Vec<(&str, &str)> = text
        .trim_end()
        .strip_prefix("runs-at-open: ")
        .unwrap_or_else(|| panic!("{text}{}", stderr(&output)))
        .split(", ")
        .filter_map(|item| item.rsplit_once(' '))
        .filter(|(what, _)| !["io_uring", "vsock"].contains(what))
        .collect();
    let by_root = if root { "reached" } else { "denied" };
    assert_eq!(
        verdicts,
        [
            ("socket", "reached"),
            ("abstract socket", "reached"),
            ("signal", "denied"),
            ("ptrace", "denied"),
            ("proc", by_root),
            ("namespace", "reached"),
            ("socket pair", "reached"),
            ("process 1", by_root),
            ("waiting processes", by_root),
            ("queue", "reached"),
            ("device", "reached"),
        ]
    );
}

/// A file no lock file approves is opened by a probe first: when the loader
/// confines its plugins, the probe is confined too, so the file's
/// constructors never run unconfined. The constructor of `runs-at-open`
/// leaves a marker wherever it can write.
#[test]
fn a_confining_hosts_probe_is_confined_too() {
    let dir = PluginDir::with(&["runs_at_open"]);
    let markers = PluginDir::new();
    let run = |args: &[&str]| {
        dir.command(args)
            .env("GREETER_OPEN_MARKERS", markers.path())
            .output()
            .unwrap()
    };
    let output = run(&["--isolate", "--confine", "greet"]);
    assert_eq!(
        stdout(&output),
        "runs-at-open: Hello from a library with a constructor!\n",
        "{}",
        stderr(&output)
    );
    assert_eq!(open_marker::openers(markers.path()), []);
    // The control: unconfined, the probe and the plugin's process leave
    // markers (named by process number: both are number 2 of their own PID
    // namespace, so one name).
    let output = run(&["--isolate", "greet"]);
    assert_eq!(
        stdout(&output),
        "runs-at-open: Hello from a library with a constructor!\n"
    );
    assert_ne!(open_marker::openers(markers.path()), []);
}

/// How many `sleep <seconds>` processes run, once that number has held
/// still at `want`, or when 10 seconds have passed.
#[cfg(target_os = "linux")]
fn sleeping(seconds: &str, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = sleeping_now(seconds);
        if count == want || Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `sleep` length no other test uses: it names the test's descendants.
#[cfg(target_os = "linux")]
fn unique_sleep(salt: u32) -> String {
    (100_000 + (std::process::id() * 7 + salt) % 800_000).to_string()
}

/// An isolated plugin's descendants end with its host: a plugin that
/// leaves a `sleep` behind (a double fork) leaves nothing once its host has
/// exited; a double fork and a bounded fork bomb (127 processes, confined
/// or not) leave nothing once it was killed with `SIGKILL`. The control: run in the
/// host's own process, the same plugin's `sleep` outlives the host.
#[cfg(target_os = "linux")]
#[test]
fn an_isolated_plugins_descendants_end_with_it() {
    use std::io::{BufRead, BufReader};

    let dir = PluginDir::with(&["runs_at_open"]);
    let seconds = unique_sleep(1);
    let command = |mode: &str, seconds: &str, args: &[&str]| {
        let mut command = dir.command(args);
        command
            .env("GREETER_GREET", mode)
            .env("GREETER_SLEEP", seconds);
        command
    };
    // The host exits.
    let output = command("descendant", &seconds, &["--isolate", "greet"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&output),
        "runs-at-open: Hello from a library with a constructor!\n",
        "{}",
        stderr(&output)
    );
    assert_eq!(
        sleeping(&seconds, 0),
        0,
        "a descendant outlived its host's exit"
    );
    // The host is killed, once the descendants run, confined or not.
    for (mode, count, salt, confine) in [
        ("descendant", 1, 2, false),
        ("fork-bomb", 127, 3, false),
        ("fork-bomb", 127, 6, true),
    ] {
        let seconds = unique_sleep(salt);
        let args: &[&str] = if confine {
            &["--isolate", "--confine", "watch"]
        } else {
            &["--isolate", "watch"]
        };
        let mut host = command(mode, &seconds, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let greeting = greeter_tests::deadline(greeter_tests::HANG, "watch's first greeting");
        BufReader::new(host.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        drop(greeting);
        assert_eq!(
            line,
            "runs-at-open: Hello from a library with a constructor!\n"
        );
        assert_eq!(sleeping(&seconds, count), count, "{mode} {args:?}");
        host.kill().unwrap();
        host.wait().unwrap();
        assert_eq!(
            sleeping(&seconds, 0),
            0,
            "{mode} {args:?}: a descendant outlived its host's SIGKILL"
        );
    }
    // The control: in the host's process, the `sleep` outlives the host.
    let output = command("descendant", &seconds, &["greet"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(sleeping(&seconds, 1), 1, "the control left no sleep");
    let _ = std::process::Command::new("pkill")
        .args(["-f", &format!("^sleep {seconds}$")])
        .status();
}

/// While the host lives on, an isolated plugin's process ends with all it
/// started: a bounded fork bomb (127 processes, confined or not) when the
/// plugin's next call times out, a double fork when the application disables the plugin (as a
/// panic does). The control: the processes run until then.
#[cfg(target_os = "linux")]
#[test]
fn an_isolated_plugins_descendants_end_with_its_process_while_the_host_lives() {
    let dir = PluginDir::with(&["runs_at_open"]);
    for (mode, count, salt, confine) in [
        ("fork-bomb", 127, 4, false),
        ("descendant", 1, 5, false),
        ("fork-bomb", 127, 7, true),
    ] {
        let seconds = unique_sleep(salt);
        let report = dir
            .probed_loader()
            .isolate(Isolate::All)
            .confine_isolated(confine)
            .call_timeout(Duration::from_secs(2))
            .config(
                "runs-at-open",
                format!("greet = \"{mode}\"\nsleep = \"{seconds}\""),
            )
            .build_isolated()
            .load()
            .unwrap();
        let plugin = report.registry.get("runs-at-open").unwrap();
        assert_eq!(
            plugin.greet().unwrap(),
            "Hello from a library with a constructor!"
        );
        assert_eq!(sleeping(&seconds, count), count, "{mode}");
        if mode == "fork-bomb" {
            let error = plugin.greet().unwrap_err();
            assert_eq!(error.kind(), dropin::CallErrorKind::TimedOut, "{error}");
        } else {
            plugin.disable("disabled by the test");
            let error = plugin.greet().unwrap_err();
            assert_eq!(
                error.to_string(),
                "plugin 'runs-at-open' is disabled after an earlier panic (disabled by the test)"
            );
        }
        assert_eq!(plugin.core().process_id(), None, "{mode}");
        assert_eq!(
            sleeping(&seconds, 0),
            0,
            "{mode}: a descendant outlived its plugin's process"
        );
        drop(report);
    }
}

/// How many `sleep {seconds}` run now.
fn sleeping_now(seconds: &str) -> usize {
    let found = std::process::Command::new("pgrep")
        .args(["-f", &format!("^sleep {seconds}$")])
        .output()
        .unwrap();
    stdout(&found).lines().count()
}

/// How many `sleep {seconds}` run once their number stops changing.
fn settled_sleeping(seconds: &str) -> usize {
    let started = Instant::now();
    let mut last = usize::MAX;
    let mut since = Instant::now();
    loop {
        let count = sleeping_now(seconds);
        if count != last {
            (last, since) = (count, Instant::now());
        } else if since.elapsed() > Duration::from_secs(1) {
            return count;
        }
        assert!(
            started.elapsed() < greeter_tests::HANG,
            "the number of sleeps never settled"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fork bomb (127 processes without a limit) stays within the process
/// limit, given in code or in `plugins.toml`, confined or not: past it the
/// plugin's forks fail, and the host and the other plugin carry on; its
/// processes end with the plugin's. The limit counts the plugin's processes
/// only: the test's own 64 threads, of the same user, do not keep it from
/// starting. A host that runs as root refuses the plugins instead: the
/// kernel never counts root's processes.
#[cfg(target_os = "linux")]
#[test]
fn a_fork_bomb_stays_within_the_process_limit() {
    use std::os::unix::fs::MetadataExt;
    let root = fs::metadata("/proc/self").unwrap().uid() == 0;
    let dir = PluginDir::with(&["hello", "runs_at_open"]);
    let (park, parked) = std::sync::mpsc::channel::<()>();
    let parked = std::sync::Arc::new(std::sync::Mutex::new(parked));
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let parked = std::sync::Arc::clone(&parked);
            std::thread::spawn(move || {
                let _ = parked.lock().unwrap().recv();
            })
        })
        .collect();
    for (confine, salt) in [(false, 11), (true, 12)] {
        let seconds = unique_sleep(salt);
        let mut builder = dir.probed_loader().confine_isolated(confine);
        if confine {
            dir.write("plugins.toml", b"process_limit = 48\n");
        } else {
            builder = builder.without_config_file().isolation_process_limit(48);
        }
        let report = builder
            .config(
                "runs-at-open",
                format!("greet = \"fork-bomb\"\nsleep = \"{seconds}\""),
            )
            .build_isolated()
            .load()
            .unwrap();
        if root {
            assert_eq!(report.registry.iter().count(), 0);
            assert_eq!(report.rejected.len(), 2, "{:?}", report.rejected);
            for rejected in &report.rejected {
                assert!(
                    rejected.to_string().ends_with(
                        "a process limit cannot hold for a host that runs as root (the kernel \
                         never counts root's processes against it): refused rather than run \
                         without it"
                    ),
                    "{rejected}"
                );
            }
            continue;
        }
        let plugin = report.registry.get("runs-at-open").unwrap();
        assert_eq!(
            plugin.greet().unwrap(),
            "Hello from a library with a constructor!"
        );
        let count = settled_sleeping(&seconds);
        assert!(0 < count && count < 48, "{count} sleeps, confine {confine}");
        assert_eq!(
            report.registry.get("hello").unwrap().greet().unwrap(),
            "Hello!"
        );
        drop(report);
        assert_eq!(sleeping(&seconds, 0), 0, "confine {confine}");
    }
    drop(park);
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn a_confined_plugin_writes_nowhere() {
    let dir = PluginDir::with(&["runs_at_open"]);
    let target = PluginDir::new();
    let run = |args: &[&str]| {
        dir.command(args)
            .env("GREETER_GREET", "write")
            .env("GREETER_WRITE_DIR", target.path())
            .output()
            .unwrap()
    };
    let output = run(&["--isolate", "--confine", "greet"]);
    assert_eq!(
        stderr(&output),
        "greeter-host: plugin 'runs-at-open' failed: cannot write: Read-only file system (os \
         error 30)\n"
    );
    assert!(!target.path().join("written").exists());
    // The control: unconfined, the same plugin writes.
    let output = run(&["--isolate", "greet"]);
    assert_eq!(stdout(&output), "runs-at-open: wrote a file\n");
    assert!(target.path().join("written").exists());
}

/// Where the kernel refuses the namespaces, a confined plugin is refused,
/// never run unconfined: a host that can make no user namespace (here:
/// nested as deep as the kernel allows). Root without capabilities (as in
/// many containers) makes one as anyone may, and its plugin runs confined.
#[cfg(target_os = "linux")]
#[test]
fn a_plugin_the_kernel_will_not_confine_never_runs_unconfined() {
    use std::os::unix::fs::PermissionsExt;
    let dir = PluginDir::with(&["runs_at_open"]);
    // What it would write unconfined; both readable by another user.
    let target = PluginDir::new();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(target.path(), fs::Permissions::from_mode(0o777)).unwrap();
    // `/proc/self` belongs to the process's effective user.
    let root = std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self").unwrap()) == 0;
    let file = dir
        .path()
        .join(greeter_tests::library_file_name("runs_at_open"));
    let without_capabilities: &[&str] = if root {
        &["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
    } else {
        &[
            "unshare",
            "--user",
            "--map-root-user",
            "setpriv",
            "--bounding-set=-all",
            "--inh-caps=-all",
        ]
    };
    // Each level makes one more nested user namespace while the kernel
    // allows it, then runs the rest of its arguments.
    const NEST: &str = "if unshare --user --map-current-user true 2>/dev/null; then exec unshare \
                        --user --map-current-user sh -c \"$0\" \"$0\" \"$@\"; else exec \"$@\"; fi";
    let mut without_namespaces: Vec<&str> = Vec::new();
    if root {
        without_namespaces.extend(["setpriv", "--reuid=4200", "--regid=4200", "--clear-groups"]);
    }
    without_namespaces.extend(["sh", "-c", NEST, NEST]);
    // Root without capabilities (as in many containers) still makes a user
    // namespace of its own, as anyone may: its plugin runs confined.
    let output = std::process::Command::new(without_capabilities[0])
        .args(&without_capabilities[1..])
        .arg(artifacts().host_binary())
        .arg("--plugins-dir")
        .arg(dir.path())
        .args(["--isolate", "--confine", "greet"])
        .env("GREETER_GREET", "write")
        .env("GREETER_WRITE_DIR", target.path())
        .output()
        .unwrap();
    assert_eq!(
        stderr(&output),
        "greeter-host: plugin 'runs-at-open' failed: cannot write: Read-only file system (os \
         error 30)\n"
    );
    assert!(!target.path().join("written").exists());
    // In the nested namespaces the folder's owner is unmapped: its owner is
    // not what this test is about.
    let output = std::process::Command::new(without_namespaces[0])
        .args(&without_namespaces[1..])
        .arg(artifacts().host_binary())
        .arg("--plugins-dir")
        .arg(dir.path())
        .arg("--allow-insecure-permissions")
        .args(["--isolate", "--confine", "greet"])
        .env("GREETER_GREET", "write")
        .env("GREETER_WRITE_DIR", target.path())
        .output()
        .unwrap();
    assert_eq!(stdout(&output), "");
    let message = stderr(&output);
    // The probe, confined as the plugins are, is the first process that
    // cannot be made.
    let prefix = format!(
        "greeter-host: rejected {}: the probe process that opened it first could not be run: ",
        file.display()
    );
    assert!(
        message.starts_with(&prefix) && message.ends_with(")\n") && message.lines().count() == 1,
        "{message}"
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(!target.path().join("written").exists());
}

#[test]
fn a_plugin_over_its_memory_limit_fails_its_call_not_the_host() {
    let dir = PluginDir::with(&["hello", "runs_at_open"]);
    let output = dir
        .command(&[
            "--isolate",
            "--memory-limit",
            "256M",
            "greet",
            "runs-at-open",
            "hello",
        ])
        .env("GREETER_GREET", "alloc")
        .output()
        .unwrap();
    assert_eq!(stdout(&output), "hello: Hello!\n");
    let log = stderr(&output);
    assert!(
        log.ends_with(
            "greeter-host: plugin 'runs-at-open' crashed: its process was killed by signal 6 \
             (SIGABRT)\n"
        ),
        "{log}"
    );
    // Without the limit the same call succeeds.
    let output = dir
        .command(&["--isolate", "greet", "runs-at-open"])
        .env("GREETER_GREET", "alloc")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&output),
        "runs-at-open: allocated 1073741824 bytes\n"
    );
}

#[test]
fn plugins_toml_chooses_which_plugins_run_isolated() {
    let dir = PluginDir::with(&["hello", "counter"]);
    dir.write(
        "plugins.toml",
        b"isolate = [\"counter\"]\n\n[plugin.counter]\nstart = 41\n",
    );
    let output = dir.run(&["list", "--format", "json"]);
    let entries: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let isolated: Vec<(&str, bool)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["name"].as_str().unwrap(),
                entry["isolated"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(isolated, [("counter", true), ("hello", false)]);
    let listed = stdout(&dir.run(&["list"]));
    let modes: Vec<&str> = listed
        .lines()
        .map(|line| line.split_whitespace().nth(3).unwrap())
        .collect();
    assert_eq!(modes, ["isolated", "accepted"]);
    // The isolated plugin gets its configuration too.
    let output = dir.run(&["greet", "counter"]);
    assert_eq!(stdout(&output), "counter: Hello, visitor #42!\n");
}

#[test]
fn a_timed_out_plugins_process_is_gone_and_the_others_keep_answering() {
    let dir = PluginDir::with(&["hello", "runs_at_open"]);
    let report = dir
        .probed_loader()
        .isolate(Isolate::All)
        // Long enough for `hello` to answer on a busy machine.
        .call_timeout(Duration::from_secs(2))
        .config("runs-at-open", "greet = \"hang\"")
        .build_isolated()
        .load()
        .unwrap();
    let hanging = report.registry.get("runs-at-open").unwrap();
    let hello = report.registry.get("hello").unwrap();
    let pid = hanging.core().process_id().expect("running");
    assert!(fs::metadata(format!("/proc/{pid}")).is_ok());
    // A second call, in flight when the first one times out, did not time
    // out: its process was killed under it. (Which is which depends on
    // which thread calls first.)
    let (timed_out, in_flight) = std::thread::scope(|scope| {
        let first = scope.spawn(|| hanging.greet().unwrap_err());
        std::thread::sleep(Duration::from_secs(1));
        let second = hanging.greet().unwrap_err();
        let mut errors = [first.join().unwrap(), second];
        errors.sort_by_key(|error| error.kind() != dropin::CallErrorKind::TimedOut);
        let [timed_out, in_flight] = errors;
        (timed_out, in_flight)
    });
    assert_eq!(timed_out.kind(), dropin::CallErrorKind::TimedOut);
    assert_eq!(
        timed_out.to_string(),
        "plugin 'runs-at-open' timed out: its process did not answer within 2s and was killed"
    );
    assert_eq!(in_flight.kind(), dropin::CallErrorKind::Crashed);
    assert_eq!(
        in_flight.to_string(),
        "plugin 'runs-at-open' crashed: its process was killed: another call did not answer \
         within 2s"
    );
    assert_eq!(hanging.core().process_id(), None);
    // Killed and reaped: no process, not even a zombie, is left.
    assert!(
        fs::metadata(format!("/proc/{pid}")).is_err(),
        "{pid} remains"
    );
    assert_eq!(hello.greet().unwrap(), "Hello!");
    // A later call does not wait, nor time out: it fails at once, as after
    // a crash, saying how the process ended.
    let later = hanging.greet().unwrap_err();
    assert_eq!(later.kind(), dropin::CallErrorKind::Crashed);
    assert_eq!(
        later.to_string(),
        "plugin 'runs-at-open' crashed: its process ended earlier (did not answer within 2s and \
         was killed)"
    );
}

/// An `init` that never returns holds up the load for the start timeout,
/// given in code or in `plugins.toml`, not for ever: then its process is
/// killed and the plugin rejected, and the others load.
#[test]
fn an_isolated_plugin_that_never_starts_is_rejected_after_its_start_timeout() {
    let dir = PluginDir::with(&["hello", "runs_at_open"]);
    // Long enough for `hello` to start on a busy machine.
    fs::write(dir.path().join("plugins.toml"), "start_timeout = \"3s\"\n").unwrap();
    for in_code in [true, false] {
        let mut builder = dir
            .probed_loader()
            .config("runs-at-open", "init = \"hang\"");
        if in_code {
            // Wins over the file's.
            builder = builder.start_timeout(Duration::from_millis(2500));
        }
        let started = Instant::now();
        let report = builder.build_isolated().load().unwrap();
        assert!(started.elapsed() < Duration::from_secs(25), "{in_code}");
        let names: Vec<&str> = report.registry.iter().map(|plugin| plugin.name()).collect();
        assert_eq!(names, ["hello"], "{in_code}");
        let [rejected] = &report.rejected[..] else {
            panic!("{:?}", report.rejected);
        };
        assert_eq!(
            rejected.to_string(),
            format!(
                "{}: not loaded in its own process: its process did not start its plugin \
                 within {} and was killed",
                dir.path().join("libruns_at_open.so").display(),
                if in_code { "2.5s" } else { "3s" }
            )
        );
    }
}

/// greeter-host's `--start-timeout` and `--process-limit`, as the
/// library's settings: a start that never ends is rejected after it, and
/// a limit below what a process needs for itself is a usage error.
#[test]
fn greeter_host_takes_the_start_timeout_and_the_process_limit() {
    let dir = PluginDir::with(&["hello", "runs_at_open"]);
    dir.write("plugins.toml", b"[plugin.runs-at-open]\ninit = \"hang\"\n");
    let output = dir.run(&["--isolate", "--start-timeout", "1s", "greet"]);
    assert_eq!(stdout(&output), "hello: Hello!\n");
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: rejected {}: not loaded in its own process: its process did not start \
             its plugin within 1s and was killed\n",
            dir.path().join("libruns_at_open.so").display()
        )
    );
    assert_eq!(output.status.code(), Some(1));
    let output = dir.run(&["--isolate", "--process-limit", "8", "greet"]);
    assert!(
        stderr(&output).starts_with(
            "error: invalid value '8' for '--process-limit <N>': expected a number of processes \
             and threads, 32 or more\n"
        ),
        "{}",
        stderr(&output)
    );
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn a_plugin_flooding_its_output_neither_blocks_nor_bloats_the_host() {
    let dir = PluginDir::with(&["runs_at_open"]);
    // Three calls, each writing 1 MiB of invalid UTF-8 without a line end:
    // more than a pipe holds, so a host that stopped reading would make the
    // plugin block, and the calls time out.
    let output = dir
        .command(&[
            "--isolate",
            "--call-timeout",
            "5s",
            "greet",
            "runs-at-open",
            "runs-at-open",
            "runs-at-open",
        ])
        .env("GREETER_GREET", "flood")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&output),
        "runs-at-open: Hello from a library with a constructor!\n".repeat(3)
    );
    assert_eq!(output.status.code(), Some(0));
}

/// The processes whose parent is `parent`, from `/proc`.
fn children_of(parent: u32) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // `pid (comm) state ppid ...`: the command may hold spaces.
                stat.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split(' ').nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

#[test]
fn what_an_isolated_plugin_prints_or_logs_reaches_the_host_log_not_its_output() {
    let dir = PluginDir::with(&["runs_at_open"]);
    let output = dir
        .command(&["--isolate", "greet"])
        .env("GREETER_GREET", "print")
        .env(
            "RUST_LOG",
            "plugin::runs_at_open=info,plugin::runs-at-open=info",
        )
        .output()
        .unwrap();
    assert_eq!(
        stdout(&output),
        "runs-at-open: Hello from a library with a constructor!\n"
    );
    let log = stderr(&output);
    for line in [
        "printed by the plugin",
        "written to stderr by the plugin",
        "logged by the plugin",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("plugin::runs-at-open") && l.ends_with(line)),
            "{line:?} in {log}"
        );
    }
}

#[test]
fn an_isolated_process_dies_with_its_host_even_under_sigkill() {
    let dir = PluginDir::with(&["runs_at_open"]);
    // Locked, the file needs no probe: the host's only child is the
    // plugin's process (whose environment is not readable by its user, as
    // it is not dumpable).
    assert_eq!(dir.run(&["lock"]).status.code(), Some(0));
    let mut host = dir
        .command(&["--isolate", "greet"])
        .env("GREETER_GREET", "hang")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the isolated process.
    let deadline = Instant::now() + Duration::from_secs(20);
    let child = loop {
        let children = children_of(host.id());
        if let Some(&child) = children.first() {
            break child;
        }
        assert!(Instant::now() < deadline, "no isolated process appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    host.kill().unwrap();
    host.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::metadata(format!("/proc/{child}")).is_ok() {
        // A zombie reaped by init still shows briefly: its state says so.
        let state = fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        if state.contains(") Z ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the isolated process outlived its host"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Calls from several threads to one isolated plugin run at once in its
/// process: four calls that each take 300 ms end in far less than the
/// 1.2 s they would take one after another.
#[test]
fn calls_from_several_threads_to_one_isolated_plugin_run_at_once() {
    let dir = PluginDir::with(&["runs_at_open"]);
    let report = dir
        .probed_loader()
        .isolate(Isolate::All)
        .config("runs-at-open", "greet = \"nap\"")
        .build_isolated()
        .load()
        .unwrap();
    let plugin = report.registry.get("runs-at-open").unwrap();
    let start = Instant::now();
    std::thread::scope(|scope| {
        let calls: Vec<_> = (0..4).map(|_| scope.spawn(|| plugin.greet())).collect();
        for call in calls {
            assert_eq!(
                call.join().unwrap().unwrap(),
                "Hello from a library with a constructor!"
            );
        }
    });
    let took = start.elapsed();
    assert!(took < Duration::from_millis(900), "4 calls took {took:?}");
}

/// A plugin that writes over the memory its process shares with the host
/// for calls fails its own call: the host reads a turn it did not give, a
/// length past the buffer, or an empty chunk said to be followed by more
/// (which, answered for ever, would hold the call past its deadline), kills
/// the process, and carries on.
#[test]
fn a_plugin_writing_over_its_shared_memory_fails_its_own_call_and_nothing_else() {
    let dir = PluginDir::with(&["hello", "runs_at_open"]);
    for (mode, why) in [
        ("scribble", "a turn the host did not give"),
        ("overlong", "a length past its buffer"),
        ("endless", "a chunk short of its buffer before the last"),
    ] {
        assert_eq!(
            fails_alone_isolated(&dir, mode),
            format!(
                "greeter-host: plugin 'runs-at-open' crashed: its process broke the protocol \
                 of calls ({why}) and was killed\n"
            ),
            "{mode}"
        );
    }
}

/// The processor time of `pid` and every process under it, in clock ticks.
fn tree_ticks(pid: u32) -> u64 {
    let own = fs::read_to_string(format!("/proc/{pid}/stat")).map_or(0, |stat| {
        // Fields after `pid (comm) `: utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = rest.split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    });
    own + children_of(pid).into_iter().map(tree_ticks).sum::<u64>()
}

/// The processor ticks the calling thread used so far.
fn thread_ticks() -> u64 {
    let stat = fs::read_to_string("/proc/thread-self/stat").unwrap();
    let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A process that wakes its host again and again without answering keeps
/// the calling thread no busier than a poll every millisecond: the call
/// still times out, having used a sliver of the processor in its two
/// seconds.
#[cfg(target_os = "linux")]
#[test]
fn a_plugin_waking_its_host_without_answering_does_not_keep_it_busy() {
    let dir = PluginDir::with(&["runs_at_open"]);
    let report = dir
        .probed_loader()
        .call_timeout(Duration::from_secs(2))
        .config("runs-at-open", "greet = \"wake-spam\"")
        .build_isolated()
        .load()
        .unwrap();
    let plugin = report.registry.get("runs-at-open").unwrap();
    let before = thread_ticks();
    let error = plugin.greet().unwrap_err();
    let used = thread_ticks() - before;
    assert_eq!(error.kind(), dropin::CallErrorKind::TimedOut, "{error}");
    // 100 ticks a second: a twentieth of the call's two seconds at most
    // (measured: 2 ticks; 31 when the host slept on the turn each time).
    assert!(used < 10, "the calling thread used {used} ticks");
}

/// An isolated plugin's process that waits for calls uses no processor:
/// after a call, its threads spin for a fraction of a millisecond, then
/// sleep until the next.
#[test]
fn an_idle_isolated_plugins_process_uses_no_processor_time() {
    let dir = PluginDir::with(&["hello"]);
    let report = dir
        .probed_loader()
        .isolate(Isolate::All)
        .build_isolated()
        .load()
        .unwrap();
    let plugin = report.registry.get("hello").unwrap();
    for _ in 0..1000 {
        assert_eq!(plugin.greet().unwrap(), "Hello!");
    }
    let pid = plugin.core().process_id().expect("running");
    std::thread::sleep(Duration::from_millis(100));
    let before = tree_ticks(pid);
    std::thread::sleep(Duration::from_secs(10));
    let after = tree_ticks(pid);
    assert_eq!(after - before, 0, "ticks used while idle for 10 s");
    assert_eq!(plugin.greet().unwrap(), "Hello!");
}

/// Arguments and answers larger than the memory a call has in the shared
/// slot cross in chunks, from several threads at once.
#[test]
fn an_isolated_call_larger_than_its_slot_crosses_whole() {
    let dir = PluginDir::with(&["counter"]);
    let report = dir
        .probed_loader()
        .isolate(Isolate::All)
        .build_isolated()
        .load()
        .unwrap();
    let plugin = report.registry.get("counter").unwrap();
    std::thread::scope(|scope| {
        for thread in 0..3 {
            let plugin = &plugin;
            scope.spawn(move || {
                for len in [65_471, 65_472, 65_473, 1 << 20] {
                    let name: String = (0..len)
                        .map(|i| char::from(b'a' + ((i + thread) % 26) as u8))
                        .collect();
                    let answer = plugin.greet_to(&name).unwrap();
                    assert!(answer.starts_with(&format!("{name}, Hello, visitor #")));
                }
            });
        }
    });
}
