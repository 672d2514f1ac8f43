//! What the documents say about the tests: every promise of SECURITY.md
//! names the tests that would fail without it, and each of them exists.

use std::{collections::BTreeSet, fs, path::Path, process::Command};

use greeter_tests::workspace_root;

/// The tests of this test binary, as `--list` names them.
fn integration_tests() -> BTreeSet<String> {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--list", "--format", "terse"])
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

/// Whether `path` (`file_module::inner_module::function`) is a `#[test]`
/// function, not ignored, in a crate's own sources or in a test file (an
/// integration test's module that this platform leaves out, such as the
/// corpus off Linux, must still be declared in `main.rs`).
fn crate_test_exists(root: &Path, path: &str) -> bool {
    let parts: Vec<&str> = path.split("::").collect();
    let Some((function, modules)) = parts.split_last() else {
        return false;
    };
    let Some((file, inner)) = modules.split_first() else {
        return false;
    };
    let integration = fs::read_to_string(root.join("tests/tests/it/main.rs")).unwrap();
    let folders: &[&str] = if integration.contains(&format!("mod {file};")) {
        &["tests/tests/it"]
    } else {
        &["dropin/host/src", "dropin/dropin/src", "tests/tests"]
    };
    let mut files = Vec::new();
    for folder in folders {
        find_files(&root.join(folder), file, &mut files);
    }
    // Follow the inner modules: `mod x;` to its own file, `mod x {` within.
    for module in inner {
        files = files
            .into_iter()
            .filter_map(|path| {
                let text = fs::read_to_string(&path).ok()?;
                let lines: Vec<&str> = text.lines().map(str::trim).collect();
                if lines.contains(&format!("mod {module} {{").as_str()) {
                    return Some(path);
                }
                if !lines.contains(&format!("mod {module};").as_str()) {
                    return None;
                }
                let folder = if path.file_name() == Some("mod.rs".as_ref()) {
                    path.parent()?.to_owned()
                } else {
                    path.with_extension("")
                };
                [
                    folder.join(format!("{module}.rs")),
                    folder.join(module).join("mod.rs"),
                ]
                .into_iter()
                .find(|file| file.is_file())
            })
            .collect();
    }
    files
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .any(|text| {
            let lines: Vec<&str> = text.lines().map(str::trim).collect();
            lines.iter().enumerate().any(|(at, line)| {
                // The function, with `#[test]` among the attributes right
                // above it, and no `#[ignore]`.
                let attributes: Vec<&str> = lines[..at]
                    .iter()
                    .rev()
                    .take_while(|line| line.starts_with("#[") || line.starts_with("///"))
                    .copied()
                    .collect();
                line.starts_with(&format!("fn {function}()"))
                    && attributes.contains(&"#[test]")
                    && !attributes.iter().any(|line| line.starts_with("#[ignore"))
            })
        })
}

/// The files of every module called `module` in `folder` and the folders
/// inside it: `module.rs` or `module/mod.rs`.
fn find_files(folder: &Path, module: &str, found: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(folder).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            find_files(&path, module, found);
        } else if path.file_name() == Some(format!("{module}.rs").as_ref())
            || (path.file_name() == Some("mod.rs".as_ref())
                && folder.file_name() == Some(module.as_ref()))
        {
            found.push(path);
        }
    }
}

#[test]
fn security_md_names_tests_that_exist() {
    let root = workspace_root();
    let security = fs::read_to_string(root.join("SECURITY.md")).unwrap();
    let guarantees = security
        .split("## What the loader guarantees")
        .nth(1)
        .and_then(|rest| rest.split("## What it cannot guarantee").next())
        .expect("SECURITY.md lists its guarantees");
    // Each numbered promise: its first line and the indented ones after it.
    let mut promises: Vec<(String, String)> = Vec::new();
    let mut open = false;
    for line in guarantees.lines() {
        let numbered = line
            .split_once(". **")
            .filter(|(number, _)| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()));
        if let Some((number, _)) = numbered {
            promises.push((number.to_owned(), String::new()));
            open = true;
        } else if !line.is_empty() && !line.starts_with(' ') {
            open = false;
        } else if let (true, Some((_, text))) = (open, promises.last_mut()) {
            text.push_str(line);
            text.push('\n');
        }
    }
    assert_eq!(promises.len(), 14, "the numbered promises of SECURITY.md");
    let integration = integration_tests();
    let mut missing = Vec::new();
    for (number, text) in &promises {
        let named: Vec<&str> = text
            .split_once("Tests:")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        assert!(
            !named.is_empty(),
            "promise {number} of SECURITY.md names no test"
        );
        for test in named {
            if !integration.contains(test) && !crate_test_exists(&root, test) {
                missing.push(format!("{number}: {test}"));
            }
        }
    }
    // Each row of the isolation and confinement tables: its last column
    // names the tests.
    let tested = security
        .split("## Isolation and confinement, as tested")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("SECURITY.md lists what isolation and confinement promise");
    let rows: Vec<&str> = tested
        .lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| promise |"))
        .collect();
    assert_eq!(rows.len(), 19, "the rows of SECURITY.md's isolation tables");
    for row in rows {
        let tests = row.trim_end_matches(" |").rsplit(" | ").next().unwrap();
        let named: Vec<&str> = tests.split('`').skip(1).step_by(2).collect();
        assert!(
            !named.is_empty(),
            "a row of SECURITY.md names no test: {row}"
        );
        for test in named {
            if !integration.contains(test) && !crate_test_exists(&root, test) {
                missing.push(format!("isolation table: {test}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "SECURITY.md names tests that do not exist: {missing:?}"
    );
}
