//! `lock`: the lock file written from a recording.

use std::io::Write;

use dropin_host::{ErrorChain, Loader, Recording};
use greeter_interface::GreeterPlugin;

use crate::output::shown;

/// Writes the folder's lock file from a recording, and says what it holds.
pub(crate) fn write_lock(
    out: &mut impl Write,
    recording: &Recording,
    loader: &Loader<GreeterPlugin>,
) -> anyhow::Result<()> {
    let path = loader.lockfile_path();
    recording.lockfile().write(&path)?;
    writeln!(
        out,
        "wrote {}: {} plugin files locked",
        path.display(),
        recording.entries.len()
    )?;
    for error in &recording.refused {
        writeln!(out, "not locked  {}", shown(&ErrorChain(error).to_string()))?;
    }
    Ok(())
}
