//! `dropin inspect`: what a plugin file is, read from its description as
//! data. No plugin code runs, in this process or in any other.

use std::{fs, process::Command};

use greeter_tests::{PluginDir, artifacts, library_file_name, sha256_hex, stderr, stdout};

fn dropin(args: &[&str], markers: &std::path::Path) -> std::process::Output {
    Command::new(artifacts().binary("dropin"))
        .args(args)
        .env("GREETER_OPEN_MARKERS", markers)
        .output()
        .expect("dropin runs")
}

#[test]
fn inspect_shows_the_description_and_runs_no_plugin_code() {
    let dir = PluginDir::with(&["hello", "runs_at_open"]);
    let markers = PluginDir::new();
    let hello = dir.path().join(library_file_name("hello"));
    let output = dropin(&["inspect", hello.to_str().unwrap()], markers.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!(
            "{}\n  plugin     hello 1.0.0\n  interface  greeter 2.1.0\n  host       any\n  \
             built      with dropin 0.1.0 for {}-{}, panic = \"unwind\", debug assertions\n  \
             sha256     {}\n  methods    fn greet() -> String (since 2.0.0)\n             \
             fn greet_to(&str) -> String (since 2.1.0)\n  services   \
             greeter-interface::GreeterHost\n             fn load(&str) -> Option<String> \
             (since 2.1.0)\n             fn store(&str, &str) -> () (since 2.1.0)\n",
            hello.display(),
            std::env::consts::ARCH,
            std::env::consts::OS,
            sha256_hex(&fs::read(&hello).unwrap()),
        )
    );
    // A plugin whose constructor leaves a marker wherever it runs: inspected,
    // in text and JSON, it leaves none.
    let runs_at_open = dir.path().join(library_file_name("runs_at_open"));
    for format in ["text", "json"] {
        let output = dropin(
            &[
                "inspect",
                runs_at_open.to_str().unwrap(),
                "--format",
                format,
            ],
            markers.path(),
        );
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    }
    let json: serde_json::Value = serde_json::from_slice(
        &dropin(
            &[
                "inspect",
                runs_at_open.to_str().unwrap(),
                "--format",
                "json",
            ],
            markers.path(),
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(json["name"], "runs-at-open");
    assert_eq!(json["interface"], "greeter");
    assert_eq!(
        json["methods"][1]["signature"],
        "fn greet_to(&str) -> String"
    );
    assert_eq!(
        fs::read_dir(markers.path()).unwrap().count(),
        0,
        "a constructor ran"
    );
}

#[test]
fn inspect_refuses_what_is_not_a_plugin_naming_the_file() {
    let dir = PluginDir::with(&["not_a_plugin"]);
    let markers = PluginDir::new();
    let original = fs::read(artifacts().library("hello")).unwrap();
    let cut = dir.write(&library_file_name("cut"), &original[..original.len() / 3]);
    let text = dir.write("text.so", b"hello\n");
    let foreign = dir.path().join(library_file_name("not_a_plugin"));
    for (file, reason) in [
        (
            &foreign,
            "expected the description a dropin plugin exports (`dropin_description_v1`), found \
             a library without one: not a dropin plugin, or built with an earlier dropin",
        ),
        (
            &text,
            "expected a shared library, found a file that is not one: Could not read file magic",
        ),
    ] {
        let output = dropin(&["inspect", file.to_str().unwrap()], markers.path());
        assert_eq!(output.status.code(), Some(1), "{}", file.display());
        assert_eq!(
            stderr(&output),
            format!("dropin: {}: {reason}\n", file.display())
        );
        assert_eq!(stdout(&output), "");
    }
    let output = dropin(&["inspect", cut.to_str().unwrap()], markers.path());
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).starts_with(&format!("dropin: {}: ", cut.display())),
        "{}",
        stderr(&output)
    );
    let missing = dir.path().join("missing.so");
    let output = dropin(&["inspect", missing.to_str().unwrap()], markers.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).starts_with(&format!(
        "dropin: {}: cannot read the file: ",
        missing.display()
    )));
}

