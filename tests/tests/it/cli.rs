use std::fs;

use greeter_tests::{PluginDir, artifacts, host_command, library_file_name, stderr, stdout};
use serde_json::Value;

/// A folder with the three example plugins and four broken files.
fn mixed_folder() -> PluginDir {
    let dir = PluginDir::with(&["hello", "hellohello", "counter", "not_a_plugin"]);
    dir.write(&library_file_name("empty"), b"");
    dir.write(&library_file_name("text"), b"this is not a library\n");
    let original = fs::read(artifacts().library("hello")).unwrap();
    dir.write(
        &library_file_name("truncated"),
        &original[..original.len() / 2],
    );
    dir
}

#[test]
fn greet_prints_one_line_per_plugin_and_exits_0() {
    let output = PluginDir::with(&["hello", "hellohello", "counter"]).run(&["greet"]);
    assert_eq!(
        stdout(&output),
        "counter: Hello, visitor #1!\nhello: Hello!\nhellohello: Hello!Hello!!\n"
    );
    assert_eq!(stderr(&output), "");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn greet_with_names_greets_only_those() {
    let dir = PluginDir::with(&["hello", "hellohello"]);
    let output = dir.run(&["greet", "hellohello"]);
    assert_eq!(stdout(&output), "hellohello: Hello!Hello!!\n");
    assert_eq!(output.status.code(), Some(0));

    let output = dir.run(&["greet", "hello", "nobody"]);
    assert_eq!(stdout(&output), "hello: Hello!\n");
    assert_eq!(
        stderr(&output),
        "greeter-host: no plugin named 'nobody' is loaded (loaded: hello, hellohello)\n"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn greet_on_a_folder_with_broken_files_still_greets_and_exits_1() {
    let output = mixed_folder().run(&["greet"]);
    assert_eq!(
        stdout(&output),
        "counter: Hello, visitor #1!\nhello: Hello!\nhellohello: Hello!Hello!!\n"
    );
    let stderr = stderr(&output);
    assert_eq!(stderr.lines().count(), 4, "{stderr}");
    assert!(
        stderr
            .lines()
            .all(|line| line.starts_with("greeter-host: rejected ")),
        "{stderr}"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn list_json_reports_every_file_with_the_documented_fields() {
    let dir = mixed_folder();
    let output = dir.run(&["list", "--format", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let entries: Vec<Value> = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    let summary: Vec<(String, String)> = entries
        .iter()
        .map(|entry| {
            let file = entry["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned();
            (file, entry["status"].as_str().unwrap().to_owned())
        })
        .collect();
    let expect = |lib: &str, status: &str| (library_file_name(lib), status.to_owned());
    assert_eq!(
        summary,
        [
            expect("counter", "accepted"),
            expect("empty", "rejected"),
            expect("hello", "accepted"),
            expect("hellohello", "accepted"),
            expect("not_a_plugin", "rejected"),
            expect("text", "rejected"),
            expect("truncated", "rejected"),
        ]
    );
    for entry in &entries {
        let object = entry.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "capabilities",
                "error",
                "interface_version",
                "isolated",
                "name",
                "path",
                "status",
                "version"
            ]
        );
        assert_eq!(entry["isolated"], false);
        let path = entry["path"].as_str().unwrap();
        assert!(path.starts_with(dir.path().to_str().unwrap()), "{path}");
    }
    let hello = entries.iter().find(|e| e["name"] == "hello").unwrap();
    assert_eq!(hello["version"], "1.0.0");
    assert_eq!(hello["interface_version"], "2.1.0");
    assert_eq!(hello["error"], Value::Null);
    assert_eq!(hello["capabilities"], serde_json::json!(["greet_to"]));
    let empty = &entries[1];
    assert_eq!(empty["name"], Value::Null);
    assert!(
        empty["error"]
            .as_str()
            .unwrap()
            .ends_with("not a loadable library: the file is empty"),
        "{empty}"
    );
}

#[test]
fn greet_json_adds_the_greeting_or_the_error() {
    let dir = PluginDir::with(&["hello", "panicky"]);
    dir.write(&library_file_name("empty"), b"");
    let output = dir.run(&["greet", "--format", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let entries: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(entries.len(), 3);
    let by_status = |name: &str| entries.iter().find(|e| e["name"] == name).unwrap();
    assert_eq!(by_status("hello")["greeting"], "Hello!");
    assert_eq!(by_status("hello")["status"], "loaded");
    assert_eq!(by_status("panicky")["greeting"], Value::Null);
    assert_eq!(by_status("panicky")["status"], "failed");
    assert_eq!(
        by_status("panicky")["error"],
        "plugin 'panicky' panicked at tests/fixtures/panicky/src/lib.rs:13:9: greet is broken on \
         purpose"
    );
    let empty = entries.iter().find(|e| e["status"] == "rejected").unwrap();
    assert_eq!(empty["greeting"], Value::Null);
}

#[test]
fn a_panicking_plugin_does_not_take_the_binary_down() {
    let output = PluginDir::with(&["panicky", "hello"]).run(&["greet"]);
    assert_eq!(stdout(&output), "hello: Hello!\n");
    // The panic's location is logged at warn, the default level; then the
    // command reports the failed greeting.
    let stderr = stderr(&output);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].ends_with(
            " WARN  plugin::panicky] panicked at tests/fixtures/panicky/src/lib.rs:13:9: \
             greet is broken on purpose; the plugin is disabled for the rest of this process"
        ),
        "{stderr}"
    );
    assert_eq!(
        lines[1],
        "greeter-host: plugin 'panicky' panicked at tests/fixtures/panicky/src/lib.rs:13:9: \
         greet is broken on purpose"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn list_text_shows_versions_and_reasons() {
    let dir = PluginDir::with(&["hello"]);
    let empty = dir.write(&library_file_name("empty"), b"");
    let output = dir.run(&["list"]);
    let hello = dir.path().join(library_file_name("hello"));
    assert_eq!(
        stdout(&output),
        format!(
            "{:<16} {:<10} {:<10} {:<9} {}\n    {}: not a loadable library: the file is empty\n\
             {:<16} {:<10} {:<10} {:<9} {}\n",
            "-",
            "-",
            "-",
            "rejected",
            empty.display(),
            empty.display(),
            "hello",
            "1.0.0",
            "2.1.0",
            "accepted",
            hello.display()
        )
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn check_exits_0_only_when_every_file_is_accepted() {
    let dir = PluginDir::with(&["hello", "hellohello"]);
    let output = dir.run(&["check"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stdout(&output).ends_with("2 of 2 plugin files accepted\n"),
        "{}",
        stdout(&output)
    );

    dir.add("not_a_plugin");
    let output = dir.run(&["check"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("rejected  "),
        "{}",
        stdout(&output)
    );
    assert!(
        stdout(&output).ends_with("2 of 3 plugin files accepted\n"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn check_json_gives_each_verdict_and_what_the_host_accepts() {
    let dir = PluginDir::with(&["hello", "not_a_plugin"]);
    let older = dir.add_compat("compat_older_minor_greeter");
    let output = dir.run(&["check", "--format", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let not_a_plugin = dir.path().join(library_file_name("not_a_plugin"));
    assert_eq!(
        json,
        serde_json::json!({
            "accepts": ">=2.0.0, <3.0.0",
            "host_version": "0.1.0",
            "files": [
                {
                    "path": older.to_str().unwrap(),
                    "status": "accepted",
                    "name": "greeter-2.0",
                    "version": "1.0.0",
                    "interface_version": "2.0.0",
                    "host_requirement": null,
                    "missing_capabilities": ["greet_to (since 2.1.0)"],
                    "error": null,
                },
                {
                    "path": dir.path().join(library_file_name("hello")).to_str().unwrap(),
                    "status": "accepted",
                    "name": "hello",
                    "version": "1.0.0",
                    "interface_version": "2.1.0",
                    "host_requirement": null,
                    "missing_capabilities": [],
                    "error": null,
                },
                {
                    "path": not_a_plugin.to_str().unwrap(),
                    "status": "rejected",
                    "name": null,
                    "version": null,
                    "interface_version": null,
                    "host_requirement": null,
                    "missing_capabilities": null,
                    "error": format!(
                        "{}: not a plugin: expected the description a dropin plugin exports, \
                         found a library without one (a greeter plugin exports it with \
                         `export_greeter!(YourType);`; a plugin built with an earlier dropin \
                         must be rebuilt)",
                        not_a_plugin.display()
                    ),
                },
            ],
        })
    );
}

#[cfg(unix)]
#[test]
fn greeting_a_rejected_plugin_by_name_shows_why_and_how_to_fix_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = PluginDir::with(&["hello", "hellohello"]);
    let hello = dir.path().join(library_file_name("hello"));
    fs::set_permissions(&hello, fs::Permissions::from_mode(0o664)).unwrap();
    let output = dir.run(&["greet", "hello", "hellohello"]);
    assert_eq!(stdout(&output), "hellohello: Hello!Hello!!\n");
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: no plugin named 'hello' is loaded: rejected {path}: not safe to load: \
             writable by group (mode 0664); expected no write permission for group or others \
             (fix: `chmod go-w {path}`; or, to load it anyway, --allow-insecure-permissions)\n",
            path = hello.display()
        )
    );
    assert_eq!(output.status.code(), Some(1));

    // A name that no file explains still lists what is loaded.
    let output = dir.run(&["greet", "nobody"]);
    assert_eq!(
        stderr(&output),
        "greeter-host: no plugin named 'nobody' is loaded (loaded: hellohello)\n"
    );
    assert_eq!(output.status.code(), Some(1));

    // The folder gets the same hint.
    fs::set_permissions(&hello, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let output = dir.run(&["list"]);
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: plugins folder {path} is not safe: writable by group and others \
             (mode 0777); expected no write permission for group or others (fix: `chmod go-w \
             {path}`; or, to load it anyway, --allow-insecure-permissions)\n",
            path = dir.path().display()
        )
    );
    assert_eq!(output.status.code(), Some(2));
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_folder_comes_from_the_option_then_the_variable_then_plugins() {
    let dir = PluginDir::with(&["hello"]);
    let output = host_command()
        .env("GREETER_PLUGINS_DIR", dir.path())
        .arg("greet")
        .output()
        .unwrap();
    assert_eq!(stdout(&output), "hello: Hello!\n");

    let output = host_command()
        .env("GREETER_PLUGINS_DIR", "/nonexistent")
        .args(["greet", "--plugins-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(stdout(&output), "hello: Hello!\n");

    let work = PluginDir::new();
    fs::create_dir(work.path().join("plugins")).unwrap();
    fs::copy(
        dir.path().join(library_file_name("hello")),
        work.path().join("plugins").join(library_file_name("hello")),
    )
    .unwrap();
    let output = host_command()
        .current_dir(work.path())
        .arg("greet")
        .output()
        .unwrap();
    assert_eq!(stdout(&output), "hello: Hello!\n");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn a_missing_folder_exits_2_naming_it() {
    let dir = PluginDir::new();
    let missing = dir.path().join("missing");
    let output = host_command()
        .arg("--plugins-dir")
        .arg(&missing)
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: plugins folder {} does not exist\n",
            missing.display()
        )
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = PluginDir::new();
    assert_eq!(dir.run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(dir.run(&["list", "--format", "xml"]).status.code(), Some(2));
    assert_eq!(host_command().output().unwrap().status.code(), Some(2));
}

#[test]
fn plugin_logs_reach_the_binary_logger() {
    let output =
        PluginDir::with(&["counter"]).run_with_env(&["greet"], "RUST_LOG", "plugin::counter=info");
    assert_eq!(stdout(&output), "counter: Hello, visitor #1!\n");
    let stderr = stderr(&output);
    assert!(
        stderr.contains(" INFO  plugin::counter] greeting visitor #1\n"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("counter ready"),
        "debug is filtered out: {stderr}"
    );
}

#[test]
fn help_documents_the_exit_codes() {
    let output = host_command().arg("--help").output().unwrap();
    let help = stdout(&output);
    for line in [
        "0  every candidate file was accepted (list, check, lock) or loaded",
        "1  some file was rejected",
        "2  usage error",
        "3  standard output was closed",
        "4  a plugin's code called exit",
    ] {
        assert!(help.contains(line), "{help}");
    }
}

#[test]
fn plugins_toml_hands_each_plugin_its_table() {
    let dir = PluginDir::with(&["counter", "hello"]);
    dir.write("plugins.toml", b"[plugin.counter]\nstart = 41\n");
    let output = dir.run(&["greet"]);
    assert_eq!(
        stdout(&output),
        "counter: Hello, visitor #42!\nhello: Hello!\n"
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn a_configuration_the_plugin_refuses_rejects_only_that_plugin() {
    let dir = PluginDir::with(&["counter", "hello"]);
    dir.write("plugins.toml", b"[plugin.counter]\nstart = \"soon\"\n");
    let output = dir.run(&["greet"]);
    assert_eq!(stdout(&output), "hello: Hello!\n");
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: rejected {}: plugin failed to initialise: {}: [plugin.counter]: key \
             `start`: invalid type: string \"soon\", expected u64\n",
            dir.path().join(library_file_name("counter")).display(),
            dir.path().join("plugins.toml").display()
        )
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn a_broken_or_unsafe_plugins_toml_stops_everything_naming_it() {
    let dir = PluginDir::with(&["hello"]);
    let config = dir.write("plugins.toml", b"[plugin.hello\n");
    let output = dir.run(&["greet"]);
    assert_eq!(stdout(&output), "");
    let message = stderr(&output);
    assert!(
        message.starts_with(&format!(
            "greeter-host: {}: invalid TOML: ",
            config.display()
        )),
        "{message}"
    );
    assert_eq!(output.status.code(), Some(2));

    dir.write("plugins.toml", b"isolated = true\n");
    let output = dir.run(&["greet"]);
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: {}: unknown key `isolated`: expected `isolate`, `call_timeout`, \
             `start_timeout`, `memory_limit`, `process_limit`, `restarts`, `confine` or \
             [plugin.<name>] tables\n",
            config.display()
        )
    );
    assert_eq!(output.status.code(), Some(2));

    dir.write("plugins.toml", b"isolate = 3\n");
    let output = dir.run(&["greet"]);
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: {}: key `isolate`: expected true, false or a list of plugin names, \
             found 3\n",
            config.display()
        )
    );
    assert_eq!(output.status.code(), Some(2));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        dir.write("plugins.toml", b"[plugin.hello]\n");
        fs::set_permissions(&config, fs::Permissions::from_mode(0o666)).unwrap();
        let output = dir.run(&["greet"]);
        let message = stderr(&output);
        assert!(
            message.starts_with(&format!(
                "greeter-host: configuration {} is not safe: ",
                config.display()
            )),
            "{message}"
        );
        assert_eq!(output.status.code(), Some(2));
    }
}

/// `plugins.toml` is read by the lock file's rules: a FIFO (which would
/// block the host until someone writes), a link to a device and an
/// oversized file are each refused at once, naming the file.
#[cfg(unix)]
#[test]
fn plugins_toml_is_read_like_the_lock_file() {
    let dir = PluginDir::with(&["hello"]);
    let config = dir.path().join("plugins.toml");
    let watchdog = greeter_tests::deadline(greeter_tests::HANG, "a FIFO as plugins.toml");
    let status = std::process::Command::new("mkfifo")
        .arg(&config)
        .status()
        .unwrap();
    assert!(status.success());
    let output = dir.run(&["greet"]);
    drop(watchdog);
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: {}: expected a regular file for the configuration, found a FIFO\n",
            config.display()
        )
    );
    assert_eq!(output.status.code(), Some(2));
    fs::remove_file(&config).unwrap();

    std::os::unix::fs::symlink("/dev/zero", &config).unwrap();
    let output = dir.run(&["greet"]);
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: {}: expected a regular file for the configuration, found a character \
             device\n",
            config.display()
        )
    );
    assert_eq!(output.status.code(), Some(2));
    fs::remove_file(&config).unwrap();

    dir.write("plugins.toml", &vec![b'#'; (1 << 20) + 1]);
    let output = dir.run(&["greet"]);
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: {}: 1048577 bytes; expected a configuration of at most 1048576\n",
            config.display()
        )
    );
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn text_from_plugins_and_files_cannot_drive_the_terminal() {
    let dir = PluginDir::with(&["hello"]);
    // A greeting carrying an escape sequence and a bidirectional override.
    let output = dir.run(&["greet", "--to", "\u{1b}[2J\u{202e}Ada"]);
    assert_eq!(stdout(&output), "hello: Hello, \\u{1b}[2J\\u{202e}Ada!\n");
    // A file name that would erase the line it is printed on.
    #[cfg(unix)]
    {
        let name = library_file_name("evil\u{1b}[2K");
        dir.write(&name, b"not a library");
        let output = dir.run(&["list"]);
        let text = stdout(&output);
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains("libevil\\u{1b}[2K.so"), "{text}");
    }
}

#[cfg(unix)]
#[test]
fn json_stays_one_whole_document_when_a_path_is_not_utf8() {
    use std::{ffi::OsStr, os::unix::ffi::OsStrExt, os::unix::fs::PermissionsExt};
    let parent = PluginDir::new();
    let dir = parent.path().join(OsStr::from_bytes(b"plugins-\xff"));
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::copy(
        artifacts().library("hello"),
        dir.join(library_file_name("hello")),
    )
    .unwrap();
    let output = host_command()
        .arg("--plugins-dir")
        .arg(&dir)
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let entries: Vec<Value> = serde_json::from_slice(&output.stdout).expect("one whole document");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["name"], "hello");
    assert_eq!(entries[0]["path_lossy"], true);
    assert!(
        entries[0]["path"]
            .as_str()
            .unwrap()
            .contains("/plugins-\u{fffd}/")
    );
}

#[test]
fn a_closed_output_ends_the_host_quietly() {
    use std::process::Stdio;
    let dir = PluginDir::with(&["hello", "panicky"]);
    // Nobody reads standard output: exit 3, nothing on standard error.
    let mut command = host_command();
    command
        .arg("--plugins-dir")
        .arg(dir.path())
        .args(["list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(stderr(&output), "");
    // Nobody reads standard error, where the panic is reported: no panic of
    // our own (exit 101), the usual status.
    let mut command = host_command();
    command
        .arg("--plugins-dir")
        .arg(dir.path())
        .args(["greet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    drop(child.stderr.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(stdout(&output), "hello: Hello!\n");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn an_empty_plugins_dir_variable_counts_as_unset() {
    let empty = PluginDir::new();
    let output = host_command()
        .current_dir(empty.path())
        .env("GREETER_PLUGINS_DIR", "")
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(
        stderr(&output),
        "greeter-host: plugins folder plugins does not exist\n"
    );
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn snapshot_dir_chooses_where_the_private_copies_go() {
    let dir = PluginDir::with(&["hello"]);
    let snapshots = PluginDir::new();
    let output = dir.run(&[
        "--snapshot-dir",
        snapshots.path().to_str().unwrap(),
        "greet",
    ]);
    assert_eq!(stdout(&output), "hello: Hello!\n");
    // Removed with the host's exit.
    assert_eq!(fs::read_dir(snapshots.path()).unwrap().count(), 0);
    // A folder that cannot be used is one message naming it, not one per
    // plugin, and nothing loads.
    let missing = snapshots.path().join("missing");
    let output = dir.run(&["--snapshot-dir", missing.to_str().unwrap(), "greet"]);
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: cannot create the private snapshot folder in {}: No such file or \
             directory (os error 2) (choose another folder with --snapshot-dir DIR)\n",
            missing.display()
        )
    );
    assert_eq!(output.status.code(), Some(2));
}

/// Runs `greeter-host <args>` on `dir` with a fresh tmpfs mounted with
/// `options` at `mount_point`, in a mount namespace of its own (`unshare`,
/// as an unprivileged user maps to root there).
#[cfg(target_os = "linux")]
fn run_with_tmpfs(
    dir: &PluginDir,
    mount_point: &std::path::Path,
    options: &str,
    args: &[&str],
) -> std::process::Output {
    let mut command = std::process::Command::new("unshare");
    command
        .args(["--map-root-user", "--mount", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o "$0" tmpfs "$1" && shift && exec "$@""#)
        .arg(options)
        .arg(mount_point)
        .arg(artifacts().host_binary())
        .arg("--plugins-dir")
        .arg(dir.path())
        .arg("--allow-insecure-permissions")
        .args(args)
        .env_remove("RUST_LOG")
        // The default snapshot folder, when `args` choose none.
        .env("XDG_RUNTIME_DIR", mount_point);
    command.output().expect("unshare runs")
}

#[cfg(target_os = "linux")]
#[test]
fn a_noexec_or_full_snapshot_folder_is_one_message_naming_it() {
    let dir = PluginDir::with(&["hello", "hellohello", "counter"]);
    let snapshots = PluginDir::new();
    let root = snapshots.path().to_str().unwrap();

    // The mount works and the host runs under it: the control.
    let output = run_with_tmpfs(
        &dir,
        snapshots.path(),
        "size=64m",
        &["--snapshot-dir", root, "greet"],
    );
    assert_eq!(
        stdout(&output),
        "counter: Hello, visitor #1!\nhello: Hello!\nhellohello: Hello!Hello!!\n",
        "{}",
        stderr(&output)
    );

    let output = run_with_tmpfs(
        &dir,
        snapshots.path(),
        "noexec,size=64m",
        &["--snapshot-dir", root, "greet"],
    );
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: the private snapshot folder in {root} is on a file system mounted \
             noexec: the dynamic loader cannot map plugins from it; expected a folder that allows \
             executing mapped files (choose another folder with --snapshot-dir DIR)\n"
        )
    );
    assert_eq!(output.status.code(), Some(2));

    // A default that is noexec is passed over for the next one.
    let output = run_with_tmpfs(&dir, snapshots.path(), "noexec,size=64m", &["greet"]);
    assert_eq!(
        stdout(&output),
        "counter: Hello, visitor #1!\nhello: Hello!\nhellohello: Hello!Hello!!\n",
        "{}",
        stderr(&output)
    );

    let output = run_with_tmpfs(
        &dir,
        snapshots.path(),
        "size=256k",
        &["--snapshot-dir", root, "greet"],
    );
    assert_eq!(stdout(&output), "");
    let needed: u64 = ["hello", "hellohello", "counter"]
        .iter()
        .map(|lib| {
            fs::metadata(dir.path().join(library_file_name(lib)))
                .unwrap()
                .len()
        })
        .sum();
    let stderr = stderr(&output);
    assert!(
        stderr.starts_with(&format!(
            "greeter-host: the private snapshot folder in {root} has "
        )) && stderr.ends_with(&format!(
            " bytes free; the copies of the plugin files need {needed} (choose another \
                 folder with --snapshot-dir DIR)\n"
        )),
        "{stderr}"
    );
    assert_eq!(output.status.code(), Some(2));
}

#[cfg(unix)]
#[test]
fn a_file_size_limit_refuses_the_copy_instead_of_killing_the_host() {
    let dir = PluginDir::with(&["hello"]);
    let hello = dir.path().join(library_file_name("hello"));
    let size = fs::metadata(&hello).unwrap().len();
    // POSIX `ulimit -f` counts 512-byte blocks: a limit one block under the
    // file.
    let blocks = size / 512 - 1;
    let snapshots = PluginDir::new();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -f "$0" && exec "$@""#)
        .arg(blocks.to_string())
        .arg(artifacts().host_binary())
        .arg("--plugins-dir")
        .arg(dir.path())
        .arg("--snapshot-dir")
        .arg(snapshots.path())
        .arg("greet")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        format!(
            "greeter-host: rejected {path}: cannot copy it into the private snapshot folder in \
             {root}: the file has {size} bytes and this process may write at most {limit} to one \
             file (its file-size limit, ulimit -f)\n",
            path = hello.display(),
            root = snapshots.path().display(),
            limit = blocks * 512,
        )
    );
    assert_eq!(output.status.code(), Some(1));
}
