//! The plugins folder's configuration file (`plugins.toml`): the
//! application's settings for its plugins, and each plugin's own table.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    child::isolation::{self, Isolate, Recovery},
    trust::trusted_file::{TrustedFileError, read_trusted_text},
};

/// The configuration file's name in the plugins folder, read by default
/// when the loader is built (if it is there), by the lock file's rules: a
/// regular file, writable by nobody but its owner, owned by this user or
/// root, at most [`MAX_CONFIG_SIZE`] bytes of UTF-8. It holds:
///
/// ```toml
/// isolate = ["counter"]  # true, false, or plugin names: added to the rules given in code
/// call_timeout = "2s"    # every isolated plugin's; or a table: [call_timeout] "*" = "2s", counter = "5s"
/// start_timeout = "10s"  # how long an isolated plugin's process may take to start and run `init`
/// memory_limit = "512M"  # an isolated plugin's process's address space ("2G", or bytes)
/// process_limit = 64     # the processes and threads an isolated plugin may run at once
/// restarts = 3           # how often a crashed isolated plugin starts again (RESTART_BACKOFF)
/// confine = true         # confine isolated plugins' processes
///
/// [plugin.counter]       # the plugin's own table: `dropin::Context::config`
/// start = 41
/// ```
///
/// A setting given in code ([`LoaderBuilder`](crate::LoaderBuilder)) wins
/// over the same setting in the file, and configuration given in code for a
/// plugin replaces its table. Any other key, or a value of another type,
/// is a [`ConfigFileError`] naming the file, the key, what was expected
/// and what was found.
pub const CONFIG_FILE_NAME: &str = "plugins.toml";

/// The largest configuration file read: far more than a thousand plugins'
/// tables need.
pub const MAX_CONFIG_SIZE: u64 = 1 << 20;

/// The keys the file's top level may have, as its errors list them.
const EXPECTED_KEYS: &str = "`isolate`, `call_timeout`, `start_timeout`, `memory_limit`, \
                             `process_limit`, `restarts`, `confine` or [plugin.<name>] tables";

/// The key of a `[call_timeout]` table that sets the timeout of every
/// plugin the table does not name.
const ANY_PLUGIN: &str = "*";

/// How long an isolated plugin whose process ended waits before its first
/// restart (`restarts` in the file); each later one waits twice as long.
pub const RESTART_BACKOFF: Duration = Duration::from_millis(100);

/// Why the configuration file could not be used: nothing is loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file could not be read by the lock file's rules (a regular file,
    /// writable by nobody else, at most [`MAX_CONFIG_SIZE`] bytes of UTF-8).
    #[error(transparent)]
    Read(#[from] TrustedFileError),
    /// The application named a file that does not exist.
    #[error("{}: expected the configuration file the application names, found nothing", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// Not TOML.
    #[error("{}: invalid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What the parser said, with the line and column.
        message: String,
    },
    /// A key the file may not have.
    #[error("{}: unknown key `{key}`: expected {EXPECTED_KEYS}", path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key, dotted from the top.
        key: String,
    },
    /// A setting whose value is not one it takes.
    #[error("{}: key `{key}`: expected {expected}, found {found}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, dotted from the top.
        key: String,
        /// What it takes.
        expected: &'static str,
        /// What it has.
        found: String,
    },
}

/// Which configuration file a loader reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// [`CONFIG_FILE_NAME`] in the plugins folder, if it exists.
    InFolder,
    /// The file the application named, which must exist.
    File(PathBuf),
    /// None.
    Off,
}

/// The isolation settings that code or the file may choose, each `None`
/// where it does not.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Chosen {
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) start_timeout: Option<Duration>,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) process_limit: Option<u32>,
    pub(crate) recovery: Option<Recovery>,
    pub(crate) confined: Option<bool>,
}