/// Mutants of a real plugin's description bytes, read through the file:
/// each is a description or an error, never a crash, a hang or a large
/// allocation.
#[test]
fn every_mutant_of_a_description_is_read_or_refused() {
    let hello = fs::read(artifacts().library("hello")).unwrap();
    let (at, len) = greeter_tests::description_range(&hello);
    let dir = PluginDir::new();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rng = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut read, mut refused) = (0, 0);
    for i in 0..1200 {
        let mut bytes = hello.clone();
        match i % 3 {
            // One byte anywhere in the description.
            0 => bytes[at + (rng() as usize % len)] = rng() as u8,
            // A length or count field set to something huge.
            1 => {
                let field = at + 12 + 4 * (rng() as usize % ((len - 12) / 4));
                bytes[field..field + 4]
                    .copy_from_slice(&(rng() as u32 | 0x8000_0000).to_le_bytes());
            }
            // A run of bytes.
            _ => {
                let start = at + (rng() as usize % len);
                for byte in bytes.iter_mut().skip(start).take(1 + rng() as usize % 16) {
                    *byte = rng() as u8;
                }
            }
        }
        let file = dir.write("mutant.so", &bytes);
        match dropin_host::read_description(&file) {
            Ok(_) => read += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 600, "{refused} refused, {read} read");
}

/// `dropin diff OLD NEW` on the compat fixtures of both interfaces: the
/// verdict a host built with NEW's interface gives OLD's plugin, from the
/// files alone.
#[test]
fn diff_gives_the_verdict_of_a_host_for_each_compat_fixture() {
    let markers = PluginDir::new();
    let compat = greeter_tests::compat_artifacts();
    let cases = [
        (
            "hello",
            "compat_older_minor_greeter",
            Some(0),
            "compatible, with methods missing: greet_to (since 2.1.0)\n",
        ),
        (
            "hello",
            "compat_newer_minor_greeter",
            Some(0),
            "compatible\n",
        ),
        (
            "hello",
            "compat_next_major_greeter",
            Some(1),
            "incompatible: built against greeter interface 3.0.0, another major version than \
             this host's 2.1.0; expected greeter 2.x: rebuild the plugin against it\n",
        ),
        (
            "hello",
            "compat_changed_type_greeter",
            Some(1),
            "incompatible: not compatible with greeter 2.1.0 (the plugin was built against \
             2.1.0): method `greet_to`: argument 1: expected &str, found String\n",
        ),
        (
            "upper",
            "compat_older_minor_transform",
            Some(0),
            "compatible, with methods missing: apply_bytes (since 1.1.0)\n",
        ),
        (
            "upper",
            "compat_newer_minor_transform",
            Some(0),
            "compatible\n",
        ),
        (
            "upper",
            "compat_next_major_transform",
            Some(1),
            "incompatible: built against transform interface 2.0.0, another major version than \
             this host's 1.1.0; expected transform 1.x: rebuild the plugin against it\n",
        ),
        (
            "upper",
            "compat_changed_type_transform",
            Some(1),
            "incompatible: not compatible with transform 1.1.0 (the plugin was built against \
             1.1.0): method `info`: result: Info: field `inverse`: expected Option<String>, \
             found bool\n",
        ),
        (
            "hello",
            "upper",
            Some(1),
            "incompatible: not a greeter plugin: expected interface greeter, found transform \
             1.1.0\n",
        ),
    ];
    for (new, old, code, text) in cases {
        let old = if old.starts_with("compat_") {
            compat.library(old)
        } else {
            artifacts().library(old)
        };
        let new = artifacts().library(new);
        let output = dropin(
            &["diff", old.to_str().unwrap(), new.to_str().unwrap()],
            markers.path(),
        );
        assert_eq!(output.status.code(), code, "{}", stderr(&output));
        assert_eq!(stdout(&output), text);
    }
    let json: serde_json::Value = serde_json::from_slice(
        &dropin(
            &[
                "diff",
                compat
                    .library("compat_older_minor_greeter")
                    .to_str()
                    .unwrap(),
                artifacts().library("hello").to_str().unwrap(),
                "--format",
                "json",
            ],
            markers.path(),
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "verdict": "missing",
            "missing": [{
                "name": "greet_to",
                "since": "2.1.0",
                "signature": "fn greet_to(&str) -> String",
            }],
            "reason": null,
        })
    );
    // Without a description: the reason, exit 1.
    let output = dropin(
        &[
            "diff",
            compat.library("compat_v1_0").to_str().unwrap(),
            artifacts().library("hello").to_str().unwrap(),
        ],
        markers.path(),
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(fs::read_dir(markers.path()).unwrap().count(), 0);
}

