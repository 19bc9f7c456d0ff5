//! The files of a rules tree, read from a folder or restored from the store, and their hash.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::Limits;
use crate::diagnostic::Diagnostic;

/// Every file of a rules tree by its `/`-separated relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTree {
    files: BTreeMap<String, String>,
    id: String,
}

impl SourceTree {
    pub fn from_files(files: BTreeMap<String, String>) -> Self {
        let id = content_id(&files);
        Self { files, id }
    }

    /// Content hash: the same files give the same id on every machine.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    pub fn into_files(self) -> BTreeMap<String, String> {
        self.files
    }

    /// Reads every rule file under `root`, skipping hidden files and editor leftovers.
    pub fn read_dir(root: &Path, limits: &Limits) -> Result<Self, Vec<Diagnostic>> {
        let mut files = BTreeMap::new();
        let mut diags = Vec::new();
        if !root.is_dir() {
            return Err(vec![Diagnostic::new(
                root.display().to_string(),
                0,
                0,
                "rules folder does not exist or is not a folder",
            )]);
        }
        walk(root, "", limits, &mut files, &mut diags);
        if files.len() > limits.max_rule_files {
            diags.push(Diagnostic::new(
                "",
                0,
                0,
                format!(
                    "{} files exceed the limit of {}",
                    files.len(),
                    limits.max_rule_files
                ),
            ));
        }
        if diags.is_empty() {
            Ok(Self::from_files(files))
        } else {
            Err(diags)
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

fn walk(
    dir: &Path,
    prefix: &str,
    limits: &Limits,
    files: &mut BTreeMap<String, String>,
    diags: &mut Vec<Diagnostic>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(Diagnostic::new(
                prefix,
                0,
                0,
                format!("cannot read folder: {e}"),
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_ignored(&name) {
            continue;
        }
        let rel = format!("{prefix}{name}");
        // symlink_metadata: a link could point outside the rules folder, which scripts must
        // never reach.
        let meta = match entry.path().symlink_metadata() {
            Ok(m) => m,
            Err(_) => continue, // deleted while we looked; the next event rebuilds
        };
        if meta.file_type().is_symlink() {
            diags.push(Diagnostic::file(
                rel,
                "symbolic links are not allowed in the rules folder",
            ));
        } else if meta.is_dir() {
            walk(&entry.path(), &format!("{rel}/"), limits, files, diags);
        } else if usize::try_from(meta.len()).map_or(true, |l| l > limits.max_rule_file_bytes) {
            diags.push(Diagnostic::file(
                rel,
                format!("file is larger than {} bytes", limits.max_rule_file_bytes),
            ));
        } else {
            match std::fs::read(entry.path()) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => {
                        files.insert(rel, text);
                    }
                    Err(_) => diags.push(Diagnostic::file(rel, "file is not UTF-8 text")),
                },
                Err(_) => continue, // replaced while we read; the next event rebuilds
            }
        }
    }
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