impl Chosen {
    /// These choices, and `other`'s where these make none.
    fn or(self, other: Self) -> Self {
        Self {
            call_timeout: self.call_timeout.or(other.call_timeout),
            start_timeout: self.start_timeout.or(other.start_timeout),
            memory_limit: self.memory_limit.or(other.memory_limit),
            process_limit: self.process_limit.or(other.process_limit),
            recovery: self.recovery.or(other.recovery),
            confined: self.confined.or(other.confined),
        }
    }

    /// `settings` with these choices made.
    fn apply_to(self, settings: &mut isolation::Settings) {
        if let Some(timeout) = self.call_timeout {
            settings.call_timeout = timeout;
        }
        if let Some(timeout) = self.start_timeout {
            settings.start_timeout = timeout;
        }
        if let Some(bytes) = self.memory_limit {
            settings.memory_limit = Some(bytes);
        }
        if let Some(processes) = self.process_limit {
            settings.process_limit = Some(processes);
        }
        if let Some(recovery) = self.recovery {
            settings.recovery = recovery;
        }
        if let Some(confined) = self.confined {
            settings.confined = confined;
        }
    }
}

/// Each plugin's configuration: what the application gave in code, else its
/// table of the file, as TOML.
#[derive(Debug, Clone, Default)]
pub(crate) struct PluginConfigs {
    /// Given in code, by plugin name.
    pub(crate) given: HashMap<String, String>,
    /// The file's tables, by plugin name.
    pub(crate) tables: HashMap<String, String>,
    /// The file read, if there is one.
    pub(crate) file: Option<PathBuf>,
}

impl PluginConfigs {
    /// The configuration of plugin `name`, and the file it is from (when it
    /// is not given in code and a file is read).
    pub(crate) fn of(&self, name: &str) -> (&str, Option<&Path>) {
        match self.given.get(name) {
            Some(text) => (text, None),
            None => (
                self.tables.get(name).map_or("", String::as_str),
                self.file.as_deref(),
            ),
        }
    }
}

/// Reads the configuration file `source` names for the plugins folder `dir`,
/// and makes `isolation` what the application `chose` in code and, where it
/// chose nothing, what the file says; the file's `isolate` rules are added
/// to the application's, and its tables go to the plugins the application
/// gave no configuration.
pub(crate) fn apply(
    source: &Source,
    dir: &Path,
    check_permissions: bool,
    chosen: Chosen,
    isolation: &mut isolation::Settings,
    configs: &mut PluginConfigs,
) -> Result<(), ConfigFileError> {
    let file = read(source, dir, check_permissions)?;
    let Some((path, file)) = file else {
        chosen.apply_to(isolation);
        return Ok(());
    };
    // A call timeout given in code replaces all of the file's, each
    // plugin's included; one given in code for a plugin replaces the
    // file's for it.
    if chosen.call_timeout.is_none() {
        for (name, timeout) in file.call_timeouts {
            isolation.call_timeouts.entry(name).or_insert(timeout);
        }
    }
    chosen.or(file.chosen).apply_to(isolation);
    isolation.rules.extend(file.isolate);
    configs.file = Some(path);
    configs.tables = file.tables;
    Ok(())
}

/// The file `source` names for the plugins folder `dir`, and what it says;
/// `None` if there is none to read.
fn read(
    source: &Source,
    dir: &Path,
    check_permissions: bool,
) -> Result<Option<(PathBuf, File)>, ConfigFileError> {
    let (path, required) = match source {
        Source::Off => return Ok(None),
        Source::InFolder => (dir.join(CONFIG_FILE_NAME), false),
        Source::File(path) => (path.clone(), true),
    };
    match read_trusted_text(&path, "configuration", check_permissions, MAX_CONFIG_SIZE)? {
        Some(text) => {
            let file = parse(&path, &text)?;
            Ok(Some((path, file)))
        }
        None if required => Err(ConfigFileError::Missing { path }),
        None => Ok(None),
    }
}

/// What the file says.
#[derive(Debug, Default)]
struct File {
    isolate: Option<Isolate>,
    /// Its isolation settings (`restarts` as the recovery it asks for).
    chosen: Chosen,
    call_timeouts: HashMap<String, Duration>,
    tables: HashMap<String, String>,
}

