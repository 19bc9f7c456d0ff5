//! The files of a rules tree (and of its connectors, [`super::plugins`]), read from a folder or
//! restored from the store, and their hash.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::Metadata;
use std::io::{ErrorKind, Read};
use std::ops::Bound;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::plugins::PluginFiles;
use crate::config::Limits;
use crate::diagnostic::Diagnostic;

/// Every file of a rules tree by its `/`-separated relative path, and the connectors that go
/// with it. Texts are shared: the next read of the folder, the release built from it and the
/// store's copy hold the same unchanged files without copying them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTree {
    files: BTreeMap<String, Arc<str>>,
    plugins: PluginFiles,
    id: String,
    /// The id of the rules alone, kept so that adding the connectors does not hash every rule
    /// file a second time.
    rules_id: String,
}

/// The SHA-256 of one file's text.
pub(crate) type FileDigest = [u8; 32];

fn digest(text: &[u8]) -> FileDigest {
    Sha256::digest(text).into()
}

impl SourceTree {
    pub fn from_files(files: BTreeMap<String, String>) -> Self {
        Self::from_shared(
            files
                .into_iter()
                .map(|(path, text)| (path, Arc::from(text)))
                .collect(),
        )
    }

    pub fn from_shared(files: BTreeMap<String, Arc<str>>) -> Self {
        let id = content_id(
            files
                .iter()
                .map(|(path, text)| (path, digest(text.as_bytes()))),
        );
        Self::with_id(files, id)
    }

    /// The files a read saw, each hashed when it was opened.
    fn from_seen(seen: &Remembered) -> Self {
        let id = content_id(seen.iter().map(|(path, file)| (path, file.digest)));
        Self::with_id(
            seen.iter()
                .map(|(path, file)| (path.clone(), file.text.clone()))
                .collect(),
            id,
        )
    }

    fn with_id(files: BTreeMap<String, Arc<str>>, id: String) -> Self {
        Self {
            files,
            plugins: PluginFiles::default(),
            rules_id: id.clone(),
            id,
        }
    }

    /// The same rules with these connectors. The id covers both; without connectors it is the
    /// rules' own id, so releases stored before connectors existed keep theirs.
    #[must_use]
    pub fn with_plugins(mut self, plugins: PluginFiles) -> Self {
        self.id = with_plugins_id(&self.rules_id, &plugins);
        self.plugins = plugins;
        self
    }

    /// The same files under the id they were stored with: a release stored before ids were
    /// made of each file's hash keeps its id when it is reactivated.
    #[must_use]
    pub fn stored_as(mut self, id: &str) -> Self {
        id.clone_into(&mut self.id);
        self
    }

    /// The id these files had before ids were made of each file's hash: one hash over every
    /// path and text. A pin set by an earlier version names the folder by it.
    pub fn former_id(&self) -> String {
        let mut h = Sha256::new();
        for (path, text) in &self.files {
            // Length prefixes keep ("ab","c") and ("a","bc") apart.
            h.update((path.len() as u64).to_le_bytes());
            h.update(path.as_bytes());
            h.update((text.len() as u64).to_le_bytes());
            h.update(text.as_bytes());
        }
        let rules = hex::encode(h.finalize().get(..8).unwrap_or_default());
        with_plugins_id(&rules, &self.plugins)
    }

