//! A second interface, declared in the `shout-interface` fixture, loaded by
//! the same loader core as the greeter.

use abi_stable::std_types::RStr;
use greeter_host::{LoadError, Loader, Metadata, PluginInterface};
use greeter_tests::PluginDir;
use shout_interface::{INTERFACE_VERSION, ShoutModRef};

enum Shout {}

impl PluginInterface for Shout {
    type Module = ShoutModRef;

    const NAME: &'static str = "shout";
    const VERSION: &'static str = INTERFACE_VERSION;

    fn metadata(module: ShoutModRef) -> Metadata {
        Metadata {
            name: module.name().as_str(),
            version: module.version().as_str(),
            interface_version: module.interface_version().as_str(),
            host_requirement: None,
        }
    }
}

#[test]
fn the_loader_loads_plugins_of_another_interface_and_rejects_greeters() {
    let dir = PluginDir::with(&["shout_plugin", "hello"]);
    let report = Loader::<Shout>::builder()
        .dir(dir.path())
        .build()
        .load()
        .unwrap();

    let shout = report
        .registry
        .get("shout")
        .expect("the shout plugin loads");
    assert_eq!(shout.version().to_string(), "0.3.0");
    assert_eq!((shout.module().shout())(RStr::from_str("hello")), "HELLO!");

    assert_eq!(report.rejected.len(), 1);
    let error = &report.rejected[0];
    assert!(
        matches!(
            error,
            LoadError::Layout {
                interface: "shout",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().ends_with(&format!(
            "not a shout plugin of a compatible layout (its interface version {}, the host's 1.0.0): \
             mismatched type: expected ShoutMod, found GreeterMod",
            greeter_interface::INTERFACE_VERSION
        )),
        "{error}"
    );
}
