//! The framework crates' modules import one way: `dropin-host`'s by the
//! layers ARCHITECTURE.md lists (each only from the layers above it), and no
//! circle among the top-level modules of `dropin` and `dropin-macros`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// Which top-level module each name the crate root re-exports comes from
/// (`pub use error::LoadError;` makes `crate::LoadError` a path into
/// `error`).
fn reexports(src: &Path) -> BTreeMap<String, String> {
    let lib = fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
    let mut names = BTreeMap::new();
    for statement in lib.split("pub use ").skip(1) {
        let statement = statement.split(';').next().unwrap_or_default();
        let words: Vec<&str> = statement
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| !word.is_empty())
            .collect();
        if let Some((module, rest)) = words.split_first() {
            for word in rest {
                if *word != "self" && *word != "as" {
                    names.insert((*word).to_owned(), (*module).to_owned());
                }
            }
        }
    }
    names
}

/// Each top-level module of the crate in `src` (a file, or a folder with
/// everything in it) and the top-level modules it names as `crate::...`,
/// directly or through a name the crate root re-exports.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let reexported = reexports(src);
    let mut modules = BTreeMap::new();
    for entry in fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        let mut text = String::new();
        read_all(&path, &mut text);
        let mut named: BTreeSet<String> = names_after_crate(&text)
            .into_iter()
            .map(|named| reexported.get(&named).cloned().unwrap_or(named))
            .collect();
        named.remove(&name);
        modules.insert(name, named);
    }
    modules
}

fn read_all(path: &Path, text: &mut String) {
    if path.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            read_all(&entry.unwrap().path(), text);
        }
    } else if path.extension() == Some("rs".as_ref()) {
        for line in fs::read_to_string(path).unwrap().lines() {
            // Comments, doc links included, import nothing.
            let code = line.split("//").next().unwrap_or_default();
            text.push_str(code);
            text.push('\n');
        }
    }
}

/// The first segment of every `crate::` path in `text`, and of every item
/// of a `crate::{...}` group (`$crate::`, a macro's path, is not one).
fn names_after_crate(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        if text[..at].ends_with('$') || text[..at].ends_with(|c: char| c.is_alphanumeric()) {
            continue;
        }
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                if item_start && depth == 0 && !c.is_whitespace() && c != '}' {
                    names.insert(ident(&group[i..]));
                    item_start = false;
                }
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    _ => {}
                }
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names.retain(|name| !name.is_empty());
    names
}

/// The layers ARCHITECTURE.md lists for `dropin-host`, top first: the
/// backticked names before the colon of each numbered line.
fn layers(architecture: &str) -> Vec<Vec<String>> {
    architecture
        .split("## The layers of `dropin-host`")
        .nth(1)
        .expect("ARCHITECTURE.md lists dropin-host's layers")
        .split("\n## ")
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (number, rest) = line.split_once(". ")?;
            number.bytes().all(|b| b.is_ascii_digit()).then_some(rest)
        })
        .map(|rest| {
            let names = rest.split(':').next().unwrap_or_default();
            names
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
fn dropin_host_imports_only_from_the_layers_above_in_architecture_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture = fs::read_to_string(root.join("../../ARCHITECTURE.md")).unwrap();
    let layers = layers(&architecture);
    let layer_of = |module: &str| {
        layers
            .iter()
            .position(|layer| layer.iter().any(|m| m == module))
    };
    let modules = imports(&root.join("src"));
    let unlisted: Vec<&String> = modules.keys().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        unlisted.is_empty(),
        "modules ARCHITECTURE.md does not list: {unlisted:?}"
    );
    let mut against = Vec::new();
    for (module, named) in &modules {
        for other in named.iter().filter(|other| modules.contains_key(*other)) {
            if layer_of(other) >= layer_of(module) {
                against.push(format!("{module} imports {other}"));
            }
        }
    }
    assert!(
        against.is_empty(),
        "imports against the layering: {against:?}"
    );
}

/// A circle among `modules`, if there is one.
fn circle(modules: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        modules: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut found = path[at..].to_vec();
            found.push(module.to_owned());
            return Some(found);
        }
        if !done.insert(module.to_owned()) {
            return None;
        }
        path.push(module.to_owned());
        for next in modules.get(module).into_iter().flatten() {
            if modules.contains_key(next)
                && let Some(found) = visit(next, modules, path, done)
            {
                return Some(found);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    modules
        .keys()
        .find_map(|module| visit(module, modules, &mut Vec::new(), &mut done))
}

#[test]
fn the_runtime_and_the_macros_have_no_import_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for crate_src in ["../dropin/src", "../macros/src", "src"] {
        let modules = imports(&root.join(crate_src));
        assert!(modules.len() > 3, "{crate_src}: {modules:?}");
        assert_eq!(circle(&modules), None, "{crate_src}");
    }
}
