use std::fs;

use greeter_host::{DiscoverError, GreeterInterface, Loader, discover};
use greeter_tests::{PluginDir, library_file_name};

#[test]
fn only_visible_library_files_are_candidates() {
    let dir = PluginDir::new();
    let hello = dir.add("hello");
    dir.add_as("hellohello", &format!(".{}", library_file_name("hidden")));
    dir.add_as("hellohello", "libhellohello.rlib");
    dir.add_as("hellohello", &format!("{}.bak", library_file_name("old")));
    dir.write("README.txt", b"plugins go here\n");
    fs::create_dir(dir.path().join(library_file_name("folder"))).unwrap();

    assert_eq!(discover(dir.path()).unwrap(), [hello]);
    let report = dir.load();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(report.registry.len(), 1);
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
    let error = Loader::<GreeterInterface>::builder()
        .dir(&missing)
        .build()
        .load()
        .unwrap_err();
    assert!(matches!(error, DiscoverError::NotFound { .. }), "{error:?}");
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