    /// Content hash: the same files give the same id on every machine.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn files(&self) -> &BTreeMap<String, Arc<str>> {
        &self.files
    }

    /// The connectors' files (empty without connectors).
    pub fn plugins(&self) -> &PluginFiles {
        &self.plugins
    }

    /// Reads every rule file under `root`, skipping hidden files and editor leftovers.
    ///
    /// Only regular files are read (a FIFO or device would block or never end), each within
    /// `max_rule_file_bytes`, and the walk stops at `max_rule_files`; every file that cannot be
    /// taken as it is becomes a located problem rather than a silent omission.
    pub fn read_dir(root: &Path, limits: &Limits) -> Result<Self, Vec<Diagnostic>> {
        Self::read_dir_cached(root, limits, &mut ReadCache::default())
    }

    /// [`Self::read_dir`], opening only the files that changed since the read that filled
    /// `cache`: the others are taken from it. The cache is then what this read saw.
    pub fn read_dir_cached(
        root: &Path,
        limits: &Limits,
        cache: &mut ReadCache,
    ) -> Result<Self, Vec<Diagnostic>> {
        let settled_before = SystemTime::now().checked_sub(SETTLE).unwrap_or(UNIX_EPOCH);
        Self::read_dir_settled(root, limits, cache, settled_before)
    }

    /// [`Self::read_dir_cached`] when the watcher has named every path that changed since the
    /// read that filled `cache` (`changed`, relative to `root`): only those are looked at, and
    /// every other file is taken from the cache without even a look at its metadata. At a big
    /// office's size, looking at 35,000 files made up most of a save's read.
    ///
    /// A named file is opened whatever its metadata says, a named folder is walked, and a named
    /// path that is gone is gone with everything under it. The cache must hold what a whole read
    /// saw; when it does not (its first read, a read with problems), or this read meets a
    /// problem or the file count limit, the read is a whole one, so that problems are found and
    /// reported as a whole read finds them.
    pub fn read_changed(
        root: &Path,
        limits: &Limits,
        cache: &mut ReadCache,
        changed: &BTreeSet<String>,
    ) -> Result<Self, Vec<Diagnostic>> {
        let settled_before = SystemTime::now().checked_sub(SETTLE).unwrap_or(UNIX_EPOCH);
        Self::read_changed_settled(root, limits, cache, changed, settled_before)
    }

    fn read_changed_settled(
        root: &Path,
        limits: &Limits,
        cache: &mut ReadCache,
        changed: &BTreeSet<String>,
        settled_before: SystemTime,
    ) -> Result<Self, Vec<Diagnostic>> {
        if !cache.complete || changed.contains("") || !root.is_dir() {
            return Self::read_dir_settled(root, limits, cache, settled_before);
        }
        cache.complete = false;
        // Files read too soon after their last change to trust their metadata are named too.
        let unsettled: Vec<String> = cache
            .files
            .iter()
            .filter(|(_, file)| file.stamp.is_none())
            .map(|(rel, _)| rel.clone())
            .collect();
        let named: BTreeSet<&str> = changed
            .iter()
            .map(String::as_str)
            .chain(unsettled.iter().map(String::as_str))
            .filter(|rel| !rel.split('/').any(is_ignored))
            .collect();
        // Each named path once: one under a named folder is looked at by that folder's walk.
        let tops: Vec<&str> = named
            .iter()
            .copied()
            .filter(|rel| !ancestors(rel).any(|a| named.contains(a)))
            .collect();
        let mut before = BTreeMap::new();
        for top in &tops {
            before.extend(take_under(&mut cache.files, top));
        }
        // A named file is opened even if its metadata looks the same: a second save within one
        // tick of the file times leaves it unchanged, and the watcher saw that save.
        for rel in &named {
            before.remove(*rel);
        }
        let mut walk = Walk::new(limits, before, settled_before);
        walk.seen = cache.files.len();
        for top in &tops {
            walk.at(root, top);
        }
        cache.opened = walk.pending.len();
        walk.open_pending();
        let problems = !walk.diags.is_empty() || walk.full;
        cache.files.append(&mut walk.after);
        if problems {
            return Self::read_dir_settled(root, limits, cache, settled_before);
        }
        cache.complete = true;
        cache.whole = false;
        Ok(Self::from_seen(&cache.files))
    }

    /// The read, remembering the files last changed before `settled_before`.
    fn read_dir_settled(
        root: &Path,
        limits: &Limits,
        cache: &mut ReadCache,
        settled_before: SystemTime,
    ) -> Result<Self, Vec<Diagnostic>> {
        if !root.is_dir() {
            return Err(vec![Diagnostic::file(
                root.display().to_string(),
                "rules folder does not exist or is not a folder",
            )]);
        }
        let mut walk = Walk::new(limits, std::mem::take(&mut cache.files), settled_before);
        walk.dir(root, "");
        cache.opened = walk.pending.len();
        walk.open_pending();
        cache.files = std::mem::take(&mut walk.after);
        cache.complete = walk.diags.is_empty();
        cache.whole = true;
        if walk.diags.is_empty() {
            Ok(Self::from_seen(&cache.files))
        } else {
            // In the walk's order, wherever a problem was found, read or not.
            walk.diags.sort_by_key(|(order, _)| *order);
            Err(walk.diags.into_iter().map(|(_, d)| d).collect())
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

/// The parent folders of a `/`-separated relative path, innermost first.
fn ancestors(rel: &str) -> impl Iterator<Item = &str> {
    rel.match_indices('/').rev().map(move |(i, _)| &rel[..i])
}

/// Takes `rel` and everything under it out of `files`.
fn take_under(files: &mut Remembered, rel: &str) -> Remembered {
    let inside = format!("{rel}/");
    let mut keys: Vec<String> = files
        .range::<str, _>((Bound::Included(inside.as_str()), Bound::Unbounded))
        .map(|(k, _)| k)
        .take_while(|k| k.starts_with(&inside))
        .cloned()
        .collect();
    keys.push(rel.to_owned());
    keys.into_iter()
        .filter_map(|k| files.remove_entry(&k))
        .collect()
}

/// Each file a read saw, with its metadata when it had settled (see [`Stamp::settled`]).
type Remembered = BTreeMap<String, Seen>;

/// One file as a read saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// Its metadata, when it had settled.
    stamp: Option<Stamp>,
    text: Arc<str>,
    /// The hash of `text`, taken once when the file was read, for the release id.
    digest: FileDigest,
}

/// What a read of a rules folder remembers of each file, so that the next read opens only the
/// files that changed. At a big office's size (35,000 files) reading every file made up most of
/// a reload, although a save changes one.
#[derive(Debug, Default)]
pub struct ReadCache {
    files: Remembered,
    /// How many files the last read had to open.
    opened: usize,
    /// The last read found no problem: `files` is the whole folder as it saw it.
    complete: bool,
    /// The last read looked at every file's metadata, not only at the paths named to it.
    whole: bool,
}

impl ReadCache {
    /// How many files the last read opened (the others it took from the read before).
    pub fn opened(&self) -> usize {
        self.opened
    }

    /// Whether the last read looked at every file (a whole read), rather than at the paths
    /// the watcher named.
    pub fn looked_at_all(&self) -> bool {
        self.whole
    }

    /// How many files the next read may take without opening them.
    pub fn len(&self) -> usize {
        self.files
            .values()
            .filter(|file| file.stamp.is_some())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every file, so the next read opens them all: an admin's forced reload trusts
    /// nothing it read before.
    pub fn forget(&mut self) {
        self.files.clear();
        self.complete = false;
    }
}

/// One version of a file, as its metadata tells it without reading it. Every write moves the
/// change time, which no program can set back (unlike the modification time), and a rename-save
/// gives a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether a later write is sure to change this stamp. File times advance in coarse ticks
    /// (a few milliseconds on ext4), so a file written again within the tick of the write that
    /// the read saw would keep its stamp; a file changed within [`SETTLE`] of the read is
    /// therefore not remembered, and is read again next time.
    fn settled(&self, before: SystemTime) -> bool {
        let secs = u64::try_from(self.ctime.0).unwrap_or(0);
        let nanos = u32::try_from(self.ctime.1).unwrap_or(0);
        UNIX_EPOCH + Duration::new(secs, nanos.min(999_999_999)) < before
    }
}

/// A file's bytes as read, the metadata of the file read, and the hash of the bytes.
type Opened = (Vec<u8>, Metadata, FileDigest);

/// How old a file's last change must be for a read to remember it: far more than the ticks of
/// file times, and than the clock differences of a network share.
const SETTLE: Duration = Duration::from_secs(2);

struct Walk<'a> {
    limits: &'a Limits,
    /// Each problem with the place of its entry in the walk.
    diags: Vec<(usize, Diagnostic)>,
    /// Regular files met so far, read or not: the count limit is checked before reading.
    seen: usize,
    /// The count limit was reached; nothing more is read.
    full: bool,
    /// What the previous read remembered, and what this one does.
    before: Remembered,
    after: Remembered,
    /// Files last changed before this are remembered.
    settled_before: SystemTime,
    /// Files to open once the walk is done, each with its place in the walk.
    pending: Vec<(usize, String, PathBuf)>,
    /// Entries met so far: the place of the next one.
    order: usize,
}

