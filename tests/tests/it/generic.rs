//! A second interface, the example `transform-interface`, served by the same
//! framework as the greeter: its plugins, its types and its application.

use std::process::Command;

use dropin::{CallErrorKind, Interface};
use dropin_host::LoadErrorKind;
use greeter_tests::{PluginDir, artifacts, stderr, stdout};
use transform_interface::{Direction, Info, TransformPlugin};

#[test]
fn the_loader_loads_plugins_of_another_interface_and_rejects_greeters() {
    let dir = PluginDir::with(&["upper", "rot13", "hello"]);
    let report = dir.load_as::<TransformPlugin>();

    let upper = report.registry.get("upper").expect("upper loads");
    assert_eq!(upper.version().to_string(), "1.0.0");
    assert_eq!(upper.apply("shout", Direction::Forward).unwrap(), "SHOUT");
    assert_eq!(
        upper.info().unwrap(),
        Info {
            summary: "upper-cases text".to_owned(),
            inverse: None,
        }
    );
    // A plugin's own error comes back as `Failed`, and the plugin stays usable.
    let error = upper.apply("x", Direction::Backward).unwrap_err();
    assert_eq!(error.kind(), CallErrorKind::Failed);
    assert_eq!(
        error.to_string(),
        "plugin 'upper' failed: upper case cannot be undone"
    );
    assert_eq!(upper.failure(), None);
    // The interface's default `apply_bytes` runs inside the plugin.
    assert_eq!(
        upper.apply_bytes(b"abc", Direction::Forward).unwrap(),
        b"ABC"
    );
    assert_eq!(
        upper
            .apply_bytes(&[0xff], Direction::Forward)
            .unwrap_err()
            .message(),
        "invalid utf-8 sequence of 1 bytes from index 0"
    );

    let rot13 = report.registry.get("rot13").expect("rot13 loads");
    assert_eq!(
        rot13.info().unwrap().inverse.as_deref(),
        Some("rot13"),
        "an Option<String> inside a struct crosses both ways"
    );
    assert_eq!(
        rot13
            .apply_bytes(&[b'a', 0xff], Direction::Backward)
            .unwrap(),
        [b'n', 0xff]
    );

    assert_eq!(report.rejected.len(), 1);
    let error = &report.rejected[0];
    assert!(
        matches!(
            error.kind(),
            LoadErrorKind::WrongInterface { expected, .. } if expected == "transform"
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "{}: not a transform plugin: expected interface transform, found greeter 2.1.0",
            error.path().display()
        )
    );
    assert_eq!(TransformPlugin::NAME, "transform");
}

#[test]
fn the_example_application_runs_text_through_every_transform() {
    let dir = PluginDir::with(&["upper", "rot13"]);
    let output = Command::new(artifacts().binary("transform-app"))
        .arg("--plugins-dir")
        .arg(dir.path())
        .arg("Hello, World")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&output),
        "rot13: Uryyb, Jbeyq / Hello, World (rotates letters by 13 places)\n\
         upper: HELLO, WORLD / (cannot be undone) (upper-cases text)\n"
    );
    assert_eq!(stderr(&output), "");
    assert_eq!(output.status.code(), Some(0));
    // The application offers words to keep through its services; `upper`
    // asks for them on every call.
    let output = Command::new(artifacts().binary("transform-app"))
        .arg("--plugins-dir")
        .arg(dir.path())
        .args(["--keep", "World", "Hello, World!"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&output),
        "rot13: Uryyb, Jbeyq! / Hello, World! (rotates letters by 13 places)\n\
         upper: HELLO, World! / (cannot be undone) (upper-cases text)\n"
    );
    assert_eq!(output.status.code(), Some(0));
}