/// What a duration's error says was expected.
const A_DURATION: &str = "a duration such as \"500ms\" or \"30s\"";

/// `value` as a duration, if it is one: a string that [`parse_duration`]
/// reads.
fn duration(value: &toml::Value) -> Option<Duration> {
    value.as_str().and_then(|text| parse_duration(text).ok())
}

fn parse(path: &Path, text: &str) -> Result<File, ConfigFileError> {
    let table: toml::Table = toml::from_str(text).map_err(|error| ConfigFileError::Syntax {
        path: path.to_owned(),
        message: syntax_message(text, &error),
    })?;
    let invalid = |key: &str, expected, found: &toml::Value| ConfigFileError::Invalid {
        path: path.to_owned(),
        key: key.to_owned(),
        expected,
        found: shortened(found.to_string()),
    };
    let mut file = File::default();
    for (key, value) in &table {
        match key.as_str() {
            "isolate" => {
                const EXPECTED: &str = "true, false or a list of plugin names";
                file.isolate = match value {
                    toml::Value::Boolean(all) => all.then_some(Isolate::All),
                    toml::Value::Array(names) => Some(Isolate::Plugins(
                        names
                            .iter()
                            .map(|name| name.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| invalid(key, EXPECTED, value))?,
                    )),
                    _ => return Err(invalid(key, EXPECTED, value)),
                };
            }
            "call_timeout" => match value {
                toml::Value::Table(timeouts) => {
                    for (name, timeout) in timeouts {
                        let timeout = duration(timeout).ok_or_else(|| {
                            invalid(
                                &format!("call_timeout.{}", key_name(name)),
                                A_DURATION,
                                timeout,
                            )
                        })?;
                        // `"*"`: every other plugin's, as `call_timeout = ".."`
                        // would say if TOML let a key be a value and a table.
                        if name == ANY_PLUGIN {
                            file.chosen.call_timeout = Some(timeout);
                        } else {
                            file.call_timeouts.insert(name.clone(), timeout);
                        }
                    }
                }
                _ => {
                    file.chosen.call_timeout = Some(duration(value).ok_or_else(|| {
                        invalid(
                            key,
                            "a duration such as \"500ms\" or \"30s\", or a table of plugin names \
                             and durations",
                            value,
                        )
                    })?);
                }
            },
            "start_timeout" => {
                file.chosen.start_timeout =
                    Some(duration(value).ok_or_else(|| invalid(key, A_DURATION, value))?);
            }
            "memory_limit" => {
                let bytes = match value {
                    toml::Value::String(text) => parse_size(text).ok(),
                    toml::Value::Integer(bytes) => u64::try_from(*bytes).ok().filter(|&b| b > 0),
                    _ => None,
                };
                file.chosen.memory_limit = Some(bytes.ok_or_else(|| {
                    invalid(
                        key,
                        "a size such as \"512M\" or \"2G\", or a number of bytes",
                        value,
                    )
                })?);
            }
            "process_limit" => {
                const _: () = assert!(isolation::MIN_PROCESS_LIMIT == 32, "the message says 32");
                let processes = value
                    .as_integer()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|&n| n >= isolation::MIN_PROCESS_LIMIT);
                file.chosen.process_limit = Some(processes.ok_or_else(|| {
                    invalid(key, "a number of processes and threads, 32 or more", value)
                })?);
            }
            "restarts" => {
                let attempts = value.as_integer().and_then(|n| u32::try_from(n).ok());
                let attempts = attempts
                    .ok_or_else(|| invalid(key, "a number of restarts, 0 or more", value))?;
                file.chosen.recovery = Some(match attempts {
                    0 => Recovery::Disable,
                    attempts => Recovery::Restart {
                        attempts,
                        backoff: RESTART_BACKOFF,
                    },
                });
            }
            "confine" => {
                file.chosen.confined = Some(
                    value
                        .as_bool()
                        .ok_or_else(|| invalid(key, "true or false", value))?,
                );
            }
            "plugin" => {
                let Some(plugins) = value.as_table() else {
                    return Err(invalid(key, "[plugin.<name>] tables", value));
                };
                for (name, table) in plugins {
                    let Some(table) = table.as_table() else {
                        return Err(invalid(
                            &format!("plugin.{}", key_name(name)),
                            "a table of the plugin's settings",
                            table,
                        ));
                    };
                    let text = toml::to_string(table).expect("a parsed table serialises");
                    file.tables.insert(name.clone(), text);
                }
            }
            _ => {
                return Err(ConfigFileError::UnknownKey {
                    path: path.to_owned(),
                    key: key_name(key),
                });
            }
        }
    }
    Ok(file)
}

