//! The connectors of a release as files: for each `plugins/<name>/connector.toml`, the manifest
//! and the component it names — nothing else of the folder (it also holds the guests' sources and
//! build output). They are read with the rules, hashed into the release id, stored with the
//! release and loaded by the connector host when the release is built.

use std::collections::BTreeMap;
use std::fmt;
use std::io::ErrorKind;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::source::{is_ignored, read_regular, FileProblem};
use crate::diagnostic::Diagnostic;

/// The manifest of a connector, at the top of its folder.
pub const MANIFEST: &str = "connector.toml";
/// Largest manifest read, in bytes: a manifest is a page of TOML.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;
/// Largest component read, in bytes. A Rust connector built for size is a few hundred KiB to a
/// few MiB; this stops a folder pointed at the wrong file.
pub const MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;

/// Every connector's files: folder name → file name (relative to the folder) → bytes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PluginFiles(BTreeMap<String, BTreeMap<String, Vec<u8>>>);

impl fmt::Debug for PluginFiles {
    /// Names and sizes: a component's bytes say nothing to a reader.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, files)| {
                let sizes: BTreeMap<&str, usize> =
                    files.iter().map(|(n, b)| (n.as_str(), b.len())).collect();
                (name, sizes)
            }))
            .finish()
    }
}

impl PluginFiles {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The connectors' folder names with their files, by name.
    pub fn connectors(&self) -> &BTreeMap<String, BTreeMap<String, Vec<u8>>> {
        &self.0
    }

    /// As stored: `{"<name>/<file>": bytes}`.
    pub fn flatten(&self) -> BTreeMap<String, Vec<u8>> {
        self.0
            .iter()
            .flat_map(|(name, files)| {
                files
                    .iter()
                    .map(move |(file, bytes)| (format!("{name}/{file}"), bytes.clone()))
            })
            .collect()
    }

    /// From the stored form ([`Self::flatten`]).
    pub fn from_flat(flat: BTreeMap<String, Vec<u8>>) -> Self {
        let mut all: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
        for (path, bytes) in flat {
            if let Some((name, file)) = path.split_once('/') {
                all.entry(name.to_owned())
                    .or_default()
                    .insert(file.to_owned(), bytes);
            }
        }
        Self(all)
    }

    /// Adds the files to a release's content hash, in a fixed order.
    pub(super) fn digest(&self, h: &mut Sha256) {
        for (path, bytes) in self.flatten() {
            // Length prefixes keep ("ab","c") and ("a","bc") apart.
            h.update((path.len() as u64).to_le_bytes());
            h.update(path.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
    }

    /// Reads every connector of the plugins folder `root`: each folder with a `connector.toml`,
    /// its manifest and the component the manifest names. A missing folder holds no connectors;
    /// folders without a manifest (the SDK, fixtures, `target/`) are not connectors. A manifest
    /// that does not parse is taken as it is, for the connector host to locate its problem.
    pub fn read_dir(root: &Path) -> Result<Self, Vec<Diagnostic>> {
        let shown = |rel: &str| format!("plugins/{rel}");
        let entries = match std::fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(vec![Diagnostic::file(
                    root.display().to_string(),
                    format!("cannot read the plugins folder: {e}"),
                )])
            }
        };
        let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
        names.sort();
        let mut all = BTreeMap::new();
        let mut problems = Vec::new();
        for name in names {
            let Some(name) = name.to_str() else { continue };
            if is_ignored(name) {
                continue;
            }
            let dir = root.join(name);
            let manifest_path = dir.join(MANIFEST);
            let Ok(meta) = dir.symlink_metadata() else {
                continue;
            };
            if meta.file_type().is_symlink() {
                if manifest_path.exists() {
                    problems.push(Diagnostic::file(
                        shown(name),
                        "symbolic links are not allowed in the plugins folder",
                    ));
                }
                continue;
            }
            if !meta.is_dir() || !manifest_path.exists() {
                continue;
            }
            match read_connector(name, &dir) {
                Ok(files) => {
                    all.insert(name.to_owned(), files);
                }
                Err(mut p) => problems.append(&mut p),
            }
        }
        if problems.is_empty() {
            Ok(Self(all))
        } else {
            Err(problems)
        }
    }
}

