//! No false rejections: real plugins built with every configuration a
//! plugin author may choose (optimisation levels, LTO, one codegen unit,
//! with and without debug info or symbols, GNU ld and LLD, `cdylib` and
//! `dylib`, large thread-locals) each load and greet without a word.
//!
//! Each build changes only the plugin crate's own flags (`cargo rustc`), so
//! the dependencies are built once per profile, in a target folder of this
//! test's own.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use greeter_tests::{PluginDir, artifacts, host_command, library_file_name, stderr, stdout};

/// Which linker a build must have used, as the `.comment` section says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Linker {
    /// Rust's own LLD (this toolchain's default on x86_64 Linux).
    Lld,
    /// The system's GNU ld, through the C compiler.
    Gnu,
}

struct Build {
    /// What the configuration is, for messages.
    what: &'static str,
    package: &'static str,
    lib: &'static str,
    greeting: &'static str,
    /// A release build with fat LTO and one codegen unit for every crate.
    lto: bool,
    crate_type: &'static str,
    /// Flags for the plugin crate's `rustc`.
    flags: &'static [&'static str],
    /// Strip the result with binutils' `strip --strip-all` afterwards.
    strip_all: bool,
    linker: Option<Linker>,
}

const HELLO: &str = "hello: Hello!\n";
const BIG_TLS: &str = "big-tls: Hello from a big thread-local! (1)\n";

const fn hello(what: &'static str, flags: &'static [&'static str]) -> Build {
    Build {
        what,
        package: "hello",
        lib: "hello",
        greeting: HELLO,
        lto: false,
        crate_type: "cdylib",
        flags,
        strip_all: false,
        linker: None,
    }
}

const BUILDS: &[Build] = &[
    Build {
        linker: Some(Linker::Lld),
        ..hello("opt-level 0, full debug info, LLD", &["-C", "debuginfo=2"])
    },
    Build {
        linker: Some(Linker::Gnu),
        ..hello("opt-level 0, GNU ld", &["-C", "linker-features=-lld"])
    },
    hello("opt-level 1", &["-C", "opt-level=1"]),
    hello("opt-level 2", &["-C", "opt-level=2"]),
    hello("opt-level 3", &["-C", "opt-level=3"]),
    hello("opt-level s", &["-C", "opt-level=s"]),
    hello("opt-level z", &["-C", "opt-level=z"]),
    hello("codegen-units 1", &["-C", "codegen-units=1"]),
    hello(
        "no debug info",
        &["-C", "debuginfo=0", "-C", "strip=debuginfo"],
    ),
    hello("symbols stripped by rustc", &["-C", "strip=symbols"]),
    Build {
        strip_all: true,
        ..hello("stripped by binutils' strip --strip-all", &[])
    },
    Build {
        crate_type: "dylib",
        ..hello("a Rust dylib", &[])
    },
    Build {
        package: "big-tls",
        lib: "big_tls",
        greeting: BIG_TLS,
        linker: Some(Linker::Lld),
        ..hello("a large thread-local (.tbss), LLD", &[])
    },
    Build {
        package: "big-tls",
        lib: "big_tls",
        greeting: BIG_TLS,
        linker: Some(Linker::Gnu),
        ..hello(
            "a large thread-local (.tbss), GNU ld",
            &["-C", "linker-features=-lld"],
        )
    },
    Build {
        lto: true,
        ..hello("release, fat LTO, codegen-units 1", &[])
    },
    Build {
        lto: true,
        ..hello("release, fat LTO, opt-level z", &["-C", "opt-level=z"])
    },
    Build {
        lto: true,
        linker: Some(Linker::Gnu),
        ..hello("release, fat LTO, GNU ld", &["-C", "linker-features=-lld"])
    },
    Build {
        lto: true,
        package: "big-tls",
        lib: "big_tls",
        greeting: BIG_TLS,
        ..hello("release, fat LTO, a large thread-local", &[])
    },
];

/// Builds `build` and copies the library into a fresh folder of `root`.
fn make(build: &Build, root: &Path, index: usize) -> PathBuf {
    let target = greeter_tests::target_dir().join("valid-builds");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(greeter_tests::workspace_root())
        .args(["rustc", "--locked", "--lib", "-p", build.package])
        .args(["--crate-type", build.crate_type, "--target-dir"])
        .arg(&target)
        .env_remove("RUSTFLAGS");
    if build.lto {
        cargo
            .arg("--release")
            .env("CARGO_PROFILE_RELEASE_LTO", "fat")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    }
    cargo.arg("--").args(build.flags);
    let output = cargo.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "{}: {cargo:?} failed:\n{}",
        build.what,
        String::from_utf8_lossy(&output.stderr)
    );
    let built = target
        .join(if build.lto { "release" } else { "debug" })
        .join(library_file_name(build.lib));
    let dir = root.join(index.to_string());
    fs::create_dir(&dir).unwrap();
    let copy = dir.join(library_file_name(build.lib));
    fs::copy(&built, &copy).unwrap();
    if build.strip_all {
        let status = Command::new("strip")
            .arg("--strip-all")
            .arg(&copy)
            .status()
            .expect("binutils' strip runs");
        assert!(status.success(), "strip failed");
    }
    copy
}

/// Which linker made `library`: LLD signs the `.comment` section.
fn linker_of(library: &Path) -> Linker {
    let bytes = fs::read(library).unwrap();
    if bytes.windows(12).any(|window| window == b"Linker: LLD ") {
        Linker::Lld
    } else {
        Linker::Gnu
    }
}

#[test]
fn valid_plugins_built_every_way_load_without_a_word() {
    // The host binary first: its build must not run beside these.
    let host = artifacts().host_binary();
    assert!(host.exists());
    let root = PluginDir::new();
    let mut failures = Vec::new();
    for (index, build) in BUILDS.iter().enumerate() {
        let library = make(build, root.path(), index);
        if let Some(expected) = build.linker {
            assert_eq!(linker_of(&library), expected, "{}", build.what);
        }
        let output = host_command()
            .arg("--plugins-dir")
            .arg(library.parent().unwrap())
            .arg("greet")
            .output()
            .unwrap();
        if (
            stdout(&output).as_str(),
            stderr(&output).as_str(),
            output.status.code(),
        ) != (build.greeting, "", Some(0))
        {
            failures.push(format!(
                "{}: exit {:?}, stdout {:?}, stderr {:?}",
                build.what,
                output.status.code(),
                stdout(&output),
                stderr(&output)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A plugin built with `panic = "abort"` (which hosts refuse to load) says
/// so when it is built, on its export macro's line. (Cargo repeats a built
/// crate's warnings, so the compat build that the other tests use is read
/// again here.)
#[test]
fn a_plugin_built_with_panic_abort_warns_when_it_builds() {
    greeter_tests::compat_artifacts();
    let build = Command::new(env!("CARGO"))
        .current_dir(greeter_tests::workspace_root().join("tests/compat/panic_abort"))
        .args(["build", "--locked", "--target-dir"])
        .arg(greeter_tests::target_dir().join("compat"))
        .output()
        .unwrap();
    assert!(build.status.success());
    let said = String::from_utf8_lossy(&build.stderr);
    assert!(
        said.contains(
            "this plugin is built with `panic = \"abort\"`: hosts refuse to load it, since its \
             first panic would end the host's process"
        ) && said.contains("export_greeter!(Aborts, name = \"aborts\");"),
        "{said}"
    );
}
