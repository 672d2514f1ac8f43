//! The plugins folder's configuration file, read by the library: each
//! plugin's table read typed in both modes, the application's settings
//! under what it gives in code, and what the file may not be.

use std::time::Duration;

use dropin::CallErrorKind;
use dropin_host::{ConfigFileError, ErrorChain, LoadErrorKind, LoaderBuilder, LoaderError};
use greeter_interface::GreeterPlugin;
use greeter_tests::{PluginDir, library_file_name};

/// Loads `dir` in this process, or with every plugin isolated.
fn load(
    builder: LoaderBuilder<GreeterPlugin>,
    isolated: bool,
) -> Result<dropin_host::LoadReport<GreeterPlugin>, LoaderError> {
    if isolated {
        builder.build_isolated().load()
    } else {
        // SAFETY: the test's own example plugins.
        unsafe { builder.build() }.load()
    }
}

/// What plugin `name`'s `init` said, the only rejection of the load.
fn init_error(dir: &PluginDir, isolated: bool, name: &str) -> String {
    let report = load(dir.probed_loader(), isolated).unwrap();
    assert_eq!(report.rejected.len(), 1, "{:?}", report.rejected);
    let error = &report.rejected[0];
    assert_eq!(error.path(), dir.path().join(library_file_name(name)));
    match error.kind() {
        LoadErrorKind::Init { message } => message.clone(),
        other => panic!("expected a failed init, found {other:?}"),
    }
}

#[test]
fn a_plugin_reads_its_table_typed_in_both_modes() {
    let dir = PluginDir::with(&["counter", "hello"]);
    let file = dir.write("plugins.toml", b"[plugin.counter]\nstart = 41\n");
    for isolated in [false, true] {
        let report = load(dir.probed_loader(), isolated).unwrap();
        assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        let counter = report.registry.get("counter").unwrap();
        assert_eq!(counter.core().is_isolated(), isolated);
        assert_eq!(counter.greet().unwrap(), "Hello, visitor #42!");
    }

    // A value of the wrong type, and a key the plugin does not read: the
    // plugin refuses them naming the file, its table and the key, and only
    // it is rejected.
    for (table, expected) in [
        (
            "start = \"soon\"\n",
            "key `start`: invalid type: string \"soon\", expected u64",
        ),
        (
            "strat = 41\n",
            "unknown key `strat`: expected only the keys the plugin reads",
        ),
    ] {
        dir.write(
            "plugins.toml",
            format!("[plugin.counter]\n{table}").as_bytes(),
        );
        for isolated in [false, true] {
            assert_eq!(
                init_error(&dir, isolated, "counter"),
                format!("{}: [plugin.counter]: {expected}", file.display()),
                "isolated: {isolated}"
            );
        }
    }
}

#[test]
fn configuration_given_in_code_wins_over_the_file() {
    let dir = PluginDir::with(&["counter", "runs_at_open"]);
    dir.write(
        "plugins.toml",
        b"memory_limit = \"8M\"\n[call_timeout]\nruns-at-open = \"30s\"\n[plugin.counter]\n\
          start = 41\n[plugin.runs-at-open]\ngreet = \"hang\"\n",
    );
    let report = load(
        dir.probed_loader()
            .config("counter", "start = 7")
            .call_timeout(Duration::from_millis(300))
            // The file's 8 MiB would keep any process from starting.
            .isolation_memory_limit(4 << 30),
        true,
    )
    .unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(
        report.registry.get("counter").unwrap().greet().unwrap(),
        "Hello, visitor #8!"
    );
    // The file's own table reached the other plugin; the timeout given in
    // code, for every plugin, ended its call before the file's own for it.
    let error = report
        .registry
        .get("runs-at-open")
        .unwrap()
        .greet()
        .unwrap_err();
    assert_eq!(error.kind(), CallErrorKind::TimedOut);
    assert_eq!(
        error.to_string(),
        "plugin 'runs-at-open' timed out: its process did not answer within 300ms and was killed"
    );
}

/// `"*"` in `[call_timeout]` is every plugin's the table does not name.
#[test]
fn the_files_default_call_timeout_stands_beside_a_plugins_own() {
    let dir = PluginDir::with(&["runs_at_open"]);
    for (timeouts, within) in [
        ("\"*\" = \"300ms\"\n", "300ms"),
        ("\"*\" = \"300ms\"\nruns-at-open = \"400ms\"\n", "400ms"),
    ] {
        dir.write(
            "plugins.toml",
            format!(
                "isolate = true\n[call_timeout]\n{timeouts}[plugin.runs-at-open]\ngreet = \"hang\"\n"
            )
            .as_bytes(),
        );
        let report = load(dir.probed_loader(), true).unwrap();
        let error = report
            .registry
            .get("runs-at-open")
            .unwrap()
            .greet()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "plugin 'runs-at-open' timed out: its process did not answer within {within} and \
                 was killed"
            )
        );
    }
}

#[test]
fn the_file_isolates_the_plugins_it_names() {
    let dir = PluginDir::with(&["counter", "hello"]);
    dir.write("plugins.toml", b"isolate = [\"counter\"]\n");
    let report = load(dir.probed_loader(), false).unwrap();
    assert!(report.registry.get("counter").unwrap().core().is_isolated());
    assert!(!report.registry.get("hello").unwrap().core().is_isolated());
}

