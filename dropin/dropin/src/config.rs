//! A plugin's typed read of its configuration: its table of the plugins
//! folder's configuration file, as TOML text, into the plugin's own type.

use std::{fmt, path::Path};

use serde::de::DeserializeOwned;

/// What was wrong with a plugin's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The text is not TOML (only configuration given in code can be: the
    /// host reads the file's tables itself).
    Syntax,
    /// A key the plugin's type does not read: a misspelt setting would
    /// otherwise be ignored without a word.
    UnknownKey,
    /// A value of the wrong type, or a key the plugin needs missing.
    Invalid,
}

/// Why [`Context::config`](crate::Context::config) could not read the
/// plugin's configuration as the type it asked for. Its message names the
/// file, the plugin's table, the key and what was expected:
///
/// ```text
/// plugins/plugins.toml: [plugin.counter]: key `start`: invalid type: string "soon", expected u64
/// ```
#[derive(Debug, Clone)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    origin: String,
    key: Option<String>,
    message: String,
}

impl ConfigError {
    /// What was wrong.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The key at fault, dotted from the plugin's table (`limits.max`), if
    /// the error is about one key.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, &self.key) {
            (ConfigErrorKind::UnknownKey, Some(key)) => write!(
                f,
                "{}: unknown key `{key}`: expected only the keys the plugin reads",
                self.origin
            ),
            (_, Some(key)) => write!(f, "{}: key `{key}`: {}", self.origin, self.message),
            (ConfigErrorKind::Syntax, None) => {
                write!(f, "{}: expected TOML: {}", self.origin, self.message)
            }
            (_, None) => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Where a plugin's configuration came from, as errors name it.
fn origin(name: &str, file: Option<&Path>) -> String {
    match file {
        Some(file) => format!("{}: [plugin.{}]", file.display(), key_name(name)),
        None => format!("the configuration of plugin '{name}'"),
    }
}

/// A key as TOML writes it: bare when it can be, else quoted, so that a
/// key with a dot in it is not read as two.
fn key_name(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare {
        return key.to_owned();
    }
    let mut quoted = String::from('"');
    for c in key.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Appends `key` to the dotted path `path`.
fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(&key_name(key));
}

/// The dotted path of a key `T` did not read: `limits.maximum`,
/// `servers[1].prot`.
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let mut path = ignored_path(parent);
            push_key(&mut path, key);
            path
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// The dotted path of the value a deserialisation error is about, if it
/// is about one below the table.
fn error_path(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut dotted = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => dotted.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => push_key(&mut dotted, key),
            Segment::Unknown => push_key(&mut dotted, "?"),
        }
    }
    (!dotted.is_empty()).then_some(dotted)
}

/// Reads `text`, the configuration of plugin `name` (from `file`, if it
/// came from one), as a `T`, refusing keys `T` does not read.
pub(crate) fn read<T: DeserializeOwned>(
    name: &str,
    file: Option<&Path>,
    text: &str,
) -> Result<T, ConfigError> {
    let error = |kind, key: Option<String>, message: String| ConfigError {
        kind,
        origin: origin(name, file),
        key,
        message,
    };
    let document = toml::Deserializer::parse(text)
        .map_err(|e| error(ConfigErrorKind::Syntax, None, e.message().to_owned()))?;
    let mut unknown = None;
    let mut note = |path: serde_ignored::Path<'_>| {
        unknown.get_or_insert_with(|| ignored_path(&path));
    };
    let ignoring = serde_ignored::Deserializer::new(document, &mut note);
    let value = serde_path_to_error::deserialize(ignoring).map_err(|e| {
        // An error about the table itself (a missing key) has no path: the
        // message names the key.
        let key = error_path(e.path());
        let message = e.into_inner().message().to_owned();
        // serde's words for a key the table lacks, in this error's terms.
        match message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            Some(field) => {
                let mut key = key.unwrap_or_default();
                push_key(&mut key, field);
                let found = "expected a value, found none".to_owned();
                error(ConfigErrorKind::Invalid, Some(key), found)
            }
            None => error(ConfigErrorKind::Invalid, key, message),
        }
    })?;
    match unknown {
        Some(key) => Err(error(ConfigErrorKind::UnknownKey, Some(key), String::new())),
        None => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Settings {
        start: u64,
        #[serde(default)]
        limits: Limits,
    }

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    struct Limits {
        #[serde(default)]
        max: u32,
    }

    fn message<T: DeserializeOwned + fmt::Debug>(text: &str) -> String {
        read::<T>("counter", Some(Path::new("plugins/plugins.toml")), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_table_reads_into_the_plugins_type() {
        let settings: Settings = read("counter", None, "start = 41\n[limits]\nmax = 3\n").unwrap();
        assert_eq!(
            settings,
            Settings {
                start: 41,
                limits: Limits { max: 3 }
            }
        );
    }

    #[test]
    fn errors_name_the_file_the_table_and_the_key() {
        assert_eq!(
            message::<Settings>("start = \"soon\"\n"),
            "plugins/plugins.toml: [plugin.counter]: key `start`: invalid type: string \"soon\", \
             expected u64"
        );
        assert_eq!(
            message::<Settings>("start = 1\n[limits]\nmax = -1\n"),
            "plugins/plugins.toml: [plugin.counter]: key `limits.max`: invalid value: integer \
             `-1`, expected u32"
        );
        assert_eq!(
            message::<Settings>(""),
            "plugins/plugins.toml: [plugin.counter]: key `start`: expected a value, found none"
        );
        assert_eq!(
            message::<Settings>("start = 1\n[limits]\nmaximum = 3\n"),
            "plugins/plugins.toml: [plugin.counter]: unknown key `limits.maximum`: expected only \
             the keys the plugin reads"
        );
        let error = read::<Settings>("counter", None, "start = 1\nstrat = 2\n").unwrap_err();
        assert_eq!(error.kind(), ConfigErrorKind::UnknownKey);
        assert_eq!(error.key(), Some("strat"));
        assert_eq!(
            error.to_string(),
            "the configuration of plugin 'counter': unknown key `strat`: expected only the keys \
             the plugin reads"
        );
        // Keys with dots are quoted, as TOML needs them.
        assert_eq!(
            read::<Settings>(
                "my.counter",
                Some(Path::new("p.toml")),
                "start = 1\n\"a.b\" = 2\n"
            )
            .unwrap_err()
            .to_string(),
            "p.toml: [plugin.\"my.counter\"]: unknown key `\"a.b\"`: expected only the keys the \
             plugin reads"
        );
        #[derive(Debug, serde::Deserialize)]
        struct Servers {
            #[allow(dead_code)]
            servers: Vec<Limits>,
        }
        assert_eq!(
            message::<Servers>("[[servers]]\nmax = 1\n[[servers]]\nmax = \"2\"\n"),
            "plugins/plugins.toml: [plugin.counter]: key `servers[1].max`: invalid type: string \
             \"2\", expected u32"
        );
        assert_eq!(
            message::<Servers>("[[servers]]\nmax = 1\n[[servers]]\nmxa = 2\n"),
            "plugins/plugins.toml: [plugin.counter]: unknown key `servers[1].mxa`: expected only \
             the keys the plugin reads"
        );
        let error = read::<Settings>("counter", None, "start = \n").unwrap_err();
        assert_eq!(error.kind(), ConfigErrorKind::Syntax);
        assert!(
            error
                .to_string()
                .starts_with("the configuration of plugin 'counter': expected TOML: "),
            "{error}"
        );
    }
}
