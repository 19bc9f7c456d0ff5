//! The files of a rules tree (and of its connectors, [`super::plugins`]), read from a folder or
//! restored from the store, and their hash.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::plugins::PluginFiles;
use crate::config::Limits;
use crate::diagnostic::Diagnostic;

/// Every file of a rules tree by its `/`-separated relative path, and the connectors that go
/// with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTree {
    files: BTreeMap<String, String>,
    plugins: PluginFiles,
    id: String,
}

impl SourceTree {
    pub fn from_files(files: BTreeMap<String, String>) -> Self {
        let id = content_id(&files);
        Self {
            files,
            plugins: PluginFiles::default(),
            id,
        }
    }

    /// The same rules with these connectors. The id covers both; without connectors it is the
    /// rules' own id, so releases stored before connectors existed keep theirs.
    #[must_use]
    pub fn with_plugins(mut self, plugins: PluginFiles) -> Self {
        let rules = content_id(&self.files);
        self.id = if plugins.is_empty() {
            rules
        } else {
            let mut h = Sha256::new();
            h.update(b"rules\0");
            h.update(rules.as_bytes());
            h.update(b"\0plugins\0");
            plugins.digest(&mut h);
            hex::encode(h.finalize().get(..8).unwrap_or_default())
        };
        self.plugins = plugins;
        self
    }

    /// Content hash: the same files give the same id on every machine.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    /// The connectors' files (empty without connectors).
    pub fn plugins(&self) -> &PluginFiles {
        &self.plugins
    }

    pub fn into_files(self) -> BTreeMap<String, String> {
        self.files
    }

    /// Reads every rule file under `root`, skipping hidden files and editor leftovers.
    ///
    /// Only regular files are read (a FIFO or device would block or never end), each within
    /// `max_rule_file_bytes`, and the walk stops at `max_rule_files`; every file that cannot be
    /// taken as it is becomes a located problem rather than a silent omission.
    pub fn read_dir(root: &Path, limits: &Limits) -> Result<Self, Vec<Diagnostic>> {
        if !root.is_dir() {
            return Err(vec![Diagnostic::file(
                root.display().to_string(),
                "rules folder does not exist or is not a folder",
            )]);
        }
        let mut walk = Walk {
            limits,
            files: BTreeMap::new(),
            diags: Vec::new(),
            seen: 0,
            full: false,
        };
        walk.dir(root, "");
        if walk.diags.is_empty() {
            Ok(Self::from_files(walk.files))
        } else {
            Err(walk.diags)
        }
    }
}

/// Editors write these beside the real file while saving; they are never rules.
pub fn is_ignored(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || name.starts_with('#')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".tmp")
        || name.ends_with(".bak")
}

struct Walk<'a> {
    limits: &'a Limits,
    files: BTreeMap<String, String>,
    diags: Vec<Diagnostic>,
    /// Regular files met so far, read or not: the count limit is checked before reading.
    seen: usize,
    /// The count limit was reached; nothing more is read.
    full: bool,
}

impl Walk<'_> {
    fn dir(&mut self, dir: &Path, prefix: &str) {
        let here = if prefix.is_empty() { "." } else { prefix };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound && !prefix.is_empty() => return,
            Err(e) => {
                self.diags
                    .push(Diagnostic::file(here, format!("cannot read folder: {e}")));
                return;
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => names.push(entry.file_name()),
                Err(e) => {
                    self.diags
                        .push(Diagnostic::file(here, format!("cannot list folder: {e}")));
                    return;
                }
            }
        }
        // Sorted, so the same folder always hits the file count limit at the same file.
        names.sort();
        for name in names {
            if self.full {
                return;
            }
            self.entry(&dir.join(&name), prefix, &name);
        }
    }

    fn entry(&mut self, path: &Path, prefix: &str, name: &OsStr) {
        let lossy = name.to_string_lossy();
        if is_ignored(&lossy) {
            return;
        }
        let Some(name) = name.to_str() else {
            // A lossy name could equal another file's name and silently replace it.
            self.diags.push(Diagnostic::file(
                format!("{prefix}{lossy}"),
                "file name is not UTF-8; rename it",
            ));
            return;
        };
        let rel = format!("{prefix}{name}");
        // symlink_metadata: a link could point outside the rules folder, which scripts must
        // never reach.
        let meta = match path.symlink_metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return, // deleted while we looked
            Err(e) => {
                self.diags
                    .push(Diagnostic::file(rel, format!("cannot read file: {e}")));
                return;
            }
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            self.diags.push(Diagnostic::file(
                rel,
                "symbolic links are not allowed in the rules folder",
            ));
            return;
        }
        if kind.is_dir() {
            self.dir(path, &format!("{rel}/"));
            return;
        }
        if !kind.is_file() {
            self.diags.push(Diagnostic::file(rel, not_regular(&kind)));
            return;
        }
        if self.seen >= self.limits.max_rule_files {
            self.diags.push(Diagnostic::file(
                rel,
                format!(
                    "the rules folder holds more than {} files (limit `max_rule_files`); \
                     nothing past this file was read",
                    self.limits.max_rule_files
                ),
            ));
            self.full = true;
            return;
        }
        self.seen += 1;
        let max = self.limits.max_rule_file_bytes;
        if usize::try_from(meta.len()).map_or(true, |l| l > max) {
            self.diags.push(too_big(rel, max));
            return;
        }
        match read_regular(path, max) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => {
                    self.files.insert(rel, text);
                }
                Err(_) => self
                    .diags
                    .push(Diagnostic::file(rel, "file is not UTF-8 text")),
            },
            Err(FileProblem::Vanished) => {} // replaced while we read; the next event rebuilds
            Err(FileProblem::TooBig) => self.diags.push(too_big(rel, max)),
            Err(FileProblem::Other(message)) => self.diags.push(Diagnostic::file(rel, message)),
        }
    }
}