#[test]
fn a_named_file_replaces_the_folders_and_must_exist() {
    let dir = PluginDir::with(&["counter"]);
    // The folder's own file would stop everything: it is not read.
    dir.write("plugins.toml", b"isolated = true\n");
    let elsewhere = tempfile::tempdir().unwrap();
    let named = elsewhere.path().join("app.toml");
    std::fs::write(&named, "[plugin.counter]\nstart = 41\n").unwrap();
    let report = load(dir.probed_loader().config_file(&named), false).unwrap();
    assert_eq!(
        report.registry.get("counter").unwrap().greet().unwrap(),
        "Hello, visitor #42!"
    );
    let report = load(dir.probed_loader().without_config_file(), false).unwrap();
    assert_eq!(
        report.registry.get("counter").unwrap().greet().unwrap(),
        "Hello, visitor #1!"
    );

    let missing = elsewhere.path().join("missing.toml");
    let error = load(dir.probed_loader().config_file(&missing), false).unwrap_err();
    assert!(
        matches!(&error, LoaderError::Config(e) if matches!(**e, ConfigFileError::Missing { .. })),
        "{error:?}"
    );
    assert_eq!(
        ErrorChain(&error).to_string(),
        format!(
            "{}: expected the configuration file the application names, found nothing",
            missing.display()
        )
    );
}

/// The file is read by the lock file's rules: every load, survey and
/// recording fails with the same error, naming the file.
#[cfg(unix)]
#[test]
fn an_unsafe_or_wrong_file_stops_every_load_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = PluginDir::with(&["hello"]);
    let file = dir.write("plugins.toml", b"[plugin.hello]\n");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o646)).unwrap();
    // SAFETY: the test's own example plugin (none loads: the file stops it).
    let loader = unsafe { dir.probed_loader().build() };
    let expected = format!(
        "configuration {} is not safe: writable by others (mode 0646); expected no write \
         permission for group or others",
        file.display()
    );
    assert_eq!(
        ErrorChain(&loader.load().unwrap_err()).to_string(),
        expected
    );
    assert_eq!(
        ErrorChain(&loader.survey().unwrap_err()).to_string(),
        expected
    );
    assert_eq!(
        ErrorChain(&loader.record().unwrap_err()).to_string(),
        expected
    );

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    dir.write("plugins.toml", b"memory_limit = \"lots\"\n");
    assert_eq!(
        ErrorChain(&load(dir.probed_loader(), true).unwrap_err()).to_string(),
        format!(
            "{}: key `memory_limit`: expected a size such as \"512M\" or \"2G\", or a number of \
             bytes, found \"lots\"",
            file.display()
        )
    );

    let fifo = dir.path().join("plugins.toml");
    std::fs::remove_file(&fifo).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let watchdog = greeter_tests::deadline(greeter_tests::HANG, "a FIFO as the configuration");
    let error = load(dir.probed_loader(), false).unwrap_err();
    drop(watchdog);
    assert_eq!(
        ErrorChain(&error).to_string(),
        format!(
            "{}: expected a regular file for the configuration, found a FIFO",
            fifo.display()
        )
    );
}

/// The README's example file, every setting in it, is read as the README
/// says: `counter` isolated, its table handed to it.
#[test]
fn the_readmes_example_file_is_read_as_it_says() {
    let blocks = crate::readme::readme_blocks("config");
    let [(name, text)] = blocks.as_slice() else {
        panic!("expected one configuration block in the README, found {blocks:?}");
    };
    assert_eq!(name, "plugins.toml");
    let dir = PluginDir::with(&["counter", "hello"]);
    dir.write(name, text.as_bytes());
    // SAFETY: the test's own example plugins; a survey runs none of them.
    let survey = unsafe { dir.probed_loader().build() }.survey().unwrap();
    let isolated: Vec<(&str, bool)> = survey
        .plugins
        .iter()
        .map(|plugin| (plugin.name(), plugin.is_isolated()))
        .collect();
    assert_eq!(isolated, [("counter", true), ("hello", false)]);
    let report = load(dir.probed_loader().confine_isolated(false), false).unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(
        report.registry.get("counter").unwrap().greet().unwrap(),
        "Hello, visitor #42!"
    );
}

/// A misspelt name would leave its plugin in this process, or without its
/// settings, without a word: each name no loaded plugin has is a warning.
#[test]
fn names_no_plugin_has_are_warned_of() {
    let dir = PluginDir::with(&["counter", "hello"]);
    dir.write(
        "plugins.toml",
        b"isolate = [\"helo\", \"counter\"]\n[call_timeout]\n\"*\" = \"5s\"\nhelo = \"1s\"\n\
          [plugin.countr]\nstart = 41\n",
    );
    let output = dir.run(&["greet"]);
    assert_eq!(
        greeter_tests::stdout(&output),
        "counter: Hello, visitor #1!\nhello: Hello!\n"
    );
    let log = greeter_tests::stderr(&output);
    for warning in [
        format!(
            " WARN  dropin_host::loader] isolation is asked for plugin 'helo', but no plugin in \
             {} has that name: is it spelt as the plugin names itself?\n",
            dir.path().display()
        ),
        format!(
            " WARN  dropin_host::loader] there is configuration for plugin 'countr', but no \
             plugin in {} has that name: is it spelt as the plugin names itself?\n",
            dir.path().display()
        ),
        format!(
            " WARN  dropin_host::loader] a call timeout is set for plugin 'helo', but no plugin \
             in {} has that name: is it spelt as the plugin names itself?\n",
            dir.path().display()
        ),
    ] {
        assert!(log.contains(&warning), "{log}");
    }
    assert_eq!(log.lines().count(), 3, "{log}");
    assert_eq!(output.status.code(), Some(0));
}
