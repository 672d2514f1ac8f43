//! The greeter services `greeter-host` offers its plugins: a store of text
//! values by key, separate for each plugin, in memory or kept in a file
//! across runs (`--store FILE`).

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    sync::Mutex,
};

use greeter_interface::{BoxError, GreeterHost};

/// The most bytes a key may have.
const MAX_KEY: usize = 256;
/// The most bytes a value may have.
const MAX_VALUE: usize = 64 * 1024;
/// The most keys one plugin may keep.
const MAX_KEYS: usize = 1024;

/// Values by plugin, then by key.
type Values = BTreeMap<String, BTreeMap<String, String>>;

/// The store: what plugins keep, and where it is written, if anywhere.
#[derive(Debug)]
pub struct Store {
    file: Option<PathBuf>,
    values: Mutex<Values>,
}

impl Store {
    /// A store that keeps values for this run only.
    pub fn in_memory() -> Self {
        Self {
            file: None,
            values: Mutex::new(Values::new()),
        }
    }

    /// A store kept in `file`, read now if it exists.
    ///
    /// # Errors
    ///
    /// The file exists and cannot be read or does not parse.
    pub fn open(file: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let values = match fs::read(file) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{}: expected a store written by greeter-host (JSON)",
                    file.display()
                )
            })?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => Values::new(),
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", file.display()));
            }
        };
        Ok(Self {
            file: Some(file.to_owned()),
            values: Mutex::new(values),
        })
    }

    /// Writes `values` to the file: a new file, then renamed over the old
    /// one, so that a crash never leaves half a store.
    fn write(&self, values: &Values) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let temporary = file.with_file_name(format!(".{name}.{}.new", std::process::id()));
        // A new file: never one that exists, nor a link planted in its
        // place. One left by a crash of a process of the same id goes.
        let _ = fs::remove_file(&temporary);
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut out = options.open(&temporary)?;
        out.write_all(&serde_json::to_vec_pretty(values)?)?;
        out.sync_all()?;
        fs::rename(&temporary, file)
    }
}

/// The plugin whose call is being served.
fn caller() -> Result<String, BoxError> {
    dropin::calling_plugin().ok_or_else(|| "called outside a plugin's call".into())
}

impl GreeterHost for Store {
    fn load(&self, key: &str) -> Result<Option<String>, BoxError> {
        let plugin = caller()?;
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        Ok(values.get(&plugin).and_then(|kept| kept.get(key)).cloned())
    }

    fn store(&self, key: &str, value: &str) -> Result<(), BoxError> {
        let plugin = caller()?;
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(format!(
                "expected a key of at most {MAX_KEY} bytes and a value of at most {MAX_VALUE}, \
                 found {} and {}",
                key.len(),
                value.len()
            )
            .into());
        }
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        let kept = values.entry(plugin).or_default();
        if kept.len() >= MAX_KEYS && !kept.contains_key(key) {
            return Err(format!("expected at most {MAX_KEYS} keys per plugin").into());
        }
        let before = kept.insert(key.to_owned(), value.to_owned());
        if let Err(error) = self.write(&values) {
            // Not kept: as it was before the call.
            let kept = values.entry(caller()?).or_default();
            match before {
                Some(before) => kept.insert(key.to_owned(), before),
                None => kept.remove(key),
            };
            let file = self.file.as_deref().unwrap_or(Path::new(""));
            return Err(format!("cannot write {}: {error}", file.display()).into());
        }
        Ok(())
    }
}
