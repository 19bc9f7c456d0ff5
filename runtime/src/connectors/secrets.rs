//! Connector secrets: `DATA/secrets.toml` with one `[<connector>]` table of name → value, or an
//! environment variable the connector's manifest names in `[secrets]`. Secrets never live in
//! the rules or plugins folders, and no value is ever printed: `Debug` shows names only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The file's name inside the data folder.
pub const SECRETS_FILE: &str = "secrets.toml";

/// Secrets by connector, then by name.
#[derive(Default, Clone)]
pub struct Secrets {
    by_connector: BTreeMap<String, BTreeMap<String, String>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: a value must never reach a log line or an error.
        let names: BTreeMap<&str, Vec<&str>> = self
            .by_connector
            .iter()
            .map(|(c, m)| (c.as_str(), m.keys().map(String::as_str).collect()))
            .collect();
        f.debug_struct("Secrets").field("names", &names).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The message names the place, never the value.
    #[error("`{path}` is not valid: {message}")]
    Invalid { path: String, message: String },
}

impl Secrets {
    /// Reads `DATA/secrets.toml`; a missing file means no secrets. A file readable by others
    /// than its owner is still read, with a warning (once per process; it should be 0600).
    pub fn load(data_dir: &Path) -> Result<Self, SecretsError> {
        let path = data_dir.join(SECRETS_FILE);
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(SecretsError::Read {
                    path: shown,
                    source,
                })
            }
        };
        warn_if_shared(&path);
        Self::parse(&text).map_err(|message| SecretsError::Invalid {
            path: shown,
            message,
        })
    }

    /// Parses the text of a secrets file. Errors name tables and keys, never values.
    pub fn parse(text: &str) -> Result<Self, String> {
        // toml's own messages quote the offending source line, which could be a secret.
        let table: toml::Table = toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => {
                let line = text.get(..span.start).unwrap_or(text).matches('\n').count() + 1;
                format!("TOML syntax error on line {line}")
            }
            None => "TOML syntax error".to_owned(),
        })?;
        let mut by_connector = BTreeMap::new();
        for (connector, value) in table {
            let toml::Value::Table(entries) = value else {
                return Err(format!("`{connector}` must be a table `[{connector}]`"));
            };
            let mut names = BTreeMap::new();
            for (name, v) in entries {
                let toml::Value::String(s) = v else {
                    return Err(format!("`{connector}.{name}` must be a string"));
                };
                names.insert(name, s);
            }
            by_connector.insert(connector, names);
        }
        Ok(Self { by_connector })
    }

    /// A secret of `connector` from the file.
    pub fn get(&self, connector: &str, name: &str) -> Option<&str> {
        self.by_connector
            .get(connector)
            .and_then(|m| m.get(name))
            .map(String::as_str)
    }

    /// The secrets of `connector` in the file, as (name, value).
    pub fn of<'a>(&'a self, connector: &str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.by_connector
            .get(connector)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets a secret (tests and tools).
    pub fn insert(&mut self, connector: &str, name: &str, value: &str) {
        self.by_connector
            .entry(connector.to_owned())
            .or_default()
            .insert(name.to_owned(), value.to_owned());
    }
}

/// `DATA/secrets.toml` as calls read it: the file is read again for every call, so an edit
/// applies to the next call without a restart, but parsed again only when its bytes changed.
/// Comparing the bytes, not the modification time, catches two edits within one tick of a
/// coarse file-system clock.
pub struct SecretsFile {
    data_dir: PathBuf,
    last: Mutex<Option<Parsed>>,
}

/// The bytes last read (`None`: no file) and what they gave.
type Parsed = (Option<Vec<u8>>, Arc<Secrets>);

impl SecretsFile {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            last: Mutex::new(None),
        }
    }

    /// The secrets as the file holds them now. An unreadable or invalid file gives no secrets
    /// (the calls that need one fail, naming it) and a warning, logged once per change of the
    /// file rather than once per call.
    pub fn current(&self) -> Arc<Secrets> {
        let path = self.data_dir.join(SECRETS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(
                    "connector secrets unavailable: cannot read `{}`: {e}",
                    path.display()
                );
                return Arc::new(Secrets::default());
            }
        };
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, secrets)) = last.as_ref() {
            if *seen == bytes {
                return secrets.clone();
            }
        }
        let parsed = match &bytes {
            None => Secrets::default(),
            Some(b) => {
                warn_if_shared(&path);
                match std::str::from_utf8(b)
                    .map_err(|_| "not UTF-8 text".to_owned())
                    .and_then(Secrets::parse)
                {
                    Ok(s) => s,
                    Err(message) => {
                        tracing::warn!(
                            "connector secrets unavailable: `{}` is not valid: {message}",
                            path.display()
                        );
                        Secrets::default()
                    }
                }
            }
        };
        let parsed = Arc::new(parsed);
        *last = Some((bytes, parsed.clone()));
        parsed
    }
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    // The file may be read for every call: say it once per process, not once per call.
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 && !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                path = %path.display(),
                "the secrets file is readable by other users; make it 0600"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_load_by_connector_and_never_print_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(SECRETS_FILE),
            "[oss-rba]\nusername = \"kota\"\npassword = \"s3cr3t-value\"\n",
        )
        .unwrap();
        let s = Secrets::load(dir.path()).unwrap();
        assert_eq!(s.get("oss-rba", "password"), Some("s3cr3t-value"));
        assert_eq!(s.get("oss-rba", "user_key"), None);
        assert_eq!(s.get("simbg", "password"), None);
        let shown = format!("{s:?}");
        assert!(
            shown.contains("password") && !shown.contains("s3cr3t-value"),
            "{shown}"
        );
    }

    #[test]
    fn a_missing_file_is_no_secrets_and_bad_files_name_no_values() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Secrets::load(dir.path()).unwrap().get("x", "y").is_none());
        let e = Secrets::parse("[oss-rba]\npassword = s3cr3t-value\n").unwrap_err();
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = Secrets::parse("[oss-rba]\npassword = 12345\n").unwrap_err();
        assert_eq!(e, "`oss-rba.password` must be a string");
    }

    #[test]
    fn every_edit_of_the_file_is_seen_even_two_within_one_second() {
        let dir = tempfile::tempdir().unwrap();
        let file = SecretsFile::new(dir.path().to_owned());
        assert_eq!(file.current().get("oss-rba", "password"), None);
        let path = dir.path().join(SECRETS_FILE);
        std::fs::write(&path, "[oss-rba]\npassword = \"first\"\n").unwrap();
        let first = file.current();
        assert_eq!(first.get("oss-rba", "password"), Some("first"));
        // Unchanged bytes: the parsed secrets are shared, not parsed again.
        assert!(Arc::ptr_eq(&first, &file.current()));
        // Same length, written at once: a modification-time check could miss it.
        std::fs::write(&path, "[oss-rba]\npassword = \"other\"\n").unwrap();
        assert_eq!(file.current().get("oss-rba", "password"), Some("other"));
        std::fs::write(&path, "[oss-rba]\npassword = other\n").unwrap();
        assert_eq!(file.current().get("oss-rba", "password"), None);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(file.current().get("oss-rba", "password"), None);
    }
}