/// The parser's message about `text` on one line, with where: `at line 3,
/// column 9: invalid table header`.
fn syntax_message(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end().replace('\n', "; ");
    match error.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
            // What the span covers, when it is a short word: the key of a
            // duplicate key.
            let covered = text.get(span.clone()).map(str::trim).filter(|covered| {
                !covered.is_empty() && covered.len() <= 40 && !covered.contains('\n')
            });
            match covered {
                Some(covered) => format!("at line {line}, column {column}, `{covered}`: {message}"),
                None => format!("at line {line}, column {column}: {message}"),
            }
        }
        None => message,
    }
}

/// A value as an error shows it: at most 80 characters of it.
fn shortened(mut shown: String) -> String {
    if let Some((cut, _)) = shown.char_indices().nth(80) {
        shown.truncate(cut);
        shown.push_str("...");
    }
    shown
}

/// A key as TOML writes it: bare when it can be, else quoted.
pub(crate) fn key_name(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match bare {
        true => key.to_owned(),
        false => toml::Value::String(key.to_owned()).to_string(),
    }
}

/// A duration as the configuration file and a command line give it: `500ms`,
/// `2s`, `1.5s` or a number of seconds; more than zero.
///
/// # Errors
///
/// What was expected and what was found.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.strip_suffix("ms") {
        Some(number) => (number, 0.001),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|value| value.is_finite())
        .and_then(|value| Duration::try_from_secs_f64(value * unit).ok())
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("expected a duration such as 500ms or 30s, found {text:?}"))
}