/// The manifest of connector `name` in `dir` and the component it names.
fn read_connector(name: &str, dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, Vec<Diagnostic>> {
    let manifest_at = format!("plugins/{name}/{MANIFEST}");
    let manifest = read_file(&dir.join(MANIFEST), &manifest_at, MAX_MANIFEST_BYTES)?;
    let mut files = BTreeMap::new();
    let component = std::str::from_utf8(&manifest)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| {
            t.get("component")
                .and_then(|c| c.as_str())
                .map(str::to_owned)
        })
        .filter(|c| is_plain_relative(c));
    files.insert(MANIFEST.to_owned(), manifest);
    // Without a usable `component` the host names the problem at its key in the manifest.
    if let Some(component) = component {
        let at = format!("plugins/{name}/{component}");
        let path = dir.join(&component);
        match path.symlink_metadata() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(vec![Diagnostic::file(
                    manifest_at,
                    format!("component `{component}` does not exist in plugins/{name}/; build it (plugins/build) or fix `component`"),
                )]);
            }
            Ok(m) if m.file_type().is_symlink() => {
                return Err(vec![Diagnostic::file(
                    at,
                    "symbolic links are not allowed in the plugins folder",
                )]);
            }
            _ => {}
        }
        let bytes = read_file(&path, &at, MAX_COMPONENT_BYTES)?;
        files.insert(component, bytes);
    }
    Ok(files)
}

/// A path inside the connector's folder: relative, `/`-separated, no `..`, nothing hidden.
fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

fn read_file(path: &Path, shown: &str, max: usize) -> Result<Vec<u8>, Vec<Diagnostic>> {
    read_regular(path, max).map_err(|problem| {
        vec![Diagnostic::file(
            shown,
            match problem {
                FileProblem::Vanished => "file vanished while it was read".to_owned(),
                FileProblem::TooBig => format!("file is larger than {max} bytes"),
                FileProblem::Other(message) => message,
            },
        )]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, bytes: &[u8]) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn only_manifests_and_their_components_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let wasm = b"\0asm\x0d\0\x01\0";
        write(
            root,
            "echo/connector.toml",
            b"name = \"echo\"\ncomponent = \"echo.wasm\"\n",
        );
        write(root, "echo/echo.wasm", wasm);
        write(root, "echo/src/lib.rs", b"// guest source");
        write(root, "echo/Cargo.toml", b"[package]");
        write(root, "sdk/Cargo.toml", b"[package]");
        write(root, "target/wasm32/echo.wasm", wasm);
        write(root, "README.md", b"# plugins");
        write(root, "rusak/connector.toml", b"name = [\n");
        let files = PluginFiles::read_dir(root).unwrap();
        let flat = files.flatten();
        let names: Vec<&str> = flat.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "echo/connector.toml",
                "echo/echo.wasm",
                "rusak/connector.toml"
            ]
        );
        assert_eq!(flat["echo/echo.wasm"], wasm);
        assert_eq!(PluginFiles::from_flat(flat), files);
        assert!(
            format!("{files:?}").contains("\"echo.wasm\": 8"),
            "{files:?}"
        );
    }

    #[test]
    fn a_missing_folder_is_no_connectors_and_a_missing_component_is_located() {
        let dir = tempfile::tempdir().unwrap();
        assert!(PluginFiles::read_dir(&dir.path().join("nowhere"))
            .unwrap()
            .is_empty());
        write(
            dir.path(),
            "echo/connector.toml",
            b"component = \"echo.wasm\"\n",
        );
        let problems = PluginFiles::read_dir(dir.path()).unwrap_err();
        assert_eq!(
            problems[0].to_string(),
            "plugins/echo/connector.toml:1:1: component `echo.wasm` does not exist in plugins/echo/; build it (plugins/build) or fix `component`"
        );
        // A component outside the folder is not read; the host refuses the manifest.
        write(
            dir.path(),
            "echo/connector.toml",
            b"component = \"../secret.wasm\"\n",
        );
        write(dir.path(), "secret.wasm", b"x");
        let files = PluginFiles::read_dir(dir.path()).unwrap();
        assert_eq!(files.connectors()["echo"].len(), 1);
    }
}
