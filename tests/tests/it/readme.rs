//! The README's three roles, built from the README itself: the interface, the
//! plugin and the application it shows are written to a folder outside the
//! repository, built with cargo, and run, as a new user would.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use greeter_tests::{library_file_name, stderr, stdout};

/// The files the README shows, marked `<!-- file: PATH -->` before their
/// code block, in order.
fn readme_files() -> Vec<(String, String)> {
    readme_blocks("file")
        .into_iter()
        .map(|(path, body)| (path, body + "\n"))
        .collect()
}

/// The code blocks of the README marked `<!-- KIND: PATH -->`, in order:
/// the path, and the block's lines joined.
pub(crate) fn readme_blocks(kind: &str) -> Vec<(String, String)> {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let marker = format!("<!-- {kind}: ");
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(path) = line
            .strip_prefix(&marker)
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().expect("a code block follows the marker");
        assert!(fence.starts_with("```"), "{path}: {fence}");
        let body: Vec<&str> = lines.by_ref().take_while(|line| *line != "```").collect();
        blocks.push((path.to_owned(), body.join("\n")));
    }
    blocks
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Lines that are neither blank nor comments.
fn code_lines(text: &str) -> usize {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .count()
}

#[test]
fn the_readme_shows_the_real_greeter_interface() {
    let files = readme_files();
    let (_, shown) = files
        .iter()
        .find(|(path, _)| path == "interface/src/lib.rs (the repository's own)")
        .expect("the README shows interface/src/lib.rs");
    assert_eq!(
        *shown,
        fs::read_to_string(root().join("interface/src/lib.rs")).unwrap()
    );
}

/// Each block marked `<!-- excerpt: PATH -->` appears, as shown, in the
/// repository's file at `PATH`, which the workspace builds: what the README
/// teaches compiles.
#[test]
fn the_readmes_excerpts_are_in_the_files_they_name() {
    let excerpts = readme_blocks("excerpt");
    for (path, body) in &excerpts {
        let file = fs::read_to_string(root().join(path)).unwrap();
        assert!(
            file.contains(body.as_str()),
            "the README's excerpt of {path} is not in it:\n{body}"
        );
    }
    assert_eq!(excerpts.len(), 14);
}

/// Packages the framework's crates (`cargo package`, into `target`) and
/// unpacks each into `into`: where each crate's sources are, by name.
fn packaged_crates(target: &Path, into: &Path) -> std::collections::HashMap<String, PathBuf> {
    let crates = ["dropin-macros", "dropin", "dropin-host"];
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(root())
        .args([
            "package",
            "--quiet",
            "--no-verify",
            "--allow-dirty",
            "--target-dir",
        ])
        .arg(target);
    for name in crates {
        cargo.args(["-p", name]);
    }
    assert!(cargo.status().unwrap().success(), "cargo package");
    fs::create_dir_all(into).unwrap();
    crates
        .iter()
        .map(|name| {
            let file = fs::read_dir(target.join("package"))
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .find(|path| {
                    path.file_name()
                        .and_then(|file| file.to_str())
                        .and_then(|file| file.strip_prefix(&format!("{name}-")))
                        .and_then(|rest| rest.strip_suffix(".crate"))
                        .is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()))
                })
                .unwrap_or_else(|| panic!("no package of {name}"));
            let status = Command::new("tar")
                .arg("-xzf")
                .arg(&file)
                .arg("-C")
                .arg(into)
                .status()
                .unwrap();
            assert!(status.success(), "unpacking {}", file.display());
            let unpacked = into.join(
                file.file_stem()
                    .expect("a package file's name")
                    .to_str()
                    .expect("a package file's name is UTF-8"),
            );
            assert!(
                unpacked.join("Cargo.toml").is_file(),
                "{}",
                unpacked.display()
            );
            ((*name).to_owned(), unpacked)
        })
        .collect()
}