/// `dropin list DIR`: every plugin file's description, or why it has none,
/// and no plugin code runs.
#[test]
fn list_describes_every_file_of_a_folder_and_runs_nothing() {
    let dir = PluginDir::with(&["hello", "not_a_plugin", "runs_at_open"]);
    let markers = PluginDir::new();
    let output = dropin(&["list", dir.path().to_str().unwrap()], markers.path());
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let file = |lib: &str| {
        dir.path()
            .join(library_file_name(lib))
            .display()
            .to_string()
    };
    assert_eq!(
        stdout(&output),
        format!(
            "described {}\n          plugin hello 1.0.0; interface greeter 2.1.0\n\
             refused   {}\n          expected the description a dropin plugin exports \
             (`dropin_description_v1`), found a library without one: not a dropin plugin, or \
             built with an earlier dropin\n\
             described {}\n          plugin runs-at-open 0.1.0; interface greeter 2.1.0\n",
            file("hello"),
            file("not_a_plugin"),
            file("runs_at_open"),
        )
    );
    assert_eq!(fs::read_dir(markers.path()).unwrap().count(), 0);
    let missing = dir.path().join("nope");
    let output = dropin(&["list", missing.to_str().unwrap()], markers.path());
    assert_eq!(output.status.code(), Some(2));
}

/// `dropin check DIR --host APP` and `dropin lock DIR --host APP`: the
/// verdicts the application's loader gives before it opens a file, from the
/// files' descriptions and the application's, with neither running; the
/// lock file is the one the application's own `lock` writes.
#[test]
fn check_and_lock_judge_a_folder_for_an_application_and_run_nothing() {
    let dir = PluginDir::with(&["hello", "not_a_plugin", "runs_at_open"]);
    let major = dir.add_compat("compat_next_major_greeter");
    let markers = PluginDir::new();
    let host = artifacts().host_binary();
    let path = |lib: &str| dir.path().join(library_file_name(lib));
    let output = dropin(
        &[
            "check",
            dir.path().to_str().unwrap(),
            "--host",
            host.to_str().unwrap(),
        ],
        markers.path(),
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!(
            "rejected  {major}\n          {major}: built against greeter interface 3.0.0, another \
             major version than this host's 2.1.0; expected greeter 2.x: rebuild the plugin \
             against it\n\
             ok        {hello}\n          plugin hello 1.0.0; interface 2.1.0 (host accepts \
             >=2.0.0, <3.0.0); host requirement any; missing capabilities: none\n\
             rejected  {not_a_plugin}\n          {not_a_plugin}: its description cannot be read: \
             expected the description a dropin plugin exports (`dropin_description_v1`), found a \
             library without one: not a dropin plugin, or built with an earlier dropin\n\
             ok        {runs_at_open}\n          plugin runs-at-open 0.1.0; interface 2.1.0 (host \
             accepts >=2.0.0, <3.0.0); host requirement any; missing capabilities: none\n\
             {dir}: 2 of 4 plugin files accepted by {host} (greeter 2.1.0)\n",
            major = major.display(),
            hello = path("hello").display(),
            not_a_plugin = path("not_a_plugin").display(),
            runs_at_open = path("runs_at_open").display(),
            dir = dir.path().display(),
            host = host.display(),
        )
    );
    // The lock file is byte for byte the application's own.
    let output = dropin(
        &[
            "lock",
            dir.path().to_str().unwrap(),
            "--host",
            host.to_str().unwrap(),
        ],
        markers.path(),
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let lockfile = dir.path().join("plugins.lock");
    assert!(
        stdout(&output).starts_with(&format!(
            "wrote {}: 2 plugin files locked\nnot locked  {}: built against greeter interface \
             3.0.0",
            lockfile.display(),
            major.display()
        )),
        "{}",
        stdout(&output)
    );
    let written = fs::read(&lockfile).unwrap();
    assert_eq!(dir.run(&["lock"]).status.code(), Some(1));
    assert_eq!(fs::read(&lockfile).unwrap(), written);
    // Nothing opened any of the files: the constructor left no marker.
    assert_eq!(fs::read_dir(markers.path()).unwrap().count(), 0);
    // What the lock approves loads.
    fs::remove_file(&major).unwrap();
    fs::remove_file(path("not_a_plugin")).unwrap();
    let output = dir.run(&["--locked", "greet", "hello"]);
    assert_eq!(stdout(&output), "hello: Hello!\n", "{}", stderr(&output));

    // Another application's interface: every file refused, naming both.
    let transform_app = artifacts().binary("transform-app");
    let output = dropin(
        &[
            "check",
            dir.path().to_str().unwrap(),
            "--host",
            transform_app.to_str().unwrap(),
            "--format",
            "json",
        ],
        markers.path(),
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["interface"], "transform");
    assert_eq!(json["accepts"], ">=1.0.0, <2.0.0");
    assert_eq!(
        json["files"][0]["error"],
        format!(
            "{}: not a transform plugin: expected interface transform, found greeter 2.1.0",
            path("hello").display()
        )
    );
    // A host requirement is checked when the application's version is given.
    let output = dropin(
        &[
            "check",
            dir.path().to_str().unwrap(),
            "--host",
            host.to_str().unwrap(),
            "--host-version",
            "0.1.0",
            "--format",
            "json",
        ],
        markers.path(),
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["host_version"], "0.1.0");
    assert_eq!(json["files"][0]["host_requirement_checked"], true);
    // A file whose object headers the loader refuses is refused in its
    // words, and a file name cannot forge a line.
    fs::remove_file(&lockfile).unwrap();
    fs::write(path("empty"), b"").unwrap();
    let forged = dir.path().join("x\nok        libFAKE.so");
    fs::copy(artifacts().library("hello"), &forged).unwrap();
    let check = || {
        dropin(
            &[
                "check",
                dir.path().to_str().unwrap(),
                "--host",
                host.to_str().unwrap(),
            ],
            markers.path(),
        )
    };
    let output = check();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        format!(
            "{}: not a loadable library: the file is empty",
            path("empty").display()
        ),
        format!(
            "rejected  {}\\u{{a}}ok        libFAKE.so\n",
            dir.path().join("x").display()
        ),
    ] {
        assert!(text.contains(&expected), "{expected}\n{text}");
    }
    assert!(
        !text
            .lines()
            .any(|line| line.starts_with("ok        libFAKE"))
    );
    fs::remove_file(&forged).unwrap();
    fs::remove_file(path("empty")).unwrap();
    // Under the folder's lock file, as the application's loader: a file it
    // does not list is refused.
    fs::write(&lockfile, &written).unwrap();
    fs::copy(artifacts().library("hellohello"), path("hellohello")).unwrap();
    let output = check();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        format!(
            "{}: not listed in {}; expected only locked plugins",
            path("hellohello").display(),
            lockfile.display()
        ),
        format!("ok        {}\n", path("hello").display()),
    ] {
        assert!(text.contains(&expected), "{expected}\n{text}");
    }
    fs::remove_file(path("hellohello")).unwrap();

    // Not an application: exit 2, naming the file.
    let output = dropin(
        &[
            "check",
            dir.path().to_str().unwrap(),
            "--host",
            path("hello").to_str().unwrap(),
        ],
        markers.path(),
    );
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!(
            "dropin: {}: expected a program that loads dropin plugins (its executable holds the \
             description of each interface it loads), found one without any\n",
            path("hello").display()
        )
    );
    assert_eq!(fs::read_dir(markers.path()).unwrap().count(), 0);
}

