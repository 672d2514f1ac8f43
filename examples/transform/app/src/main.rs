//! `transform-app [--plugins-dir DIR] [--keep WORD]... TEXT`: runs `TEXT`
//! through every transform plugin of the folder (default `./plugins`),
//! forward and back. The words given with `--keep` are offered to plugins
//! as protected (the `TransformHost` services).

use std::process::ExitCode;

use dropin_host::{ErrorChain, Loader};
use transform_interface::{
    BoxError, Direction, TransformHost, TransformHostHandle, TransformPlugin,
};

/// The services this application offers: the words given with `--keep`.
struct Keep(Vec<String>);

impl TransformHost for Keep {
    fn protected_words(&self) -> Result<Vec<String>, BoxError> {
        Ok(self.0.clone())
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = "plugins".to_owned();
    if args.first().is_some_and(|arg| arg == "--plugins-dir") && args.len() > 1 {
        dir = args.remove(1);
        args.remove(0);
    }
    let mut keep = Vec::new();
    while args.first().is_some_and(|arg| arg == "--keep") && args.len() > 1 {
        keep.push(args.remove(1));
        args.remove(0);
    }
    let [text] = args.as_slice() else {
        eprintln!("usage: transform-app [--plugins-dir DIR] [--keep WORD]... TEXT");
        return ExitCode::from(2);
    };
    let builder = Loader::<TransformPlugin>::builder()
        .dir(&dir)
        .services(TransformHostHandle::provided_by(Keep(keep)));
    // SAFETY: the plugins folder holds the transforms built from this
    // repository (`examples/transform/`), which run in this process as this
    // program's own code does.
    let loader = unsafe { builder.build() };
    let report = match loader.load() {
        Ok(report) => report,
        Err(error) => {
            eprintln!("transform-app: {}", ErrorChain(&error));
            return ExitCode::from(2);
        }
    };
    let mut ok = report.rejected.is_empty();
    for error in &report.rejected {
        eprintln!("transform-app: rejected {}", ErrorChain(error));
    }
    for plugin in report.registry.iter() {
        let result = plugin.info().and_then(|info| {
            let forward = plugin.apply(text, Direction::Forward)?;
            let back = match info.inverse {
                Some(_) => plugin.apply(&forward, Direction::Backward)?.into_string(),
                None => "(cannot be undone)".to_owned(),
            };
            Ok(format!("{forward} / {back} ({})", info.summary))
        });
        match result {
            Ok(line) => println!("{}: {line}", plugin.name()),
            Err(error) => {
                eprintln!("transform-app: {error}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