fn too_big(rel: String, max: usize) -> Diagnostic {
    Diagnostic::file(
        rel,
        format!("file is larger than {max} bytes (limit `max_rule_file_bytes`)"),
    )
}

fn not_regular(kind: &std::fs::FileType) -> String {
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a file or folder"
    };
    format!("not a regular file ({what}); only regular files belong in the rules folder")
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum FileProblem {
    /// Deleted or renamed away between listing and reading.
    Vanished,
    TooBig,
    Other(String),
}

impl From<std::io::Error> for FileProblem {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == ErrorKind::NotFound {
            Self::Vanished
        } else {
            Self::Other(format!("cannot read file: {e}"))
        }
    }
}

/// Reads one file that was a regular file when listed. It may have been swapped for a FIFO or a
/// device since: the open must not block (O_NONBLOCK) and the opened file is checked again, and
/// the read stops one byte past the limit whatever the file claims its size is.
pub(super) fn read_regular(path: &Path, max: usize) -> Result<Vec<u8>, FileProblem> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(FileProblem::Other(not_regular(&meta.file_type())));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).min(max));
    let cap = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_end(&mut bytes)?;
    if bytes.len() > max {
        return Err(FileProblem::TooBig);
    }
    Ok(bytes)
}

fn content_id(files: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (path, text) in files {
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    let digest = h.finalize();
    hex::encode(digest.get(..8).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(files: usize, bytes: usize) -> Limits {
        Limits {
            max_rule_files: files,
            max_rule_file_bytes: bytes,
            ..Limits::default()
        }
    }

    #[test]
    fn connectors_are_in_the_id_and_without_them_the_id_is_the_rules_id() {
        let rules = BTreeMap::from([("a/permit.toml".to_owned(), "name = \"A\"\n".to_owned())]);
        let plain = SourceTree::from_files(rules.clone());
        let none = SourceTree::from_files(rules.clone()).with_plugins(PluginFiles::default());
        assert_eq!(plain.id(), none.id());
        let with = |wasm: &[u8]| {
            SourceTree::from_files(rules.clone()).with_plugins(PluginFiles::from_flat(
                BTreeMap::from([
                    (
                        "echo/connector.toml".to_owned(),
                        b"name = \"echo\"".to_vec(),
                    ),
                    ("echo/echo.wasm".to_owned(), wasm.to_vec()),
                ]),
            ))
        };
        let (one, same, other) = (with(b"\0asm1"), with(b"\0asm1"), with(b"\0asm2"));
        assert_eq!(one.id(), same.id());
        assert_ne!(one.id(), plain.id());
        assert_ne!(one.id(), other.id(), "a new component is a new release");
        assert_eq!(one.id().len(), plain.id().len());
    }

    #[test]
    fn a_permission_error_is_a_problem_and_a_vanished_file_is_not() {
        // Tests may run as root, which reads any file: the error path is checked directly.
        let denied = FileProblem::from(std::io::Error::from(ErrorKind::PermissionDenied));
        assert_eq!(
            denied,
            FileProblem::Other("cannot read file: permission denied".into())
        );
        let gone = FileProblem::from(std::io::Error::from(ErrorKind::NotFound));
        assert_eq!(gone, FileProblem::Vanished);
    }

    #[test]
    fn a_file_that_grows_past_the_limit_after_listing_is_stopped_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.toml");
        std::fs::write(&path, "x".repeat(100)).unwrap();
        assert_eq!(read_regular(&path, 99), Err(FileProblem::TooBig));
        assert_eq!(read_regular(&path, 100).unwrap().len(), 100);
    }

    #[test]
    fn limits_are_checked_before_reading_and_located_at_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.md", "b.md", "c.md"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        std::fs::write(dir.path().join("d.md"), "xx").unwrap();
        let diags = SourceTree::read_dir(dir.path(), &limits(2, 10)).unwrap_err();
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(
            diags[0]
                .to_string()
                .starts_with("c.md:1:1: the rules folder holds more than 2"),
            "{}",
            diags[0]
        );
        let diags = SourceTree::read_dir(dir.path(), &limits(10, 1)).unwrap_err();
        assert_eq!(
            diags[0].to_string(),
            "d.md:1:1: file is larger than 1 bytes (limit `max_rule_file_bytes`)"
        );
    }

    #[test]
    fn a_missing_folder_is_a_whole_file_problem() {
        let diags =
            SourceTree::read_dir(Path::new("/nonexistent/rules"), &Limits::default()).unwrap_err();
        assert_eq!(
            diags[0].to_string(),
            "/nonexistent/rules:1:1: rules folder does not exist or is not a folder"
        );
    }
}