/// A size as the configuration file and a command line give it: `512M`,
/// `2G`, `64K` or a number of bytes; more than zero.
///
/// # Errors
///
/// What was expected and what was found.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = match text.chars().last() {
        Some('K' | 'k') => (&text[..text.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&text[..text.len() - 1], 1 << 20),
        Some('G' | 'g') => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(unit))
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| format!("expected a size such as 512M or 2G, found {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        parse(Path::new("p/plugins.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_setting_reads() {
        let file = parse(
            Path::new("plugins.toml"),
            "isolate = [\"a\"]\ncall_timeout = \"1.5s\"\nstart_timeout = \"10s\"\nmemory_limit = \
             \"512M\"\nprocess_limit = 64\nrestarts = 3\nconfine = true\n[plugin.a]\nx = 1\n",
        )
        .unwrap();
        assert!(matches!(&file.isolate, Some(Isolate::Plugins(names)) if names == &["a"]));
        assert_eq!(file.chosen.call_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(file.chosen.start_timeout, Some(Duration::from_secs(10)));
        assert_eq!(file.chosen.memory_limit, Some(512 << 20));
        assert_eq!(file.chosen.process_limit, Some(64));
        assert!(matches!(
            file.chosen.recovery,
            Some(Recovery::Restart { attempts: 3, .. })
        ));
        assert_eq!(file.chosen.confined, Some(true));
        assert_eq!(file.tables["a"], "x = 1\n");
        let file = parse(
            Path::new("plugins.toml"),
            "isolate = false\nmemory_limit = 4096\nrestarts = 0\n[call_timeout]\na = \"300ms\"\n",
        )
        .unwrap();
        assert!(file.isolate.is_none());
        assert_eq!(file.chosen.memory_limit, Some(4096));
        // No restarts: the default recovery, not a restart with none left.
        assert_eq!(file.chosen.recovery, Some(Recovery::Disable));
        assert_eq!(file.call_timeouts["a"], Duration::from_millis(300));
        assert_eq!(file.chosen.call_timeout, None);
        // A default beside the plugins' own.
        let file = parse(
            Path::new("plugins.toml"),
            "[call_timeout]\n\"*\" = \"2s\"\na = \"300ms\"\n",
        )
        .unwrap();
        assert_eq!(file.chosen.call_timeout, Some(Duration::from_secs(2)));
        assert_eq!(file.call_timeouts.len(), 1);
        assert_eq!(file.call_timeouts["a"], Duration::from_millis(300));
    }

    #[test]
    fn a_wrong_value_names_the_file_the_key_and_what_was_expected() {
        assert_eq!(
            error("isolate = 3\n"),
            "p/plugins.toml: key `isolate`: expected true, false or a list of plugin names, found 3"
        );
        assert_eq!(
            error("[call_timeout]\na = \"soon\"\n"),
            "p/plugins.toml: key `call_timeout.a`: expected a duration such as \"500ms\" or \
             \"30s\", found \"soon\""
        );
        assert_eq!(
            error("[call_timeout]\n\"*\" = 2\n"),
            "p/plugins.toml: key `call_timeout.\"*\"`: expected a duration such as \"500ms\" or \
             \"30s\", found 2"
        );
        assert_eq!(
            error("memory_limit = -1\n"),
            "p/plugins.toml: key `memory_limit`: expected a size such as \"512M\" or \"2G\", or a \
             number of bytes, found -1"
        );
        assert_eq!(
            error("process_limit = 8\n"),
            "p/plugins.toml: key `process_limit`: expected a number of processes and threads, 32 \
             or more, found 8"
        );
        assert_eq!(
            error("start_timeout = 10\n"),
            "p/plugins.toml: key `start_timeout`: expected a duration such as \"500ms\" or \
             \"30s\", found 10"
        );
        assert_eq!(
            error("restarts = \"3\"\n"),
            "p/plugins.toml: key `restarts`: expected a number of restarts, 0 or more, found \"3\""
        );
        assert_eq!(
            error("plugin = 1\n"),
            "p/plugins.toml: key `plugin`: expected [plugin.<name>] tables, found 1"
        );
        assert_eq!(
            error("isolated = true\n"),
            "p/plugins.toml: unknown key `isolated`: expected `isolate`, `call_timeout`, \
             `start_timeout`, `memory_limit`, `process_limit`, `restarts`, `confine` or \
             [plugin.<name>] tables"
        );
        assert_eq!(
            error("[plugin.a\nx = 1\n"),
            "p/plugins.toml: invalid TOML: at line 1, column 10: unclosed table, expected `]`"
        );
        assert_eq!(
            error("isolate = true\nconfine = true\nisolate = false\n"),
            "p/plugins.toml: invalid TOML: at line 3, column 1, `isolate`: duplicate key"
        );
        assert_eq!(
            error("[plugin]\n\"a.b\" = 3\n"),
            "p/plugins.toml: key `plugin.\"a.b\"`: expected a table of the plugin's settings, \
             found 3"
        );
        assert_eq!(
            error(&format!("restarts = \"{}\"\n", "x".repeat(1000))),
            format!(
                "p/plugins.toml: key `restarts`: expected a number of restarts, 0 or more, found \
                 \"{}...",
                "x".repeat(79)
            )
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert!(parse_size("0").is_err());
        assert!(parse_size("99999999999G").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("-1s").is_err());
        // Rounds to nothing: not a timeout.
        assert!(parse_duration("1e-10s").is_err());
        assert!(parse_duration("0").is_err());
    }
}
