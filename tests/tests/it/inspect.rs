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
             fn greet_to(&str) -> String (since 2.1.0)\n",
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
            "incompatible: built against greeter 3.0.0, another major version than 2.1.0\n",
        ),
        (
            "hello",
            "compat_changed_type_greeter",
            Some(1),
            "incompatible: method `greet_to`: argument 1: expected &str, found String\n",
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
            "incompatible: built against transform 2.0.0, another major version than 1.1.0\n",
        ),
        (
            "upper",
            "compat_changed_type_transform",
            Some(1),
            "incompatible: method `info`: result: Info: field `inverse`: expected \
             Option<String>, found bool\n",
        ),
        (
            "hello",
            "upper",
            Some(1),
            "incompatible: expected interface greeter, found transform\n",
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