#[test]
fn the_readme_interface_plugin_and_application_build_and_run() {
    let trial = tempfile::tempdir().unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), PathBuf::from)
        .join("test-artifacts");
    // The framework's crates as users would download them: packaged, then
    // unpacked, and built from those sources alone.
    let packaged = packaged_crates(&target, &trial.path().join("packaged"));
    let mut members = Vec::new();
    for (path, body) in readme_files() {
        if path.contains(' ') {
            continue;
        }
        let mut body = body;
        for (folder, name) in [
            ("dropin/dropin", "dropin"),
            ("dropin/macros", "dropin-macros"),
            ("dropin/host", "dropin-host"),
        ] {
            body = body.replace(
                &format!("/path/to/this/repo/{folder}\""),
                &format!("{}\"", packaged[name].display()),
            );
        }
        let body = body.replace("/path/to/this/repo", root().to_str().unwrap());
        if path.ends_with(".rs") {
            // The line budgets the README promises: short enough to read.
            assert!(
                code_lines(&body) <= 18,
                "{path}: {} lines",
                code_lines(&body)
            );
        }
        let file = trial.path().join(&path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, body).unwrap();
        if let Some(member) = path.strip_suffix("/Cargo.toml") {
            members.push(format!("{member:?}"));
        }
    }
    assert_eq!(members.len(), 3);
    // One workspace for the three, with this repository's lock file, so the
    // build reuses the versions (and the builds) the tests already have.
    fs::write(
        trial.path().join("Cargo.toml"),
        format!(
            "[workspace]\nresolver = \"3\"\nmembers = [{}]\n",
            members.join(", ")
        ),
    )
    .unwrap();
    fs::copy(root().join("Cargo.lock"), trial.path().join("Cargo.lock")).unwrap();
    let status = Command::new(env!("CARGO"))
        .current_dir(trial.path())
        .args(["build", "--quiet", "--target-dir"])
        .arg(&target)
        .env("CARGO_PROFILE_DEV_STRIP", "debuginfo")
        .status()
        .unwrap();
    assert!(status.success());
    // Built from the packages, not from this repository's folders.
    let metadata = Command::new(env!("CARGO"))
        .current_dir(trial.path())
        .args(["metadata", "--format-version", "1"])
        .output()
        .unwrap();
    assert!(metadata.status.success());
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).unwrap();
    for (name, unpacked) in &packaged {
        let manifest = metadata["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|package| package["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} is not in the build"))["manifest_path"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(Path::new(&manifest), unpacked.join("Cargo.toml"), "{name}");
    }

    // The README's plugins/plugins.toml made the folder.
    let plugins = trial.path().join("plugins");
    assert!(plugins.join("plugins.toml").is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&plugins, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let library = library_file_name("loud");
    fs::copy(target.join("debug").join(&library), plugins.join(&library)).unwrap();
    let app = target
        .join("debug")
        .join(format!("shout-app{}", std::env::consts::EXE_SUFFIX));
    let run = |text: &str| {
        Command::new(&app)
            .current_dir(trial.path())
            .arg(text)
            .env("RUST_LOG", "info")
            .output()
            .unwrap()
    };

    // Configuration reaches `init`; the plugin's log record reaches the
    // application's logger.
    let output = run("hello");
    assert_eq!(stdout(&output), "loud: HELLO!!!\n");
    let log = stderr(&output);
    assert!(
        log.contains(" INFO  plugin::loud] shouting \"hello\"\n"),
        "{log}"
    );
    assert_eq!(output.status.code(), Some(0));

    // A panic comes back as an error; the application carries on.
    let output = run("");
    assert_eq!(stdout(&output), "");
    let log = stderr(&output);
    assert!(
        log.contains("plugin 'loud' panicked at loud/src/lib.rs:")
            && log.ends_with(": nothing to shout\n"),
        "{log}"
    );
    assert!(
        log.contains(" WARN  plugin::loud] panicked at loud/src/lib.rs:"),
        "{log}"
    );
    assert_eq!(output.status.code(), Some(0));

    // `dropin check` reads the application's interface from its executable
    // and the plugin's from its file.
    let output = Command::new(greeter_tests::artifacts().binary("dropin"))
        .args(["check", "plugins", "--host"])
        .arg(&app)
        .current_dir(trial.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).ends_with(&format!(
            "plugins: 1 of 1 plugin files accepted by {} (shout-interface 1.0.0)\n",
            app.display()
        )),
        "{}",
        stdout(&output)
    );

    // Without a plugins folder: the error and its cause, on one line.
    fs::remove_dir_all(&plugins).unwrap();
    let output = run("hello");
    assert_eq!(
        stderr(&output),
        "Error: plugins folder plugins does not exist\n"
    );
    assert_eq!(output.status.code(), Some(1));
}
