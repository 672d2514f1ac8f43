use std::fs;

use dropin_host::{DiscoverError, LoadErrorKind, Loader, LoaderError, discover};
use greeter_interface::GreeterPlugin;
use greeter_tests::{PluginDir, library_file_name};

#[test]
fn only_visible_entries_named_like_libraries_are_candidates() {
    let dir = PluginDir::new();
    let hello = dir.add("hello");
    dir.add_as("hellohello", &format!(".{}", library_file_name("hidden")));
    dir.add_as("hellohello", "libhellohello.rlib");
    dir.add_as("hellohello", &format!("{}.bak", library_file_name("old")));
    dir.write("README.txt", b"plugins go here\n");
    fs::create_dir(dir.path().join("subfolder")).unwrap();

    assert_eq!(discover(dir.path()).unwrap(), [hello]);
    let report = dir.load();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(report.registry.len(), 1);
}

#[test]
fn a_folder_or_a_broken_link_named_like_a_library_is_rejected_not_skipped() {
    let dir = PluginDir::with(&["hello"]);
    let folder = dir.path().join(library_file_name("folder"));
    fs::create_dir(&folder).unwrap();
    let report = dir.load();
    assert!(
        matches!(&report.rejected[..], [error] if matches!(error.kind(), LoadErrorKind::NotAFile { found: "a folder" }) && error.path() == folder)
    );
    assert_eq!(
        report.rejected[0].to_string(),
        format!(
            "{}: expected a regular library file, found a folder",
            folder.display()
        )
    );

    #[cfg(unix)]
    {
        let dir = PluginDir::with(&["hello"]);
        let link = dir.path().join(library_file_name("dangling"));
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        let report = dir.load();
        assert!(
            matches!(&report.rejected[..], [error] if matches!(error.kind(), LoadErrorKind::Unreadable { .. }) && error.path() == link)
        );
        assert_eq!(
            report.registry.get("hello").unwrap().greet().unwrap(),
            "Hello!"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_link_to_a_plugin_is_followed() {
    let real = PluginDir::with(&["hello"]);
    let dir = PluginDir::new();
    let link = dir.path().join(library_file_name("linked"));
    std::os::unix::fs::symlink(real.path().join(library_file_name("hello")), &link).unwrap();
    let report = dir.load();
    assert_eq!(report.registry.get("hello").unwrap().path(), link);
}

#[test]
fn a_missing_folder_is_an_error_naming_it() {
    let dir = PluginDir::new();
    let missing = dir.path().join("nope");
    let error = greeter_tests::trusted(Loader::<GreeterPlugin>::builder().dir(&missing))
        .load()
        .unwrap_err();
    assert!(
        matches!(error, LoaderError::Discover(DiscoverError::NotFound { .. })),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("plugins folder {} does not exist", missing.display())
    );
}

#[test]
fn an_empty_folder_loads_nothing() {
    let report = PluginDir::new().load();
    assert!(report.registry.is_empty());
    assert!(report.rejected.is_empty());
}