/// `dropin diff` with applications: a plugin against the application that
/// would load it, and two applications (would a plugin built for the
/// first load in the second).
#[test]
fn diff_compares_applications_too() {
    let markers = PluginDir::new();
    let compat = greeter_tests::compat_artifacts();
    let greeter_host = artifacts().host_binary();
    let transform_app = artifacts().binary("transform-app");
    let run = |old: &std::path::Path, new: &std::path::Path| {
        dropin(
            &["diff", old.to_str().unwrap(), new.to_str().unwrap()],
            markers.path(),
        )
    };
    let older = compat.library("compat_older_minor_greeter");
    let output = run(&older, &greeter_host);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "compatible, with methods missing: greet_to (since 2.1.0)\n"
    );
    let output = run(&compat.library("compat_next_major_greeter"), &greeter_host);
    assert_eq!(output.status.code(), Some(1));
    // An application against a plugin of its own interface, and against
    // itself.
    let output = run(&greeter_host, &artifacts().library("hello"));
    assert_eq!(
        (output.status.code(), stdout(&output).as_str()),
        (Some(0), "compatible\n")
    );
    let output = run(&transform_app, &transform_app);
    assert_eq!(
        (output.status.code(), stdout(&output).as_str()),
        (Some(0), "compatible\n")
    );
    // Two interfaces: the loader's refusal is the verdict.
    let output = run(&transform_app, &greeter_host);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        "incompatible: not a greeter plugin: expected interface greeter, found transform 1.1.0\n"
    );
    // Inspected, an application shows its interface.
    let output = dropin(&["inspect", greeter_host.to_str().unwrap()], markers.path());
    assert_eq!(
        stdout(&output),
        format!(
            "{}\n  application of interface greeter 2.1.0 (accepts >=2.0.0, <3.0.0)\n  built      \
             with dropin 0.1.0 for {}-{}\n  methods    fn greet() -> String (since 2.0.0)\n             \
             fn greet_to(&str) -> String (since 2.1.0)\n  services   \
             greeter-interface::GreeterHost\n             fn load(&str) -> Option<String> \
             (since 2.1.0)\n             fn store(&str, &str) -> () (since 2.1.0)\n",
            greeter_host.display(),
            std::env::consts::ARCH,
            std::env::consts::OS,
        )
    );
}
