//! The names `Plugin<I>` reserves: its own public methods hide an
//! interface's methods of the same name (it dereferences to the generated
//! handle), so the interface macro refuses them. The macro keeps the list;
//! this test holds it to `Plugin`'s methods, both ways.

use std::{collections::BTreeSet, fs, path::Path};

use syn::{ImplItem, Item, Type};

/// The string literals of `const RESERVED` in the macro's `ast.rs`.
fn macro_list(macros: &Path) -> BTreeSet<String> {
    let file = syn::parse_file(&fs::read_to_string(macros.join("src/ast.rs")).unwrap()).unwrap();
    let list = file
        .items
        .iter()
        .find_map(|item| match item {
            Item::Const(constant) if constant.ident == "RESERVED" => Some(&constant.expr),
            _ => None,
        })
        .expect("ast.rs has const RESERVED");
    let syn::Expr::Reference(reference) = &**list else {
        panic!("RESERVED is &[...]");
    };
    let syn::Expr::Array(array) = &*reference.expr else {
        panic!("RESERVED is &[...]");
    };
    array
        .elems
        .iter()
        .map(|element| match element {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(text),
                ..
            }) => text.value(),
            _ => panic!("RESERVED holds string literals only"),
        })
        .collect()
}

/// Every public method of `Plugin` in the host's sources, and the methods of
/// the traits it implements for itself that a call could reach (`deref`).
fn plugin_methods(src: &Path, names: &mut BTreeSet<String>) {
    for entry in fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            plugin_methods(&path, names);
            continue;
        }
        if path.extension() != Some("rs".as_ref()) {
            continue;
        }
        let file = syn::parse_file(&fs::read_to_string(&path).unwrap()).unwrap();
        for item in &file.items {
            let Item::Impl(block) = item else { continue };
            let Type::Path(target) = &*block.self_ty else {
                continue;
            };
            if target
                .path
                .segments
                .last()
                .is_none_or(|last| last.ident != "Plugin")
            {
                continue;
            }
            let is_deref = block.trait_.as_ref().is_some_and(|(_, name, _)| {
                name.segments.last().is_some_and(|s| s.ident == "Deref")
            });
            for member in &block.items {
                if let ImplItem::Fn(function) = member
                    && (is_deref || matches!(function.vis, syn::Visibility::Public(_)))
                {
                    names.insert(function.sig.ident.to_string());
                }
            }
        }
    }
}

#[test]
fn the_macro_reserves_exactly_the_names_plugin_uses() {
    let host = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reserved = macro_list(&host.join("../macros"));
    let mut used = BTreeSet::new();
    plugin_methods(&host.join("src"), &mut used);
    assert!(used.contains("name") && used.contains("deref"), "{used:?}");
    let unreserved: Vec<_> = used.difference(&reserved).collect();
    let stale: Vec<_> = reserved.difference(&used).collect();
    assert!(
        unreserved.is_empty() && stale.is_empty(),
        "Plugin's methods the macro does not reserve: {unreserved:?}; reserved names Plugin no \
         longer has: {stale:?}"
    );
}