/// Files opened at once by a read that opens many: a first read of a big office's tree opens
/// 35,000 files, one system call after another, and a thread per core keeps the cores busy.
const READERS: usize = 8;

/// Below this many files to open, a read stays on its own thread: a save's reload opens a few
/// files, and starting threads would cost more than they save.
const THREADED_FROM: usize = 64;

impl<'a> Walk<'a> {
    fn new(limits: &'a Limits, before: Remembered, settled_before: SystemTime) -> Self {
        Self {
            limits,
            diags: Vec::new(),
            seen: 0,
            full: false,
            before,
            after: BTreeMap::new(),
            settled_before,
            pending: Vec::new(),
            order: 0,
        }
    }

    /// Looks at one path under `root` that the watcher named: a file, a folder to walk, or
    /// nothing any more.
    fn at(&mut self, root: &Path, rel: &str) {
        let path = root.join(rel);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return,
            Err(e) => {
                self.problem(Diagnostic::file(rel, format!("cannot read file: {e}")));
                return;
            }
        };
        let (prefix, name) = match rel.rsplit_once('/') {
            Some((parent, name)) => (format!("{parent}/"), name),
            None => (String::new(), rel),
        };
        self.found(&prefix, OsStr::new(name), Ok(meta), || path.clone());
    }

    fn dir(&mut self, dir: &Path, prefix: &str) {
        let here = if prefix.is_empty() { "." } else { prefix };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound && !prefix.is_empty() => return,
            Err(e) => {
                self.problem(Diagnostic::file(here, format!("cannot read folder: {e}")));
                return;
            }
        };
        let mut listed = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => listed.push((entry.file_name(), entry)),
                Err(e) => {
                    self.problem(Diagnostic::file(here, format!("cannot list folder: {e}")));
                    return;
                }
            }
        }
        // Sorted, so the same folder always hits the file count limit at the same file.
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, entry) in listed {
            if self.full {
                return;
            }
            self.entry(&entry, prefix, &name);
        }
    }

    fn entry(&mut self, entry: &std::fs::DirEntry, prefix: &str, name: &OsStr) {
        // The entry's own metadata (not following links, and looked up from its folder rather
        // than by its whole path): a link could point outside the rules folder, which scripts
        // must never reach.
        self.found(prefix, name, entry.metadata(), || entry.path());
    }

    /// Takes one entry of the folder `prefix`: remembered, to open, to walk, or a problem.
    /// The full path is built only for the entries that need it.
    fn found(
        &mut self,
        prefix: &str,
        name: &OsStr,
        meta: std::io::Result<Metadata>,
        path: impl Fn() -> PathBuf,
    ) {
        let lossy = name.to_string_lossy();
        if is_ignored(&lossy) {
            return;
        }
        let Some(name) = name.to_str() else {
            // A lossy name could equal another file's name and silently replace it.
            self.problem(Diagnostic::file(
                format!("{prefix}{lossy}"),
                "file name is not UTF-8; rename it",
            ));
            return;
        };
        let rel = format!("{prefix}{name}");
        let meta = match meta {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return, // deleted while we looked
            Err(e) => {
                self.problem(Diagnostic::file(rel, format!("cannot read file: {e}")));
                return;
            }
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            self.problem(Diagnostic::file(
                rel,
                "symbolic links are not allowed in the rules folder",
            ));
            return;
        }
        if kind.is_dir() {
            self.dir(&path(), &format!("{rel}/"));
            return;
        }
        if !kind.is_file() {
            self.problem(Diagnostic::file(rel, not_regular(&kind)));
            return;
        }
        if self.seen >= self.limits.max_rule_files {
            self.problem(Diagnostic::file(
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
            self.problem(too_big(rel, max));
            return;
        }
        let stamp = Stamp::of(&meta);
        if let Some(file) = self.before.remove(&rel) {
            if file.stamp == Some(stamp) {
                self.after.insert(rel, file);
                return;
            }
        }
        let order = self.next();
        self.pending.push((order, rel, path()));
    }

    /// The place in the walk of the entry met now.
    fn next(&mut self) -> usize {
        self.order += 1;
        self.order
    }

    fn problem(&mut self, d: Diagnostic) {
        let order = self.next();
        self.diags.push((order, d));
    }

    /// Opens the files the walk could not take from the cache: on a few threads when there are
    /// many, each thread taking the next file not yet taken. They are taken in on this thread,
    /// in the walk's order.
    fn open_pending(&mut self) {
        let max = self.limits.max_rule_file_bytes;
        let pending = std::mem::take(&mut self.pending);
        // Hashed where it is read: on the reading threads when there are many.
        let read = |(_, _, path): &(usize, String, PathBuf)| {
            read_regular_meta(path, max).map(|(bytes, meta)| {
                let hash = digest(&bytes);
                (bytes, meta, hash)
            })
        };
        let results: Vec<Result<Opened, FileProblem>> = if pending.len() < THREADED_FROM {
            pending.iter().map(read).collect()
        } else {
            let readers = std::thread::available_parallelism().map_or(2, |n| n.get());
            let next = AtomicUsize::new(0);
            let slots: Vec<OnceLock<_>> = pending.iter().map(|_| OnceLock::new()).collect();
            std::thread::scope(|scope| {
                let threads: Vec<_> = (0..readers.clamp(2, READERS))
                    .map(|_| {
                        scope.spawn(|| loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let (Some(file), Some(slot)) = (pending.get(i), slots.get(i)) else {
                                break;
                            };
                            let _ = slot.set(read(file));
                        })
                    })
                    .collect();
                // Joined here, so that a reader that panicked leaves its file unread (below)
                // rather than failing the whole read.
                for thread in threads {
                    let _ = thread.join();
                }
            });
            slots
                .into_iter()
                .map(|slot| {
                    slot.into_inner().unwrap_or_else(|| {
                        Err(FileProblem::Other(
                            "cannot read file: the read failed".into(),
                        ))
                    })
                })
                .collect()
        };
        for ((order, rel, _), result) in pending.into_iter().zip(results) {
            match result {
                Ok((bytes, opened, digest)) => match String::from_utf8(bytes) {
                    Ok(text) => {
                        let text: Arc<str> = text.into();
                        // The stamp of the file actually read: it may have been replaced since
                        // it was listed.
                        let stamp = Stamp::of(&opened);
                        let settled = stamp.settled(self.settled_before).then_some(stamp);
                        let seen = Seen {
                            stamp: settled,
                            text,
                            digest,
                        };
                        self.after.insert(rel, seen);
                    }
                    Err(_) => self
                        .diags
                        .push((order, Diagnostic::file(rel, "file is not UTF-8 text"))),
                },
                Err(FileProblem::Vanished) => {} // replaced while we read; the next event rebuilds
                Err(FileProblem::TooBig) => self.diags.push((order, too_big(rel, max))),
                Err(FileProblem::Other(message)) => {
                    self.diags.push((order, Diagnostic::file(rel, message)));
                }
            }
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
    read_regular_meta(path, max).map(|(bytes, _)| bytes)
}

/// [`read_regular`], with the metadata of the file it read.
fn read_regular_meta(path: &Path, max: usize) -> Result<(Vec<u8>, Metadata), FileProblem> {
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
    Ok((bytes, meta))
}

/// A release id: the SHA-256 of every path with the SHA-256 of its text, in path order; the same
/// files give the same id on every machine. Made of each file's hash, so that a read that
/// opened one file hashes that file and a list, not the whole folder again (48 MB at a big
/// office's size).
fn content_id<'a>(files: impl IntoIterator<Item = (&'a String, FileDigest)>) -> String {
    let mut h = Sha256::new();
    // Ids made this way never equal the ones made before (`former_id`) by accident of format.
    h.update(b"pintu release, each file's SHA-256\0");
    for (path, text) in files {
        // A length prefix keeps paths apart; each digest has a fixed length.
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update(text);
    }
    hex::encode(h.finalize().get(..8).unwrap_or_default())
}

/// The id of rules with connectors; without connectors it is the rules' own id, so releases
/// stored before connectors existed keep theirs.
fn with_plugins_id(rules_id: &str, plugins: &PluginFiles) -> String {
    if plugins.is_empty() {
        return rules_id.to_owned();
    }
    let mut h = Sha256::new();
    h.update(b"rules\0");
    h.update(rules_id.as_bytes());
    h.update(b"\0plugins\0");
    plugins.digest(&mut h);
    hex::encode(h.finalize().get(..8).unwrap_or_default())
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
    fn ids_are_made_of_each_files_hash_and_every_way_of_getting_the_files_agrees() {
        let files = [
            ("uji/permit.toml", "name = \"Uji\"\n"),
            ("lib/angka.rhai", "fn satu() { 1 }\n"),
            ("calendar.toml", ""),
        ];
        let given = SourceTree::from_files(
            files
                .iter()
                .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
                .collect(),
        );
        // Pinned: the same files give the same id on every machine and in every version, and
        // a change of the formula changes every stored release's id.
        assert_eq!(given.id(), "c8841d330affe4e5");
        // The id the same files had before, one hash over every path and text, as a pin
        // written then names the folder.
        assert_eq!(given.former_id(), "bc062ef580af6082");
        // A read of the folder, whole or of named paths, hashes each file as it opens it.
        let dir = folder(&files);
        let mut cache = ReadCache::default();
        assert_eq!(settled_read(dir.path(), &mut cache), given);
        save(&dir.path().join("uji/permit.toml"), "name = \"Uji 2\"\n");
        let changed = named_read(dir.path(), &mut cache, &["uji/permit.toml"]).unwrap();
        let expected = BTreeMap::from([
            (
                "uji/permit.toml".to_owned(),
                "name = \"Uji 2\"\n".to_owned(),
            ),
            ("lib/angka.rhai".to_owned(), "fn satu() { 1 }\n".to_owned()),
            ("calendar.toml".to_owned(), String::new()),
        ]);
        assert_eq!(changed, SourceTree::from_files(expected));
        assert_ne!(changed.id(), given.id());
        // A stored release is rebuilt under the id it was stored with.
        assert_eq!(
            given.clone().stored_as("bc062ef580af6082").id(),
            "bc062ef580af6082"
        );
    }

    /// Writes `text` to `path` the way editors save: a sibling, renamed over it.
    fn save(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn far_future() -> SystemTime {
        SystemTime::now() + Duration::from_secs(3600)
    }

    /// A rules folder holding these files.
    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in files {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    /// A whole read after which every file counts as settled, as it would two seconds after
    /// it was written.
    fn settled_read(root: &Path, cache: &mut ReadCache) -> SourceTree {
        SourceTree::read_dir_settled(root, &Limits::default(), cache, far_future()).unwrap()
    }

    /// A read of the paths a watcher named, every file counting as settled.
    fn named_read(
        root: &Path,
        cache: &mut ReadCache,
        named: &[&str],
    ) -> Result<SourceTree, Vec<Diagnostic>> {
        let named = named.iter().map(|&rel| rel.to_owned()).collect();
        SourceTree::read_changed_settled(root, &Limits::default(), cache, &named, far_future())
    }

    #[test]
    fn a_cached_read_opens_only_what_changed_and_sees_every_change() {
        let dir = folder(&[
            ("a/permit.toml", "name = \"A\"\n"),
            ("a/tests/one.json", "{}"),
            ("b/permit.toml", "name = \"B\"\n"),
            ("b/levy.rhai", "fn levy(d, p) { 1 }"),
        ]);
        let root = dir.path();
        let limits = Limits::default();
        let mut cache = ReadCache::default();
        let read = |cache: &mut ReadCache| settled_read(root, cache);
        let first = read(&mut cache);
        assert_eq!((cache.opened(), cache.len()), (4, 4));

        let again = read(&mut cache);
        assert_eq!(again, first);
        assert_eq!(cache.opened(), 0, "nothing changed, nothing opened");

        // The same length, saved in place and by rename, one file added, one removed.
        std::fs::write(root.join("a/permit.toml"), "name = \"Z\"\n").unwrap();
        save(&root.join("b/levy.rhai"), "fn levy(d, p) { 2 }");
        std::fs::write(root.join("b/validate.rhai"), "fn validate(d, p) { [] }").unwrap();
        std::fs::remove_file(root.join("a/tests/one.json")).unwrap();
        let changed = read(&mut cache);
        assert_eq!(cache.opened(), 3, "the two saved files and the new one");
        let expected = SourceTree::read_dir(root, &limits).unwrap();
        assert_eq!(changed, expected);
        assert_eq!(&*changed.files()["a/permit.toml"], "name = \"Z\"\n");
        assert_eq!(&*changed.files()["b/levy.rhai"], "fn levy(d, p) { 2 }");
        assert!(!changed.files().contains_key("a/tests/one.json"));
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn a_read_after_forgetting_opens_every_file_again() {
        let dir = folder(&[
            ("a/permit.toml", "name = \"A\"\n"),
            ("a/levy.rhai", "fn levy(d, p) { 1 }"),
        ]);
        let root = dir.path();
        let mut cache = ReadCache::default();
        let read = |cache: &mut ReadCache| settled_read(root, cache);
        let first = read(&mut cache);
        // What the cache holds is what a read returns for an unchanged file: a text it got
        // wrong would be served until the file changes, unless forgotten.
        cache.files.get_mut("a/levy.rhai").unwrap().text = Arc::from("stale");
        assert_eq!(&*read(&mut cache).files()["a/levy.rhai"], "stale");
        cache.forget();
        assert_eq!(read(&mut cache), first);
        assert_eq!((cache.opened(), cache.len()), (2, 2));
    }

    #[test]
    fn a_read_of_named_paths_looks_at_nothing_else() {
        let dir = folder(&[
            ("a/permit.toml", "name = \"A\"\n"),
            ("a/levy.rhai", "fn levy(d, p) { 1 }"),
            ("b/permit.toml", "name = \"B\"\n"),
        ]);
        let root = dir.path();
        let mut cache = ReadCache::default();
        let first = settled_read(root, &mut cache);
        assert!(cache.looked_at_all());

        // A path nobody named is taken as the last read saw it, even gone: the watcher would
        // have named it.
        std::fs::remove_file(root.join("b/permit.toml")).unwrap();
        std::fs::write(root.join("a/levy.rhai"), "fn levy(d, p) { 2 }").unwrap();
        let tree = named_read(root, &mut cache, &["a/levy.rhai"]).unwrap();
        assert!(!cache.looked_at_all());
        assert_eq!(cache.opened(), 1);
        assert_eq!(&*tree.files()["a/levy.rhai"], "fn levy(d, p) { 2 }");
        assert_eq!(
            tree.files()["b/permit.toml"],
            first.files()["b/permit.toml"]
        );
        assert_ne!(tree.id(), first.id());

        // Named, it is gone; and nothing named is nothing opened.
        let tree = named_read(root, &mut cache, &["b/permit.toml"]).unwrap();
        assert_eq!(
            tree,
            SourceTree::read_dir(root, &Limits::default()).unwrap()
        );
        let again = named_read(root, &mut cache, &[]).unwrap();
        assert_eq!((again, cache.opened()), (tree, 0));
    }

    #[test]
    fn a_named_file_is_opened_even_when_its_metadata_looks_unchanged() {
        // Two saves within one tick of the file times leave the same metadata; the watcher
        // saw the second.
        let dir = folder(&[("a/levy.rhai", "fn levy(d, p) { 1 }")]);
        let root = dir.path();
        let mut cache = ReadCache::default();
        let first = settled_read(root, &mut cache);
        cache.files.get_mut("a/levy.rhai").unwrap().text = Arc::from("stale");
        let tree = named_read(root, &mut cache, &["a/levy.rhai"]).unwrap();
        assert_eq!((tree, cache.opened()), (first, 1));
    }

    #[test]
    fn named_folders_are_walked_and_named_paths_that_are_gone_take_their_files_along() {
        let dir = folder(&[
            ("a/permit.toml", "name = \"A\"\n"),
            ("a/tests/one.json", "{}"),
            // Names that sort between `a` and `a/`, which a folder's removal must not take.
            ("a-b/permit.toml", "name = \"AB\"\n"),
            ("a.toml", "x = 1\n"),
            ("d/permit.toml", "name = \"D\"\n"),
        ]);
        let root = dir.path();
        let mut cache = ReadCache::default();
        settled_read(root, &mut cache);

        std::fs::remove_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(root.join("c/tests")).unwrap();
        std::fs::write(root.join("c/permit.toml"), "name = \"C\"\n").unwrap();
        std::fs::write(root.join("c/tests/one.json"), "{}").unwrap();
        std::fs::rename(root.join("d"), root.join("e")).unwrap();
        // Also named: paths under a named folder, and editors' leftovers.
        let named = [
            "a",
            "c",
            "c/permit.toml",
            "d",
            "e",
            "e/.permit.toml.swp",
            ".git/x",
        ];
        let tree = named_read(root, &mut cache, &named).unwrap();
        assert_eq!(
            tree,
            SourceTree::read_dir(root, &Limits::default()).unwrap()
        );
        assert_eq!(
            tree.files().keys().collect::<Vec<_>>(),
            [
                "a-b/permit.toml",
                "a.toml",
                "c/permit.toml",
                "c/tests/one.json",
                "e/permit.toml"
            ]
        );
        // The new folder's two files and the renamed folder's one, under its new name.
        assert_eq!(cache.opened(), 3);
    }

    #[test]
    fn a_problem_or_a_cache_that_is_not_the_whole_folder_makes_a_whole_read() {
        let dir = folder(&[("a/levy.rhai", "1"), ("b/levy.rhai", "2")]);
        let root = dir.path();
        let mut cache = ReadCache::default();
        // The first read has nothing to go by.
        named_read(root, &mut cache, &["a/levy.rhai"]).unwrap();
        assert!(cache.looked_at_all());
        assert_eq!(cache.opened(), 2);

        // A named link is a problem; a whole read also finds one nobody named.
        std::fs::remove_file(root.join("a/levy.rhai")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("a/levy.rhai")).unwrap();
        std::fs::write(root.join("b/levy.rhai"), [0xff]).unwrap();
        let problems = named_read(root, &mut cache, &["a/levy.rhai"]).unwrap_err();
        assert!(cache.looked_at_all());
        assert_eq!(
            problems,
            SourceTree::read_dir(root, &Limits::default()).unwrap_err()
        );
        assert_eq!(problems.len(), 2, "{problems:?}");

        // Mended, the next read is whole again: the one before did not see the whole folder.
        std::fs::remove_file(root.join("a/levy.rhai")).unwrap();
        std::fs::write(root.join("b/levy.rhai"), "3").unwrap();
        let tree = named_read(root, &mut cache, &["a/levy.rhai"]).unwrap();
        assert!(cache.looked_at_all());
        assert_eq!(tree.files().keys().collect::<Vec<_>>(), ["b/levy.rhai"]);
        named_read(root, &mut cache, &[]).unwrap();
        assert!(!cache.looked_at_all());
    }

    #[test]
    fn a_named_read_past_the_file_count_limit_is_a_whole_read_that_says_so() {
        let dir = folder(&[("a.md", "x"), ("b.md", "x")]);
        let root = dir.path();
        let limits = limits(2, 10);
        let mut cache = ReadCache::default();
        SourceTree::read_dir_settled(root, &limits, &mut cache, far_future()).unwrap();
        std::fs::write(root.join("c.md"), "x").unwrap();
        let named = BTreeSet::from(["c.md".to_owned()]);
        let problems =
            SourceTree::read_changed_settled(root, &limits, &mut cache, &named, far_future())
                .unwrap_err();
        assert!(cache.looked_at_all());
        assert!(
            problems[0]
                .to_string()
                .starts_with("c.md:1:1: the rules folder holds more than 2"),
            "{problems:?}"
        );
    }

    #[test]
    fn files_read_too_soon_after_a_change_are_opened_by_every_named_read() {
        let dir = folder(&[("permit.toml", "name = \"A\"\n"), ("b.rhai", "1")]);
        let root = dir.path();
        let limits = Limits::default();
        let mut cache = ReadCache::default();
        // Both files were just written: neither is trusted by its metadata yet.
        SourceTree::read_dir_cached(root, &limits, &mut cache).unwrap();
        std::fs::write(root.join("permit.toml"), "name = \"B\"\n").unwrap();
        let tree = SourceTree::read_changed(root, &limits, &mut cache, &BTreeSet::new()).unwrap();
        assert!(!cache.looked_at_all());
        assert_eq!(cache.opened(), 2);
        assert_eq!(&*tree.files()["permit.toml"], "name = \"B\"\n");
    }

    #[test]
    fn files_changed_just_before_a_read_are_read_again_next_time() {
        // File times advance in coarse ticks: a file written again within the tick of the
        // version the read saw would look unchanged, so a recent file is never trusted.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("permit.toml"), "name = \"A\"\n").unwrap();
        let limits = Limits::default();
        let mut cache = ReadCache::default();
        SourceTree::read_dir_cached(dir.path(), &limits, &mut cache).unwrap();
        assert_eq!((cache.opened(), cache.len()), (1, 0));
        std::fs::write(dir.path().join("permit.toml"), "name = \"B\"\n").unwrap();
        let tree = SourceTree::read_dir_cached(dir.path(), &limits, &mut cache).unwrap();
        assert_eq!(cache.opened(), 1);
        assert_eq!(&*tree.files()["permit.toml"], "name = \"B\"\n");
    }

    #[test]
    fn a_cached_file_that_became_too_big_or_a_link_is_still_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.rhai"), "1").unwrap();
        std::fs::write(root.join("b.rhai"), "2").unwrap();
        let mut cache = ReadCache::default();
        let limits = limits(100, 16);
        SourceTree::read_dir_settled(root, &limits, &mut cache, far_future()).unwrap();
        assert_eq!(cache.len(), 2);
        std::fs::write(root.join("a.rhai"), "x".repeat(17)).unwrap();
        std::fs::remove_file(root.join("b.rhai")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("b.rhai")).unwrap();
        let problems =
            SourceTree::read_dir_settled(root, &limits, &mut cache, far_future()).unwrap_err();
        let files: Vec<&str> = problems.iter().map(|d| d.file.as_str()).collect();
        assert_eq!(files, ["a.rhai", "b.rhai"], "{problems:?}");
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
    fn a_read_of_many_files_takes_each_once_and_reports_problems_in_folder_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = BTreeMap::new();
        // Enough files to open that the read takes the threaded path.
        let files = THREADED_FROM * 2 + 22;
        for i in 0..files {
            let rel = format!("p{:02}/tests/{i:03}.json", i % 7);
            std::fs::create_dir_all(dir.path().join(&rel).parent().unwrap()).unwrap();
            std::fs::write(dir.path().join(&rel), format!("{{\"n\": {i}}}")).unwrap();
            expected.insert(rel, format!("{{\"n\": {i}}}"));
        }
        let tree = SourceTree::read_dir(dir.path(), &limits(1000, 100)).unwrap();
        assert_eq!(tree, SourceTree::from_files(expected));

        // Problems found while listing (too big) and while reading (not UTF-8) come out in the
        // walk's order, whichever reader met them first.
        std::fs::write(dir.path().join("p05/tests/zz.json"), [0xff, 0xfe]).unwrap();
        std::fs::write(dir.path().join("p06/besar.json"), "x".repeat(101)).unwrap();
        std::fs::write(dir.path().join("p03/tests/000.bin"), [0xc3]).unwrap();
        let diags = SourceTree::read_dir(dir.path(), &limits(1000, 100)).unwrap_err();
        let shown: Vec<String> = diags.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "p03/tests/000.bin:1:1: file is not UTF-8 text",
                "p05/tests/zz.json:1:1: file is not UTF-8 text",
                "p06/besar.json:1:1: file is larger than 100 bytes (limit `max_rule_file_bytes`)",
            ]
        );
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
