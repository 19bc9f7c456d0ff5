//! Durable state in one redb file, `DATA/pintu.redb`. This module owns every table; nothing else
//! touches redb. Writes go through a single writer thread that batches whatever is queued into
//! one durable transaction (group commit): a caller's write returns only after its batch is on
//! disk, so an acknowledged write is never lost.

pub mod applications;
pub mod bound;
mod check;
mod connector_kv;
pub mod deliveries;
mod files;
mod plugins;
pub mod records;
mod retention;
mod schema;
mod writer;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use check::{check, CheckReport};
use records::{
    ActivationRecord, AuditRecord, DecisionRecord, Envelope, Listed, ReleaseRecord, ReloadRecord,
    TokenRecord, UserRecord, RECORD_VERSION,
};
pub use retention::PrunePlan;
pub use writer::Op;

pub use schema::SCHEMA_VERSION;
pub const DB_FILE: &str = "pintu.redb";

// INVARIANT: every table of the database is declared here and documented in docs/storage.md.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const RELEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("releases");
pub(crate) const RELEASE_SOURCES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("release_sources");
/// Every file body of every stored release once, by the SHA-256 of its text: a release of 1,000
/// permit types holds some 35,000 files, and a reload changes a few of them.
pub(crate) const SOURCE_FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("source_files");
/// The files of one top-level folder (a permit type, `lib`, or the root's own files) as
/// `{path within it: key in source_files}`, once per distinct content, by its [`tree_key`]. A
/// release lists its folders' trees, so a save stores one new tree and a short list instead of
/// every path of the office again.
pub(crate) const SOURCE_TREES: TableDefinition<&str, &[u8]> = TableDefinition::new("source_trees");
pub(crate) const ACTIVATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("activations");
pub(crate) const RELOADS: TableDefinition<u64, &[u8]> = TableDefinition::new("reloads");
pub(crate) const DECISIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("decisions");
pub(crate) const DECISIONS_BY_PERMIT: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("decisions_by_permit");
pub(crate) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
pub(crate) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Users by username (`UserRecord`); their tokens are in `tokens`, naming them.
pub(crate) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// Applications by creation sequence (their id is `APP-<sequence>`).
pub(crate) const APPLICATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("applications");
/// List indexes: (facet, value, list date, sequence) for the facets `all`, `permit`, `status`,
/// `step` and `kind`, so that a filtered page, newest first, is one range read.
pub(crate) const APPLICATION_INDEX: TableDefinition<(&str, &str, &str, u64), ()> =
    TableDefinition::new("application_index");
/// Numbering counters: (number kind, permit type, format used, year) → last number handed out.
pub(crate) const COUNTERS: TableDefinition<(&str, &str, &str, i32), u64> =
    TableDefinition::new("counters");
/// The outbox: every application change's events, by a sequence without gaps.
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Each connector's private key-value space: (connector name, key) → value bytes.
pub(crate) const CONNECTOR_KV: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("connector_kv");
/// Per connector: the last outbox sequence scheduled for delivery to it (its durable cursor).
pub(crate) const DELIVERY_CURSORS: TableDefinition<&str, u64> =
    TableDefinition::new("delivery_cursors");
/// Deliveries of outbox events to connectors, by id (`store::deliveries`).
pub(crate) const DELIVERIES: TableDefinition<u64, &[u8]> = TableDefinition::new("deliveries");
/// (connector, state, id) with `""` for "any" in either place: listing by connector and state,
/// and a connector's pending deliveries in outbox order (the dispatcher's queue).
pub(crate) const DELIVERIES_BY_STATE: TableDefinition<(&str, &str, u64), ()> =
    TableDefinition::new("deliveries_by_state");
/// The connector files of each release that has connectors: `{"<name>/<file>": key in
/// `plugin_files`}`. A release without connectors has no row.
pub(crate) const RELEASE_PLUGINS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("release_plugins");
/// Every connector file (manifest or component) once, its raw bytes by their SHA-256 (hex).
pub(crate) const PLUGIN_FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("plugin_files");
/// Release id → the last time that release passed all its fixtures ([`PassRecord`]): what a
/// restart or a reactivation needs to know to skip running them again.
pub(crate) const RELEASE_PASSES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("release_passes");
/// Drafts connectors created: (connector, idempotency key) → application sequence.
pub(crate) const CONNECTOR_DRAFTS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("connector_drafts");

pub(crate) const META_SCHEMA: &str = "schema_version";
pub(crate) const META_ACTIVE: &str = "active_release";
pub(crate) const META_PIN: &str = "pin";
/// Stored size of the `decisions` table in bytes, kept up to date by every write and prune.
pub(crate) const META_DECISION_BYTES: &str = "decision_bytes";

/// Most bytes of records one list page holds; a page stops early rather than grow past it (the
/// client continues with `before=`). Keeps an admin read from loading the whole log.
pub const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data folder `{path}`: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database `{path}` is in use by another pintu process")]
    InUse { path: PathBuf },
    #[error("cannot open database `{path}`: {message}")]
    Open { path: PathBuf, message: String },
    #[error("database schema version {found} is newer than this pintu supports ({supported})")]
    NewerSchema { found: u32, supported: u32 },
    /// A step of the schema migration failed; the database was left as it was.
    #[error("cannot migrate the database schema from version {from} ({what}): {source}")]
    Migration {
        from: u32,
        what: &'static str,
        #[source]
        source: Box<StoreError>,
    },
    /// This build has no migration step from the stored schema version.
    #[error("database schema version {found} cannot be migrated by this pintu (no step from it)")]
    NoMigration { found: u32 },
    /// What redb reported, kept whole as the source.
    #[error("storage error: {0}")]
    Storage(#[source] redb::Error),
    /// A record could not be turned into its stored form.
    #[error("cannot encode a record: {0}")]
    Encode(#[source] serde_json::Error),
    /// The commit this write shared with others failed; every write in it gets this error.
    #[error(transparent)]
    Batch(std::sync::Arc<StoreError>),
    #[error("corrupt record in `{table}`: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
    #[error("the store is shut down")]
    Closed,
    /// A blocking storage task ended without an answer (it panicked or the runtime shut down).
    #[error("a storage task ended abnormally: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// The database cannot take writes (disk full, I/O error) or is being reopened after one.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether this is a fault of the storage itself rather than of one operation.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        match e {
            // After an I/O error redb refuses every operation until the database is reopened.
            redb::StorageError::Io(_)
            | redb::StorageError::PreviousIo
            | redb::StorageError::DatabaseClosed => StoreError::Unavailable(e.to_string()),
            other => StoreError::Storage(other.into()),
        }
    }
}

impl From<redb::TableError> for StoreError {
    fn from(e: redb::TableError) -> Self {
        match e {
            redb::TableError::Storage(s) => s.into(),
            other => StoreError::Storage(other.into()),
        }
    }
}

impl From<redb::TransactionError> for StoreError {
    fn from(e: redb::TransactionError) -> Self {
        match e {
            redb::TransactionError::Storage(s) => s.into(),
            other => StoreError::Storage(other.into()),
        }
    }
}

impl From<redb::CommitError> for StoreError {
    fn from(e: redb::CommitError) -> Self {
        match e {
            redb::CommitError::Storage(s) => s.into(),
            other => StoreError::Storage(other.into()),
        }
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed => {
                StoreError::Unavailable(e.to_string())
            }
            other => StoreError::Storage(other),
        }
    }
}

/// The key of a file body in `source_files`: the SHA-256 of its text, in hex.
pub(crate) fn source_key(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The top-level folder a path lies in, and the rest of the path; `""` for the root's own files.
fn split_folder(path: &str) -> (&str, &str) {
    path.split_once('/').unwrap_or(("", path))
}

/// `items` by path, grouped by top-level folder: `{folder: [(path within it, item)]}`, each
/// group in path order (the root's own files are not contiguous among the paths).
fn by_folder<'a, T>(
    items: impl IntoIterator<Item = (&'a str, T)>,
) -> BTreeMap<&'a str, Vec<(&'a str, T)>> {
    let mut folders: BTreeMap<&str, Vec<(&str, T)>> = BTreeMap::new();
    for (path, item) in items {
        let (folder, rest) = split_folder(path);
        folders.entry(folder).or_default().push((rest, item));
    }
    for entries in folders.values_mut() {
        entries.sort_unstable_by_key(|(rest, _)| *rest);
    }
    folders
}

/// The key of a tree in `source_trees`: the SHA-256 of its `(path, text key)` entries, in order.
pub(crate) fn tree_key<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (path, key) in entries {
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update((key.len() as u64).to_le_bytes());
        h.update(key.as_bytes());
    }
    hex::encode(h.finalize())
}

/// One file of a folder's tree: its path within the folder, its text's key, and the text where
/// it may not be stored yet.
type TreeEntry<'a> = (&'a str, &'a str, Option<&'a str>);

/// Stores one folder's tree, `(path within the folder, text key, text)` in path order, and the
/// texts it names that are not stored yet; returns the tree's key. A text given as `None` must be
/// stored already.
fn put_tree(
    bodies: &mut redb::Table<'_, &'static str, &'static [u8]>,
    trees: &mut redb::Table<'_, &'static str, &'static [u8]>,
    entries: &[TreeEntry<'_>],
) -> Result<String, StoreError> {
    let key = tree_key(entries.iter().map(|(rest, k, _)| (*rest, *k)));
    // INVARIANT: a stored tree's texts are stored (they go in with it, and the pruner removes a
    // text only once no stored tree names it), so a tree already stored needs none of its texts
    // looked up.
    if trees.get(key.as_str())?.is_none() {
        for (_, text_key, text) in entries {
            if let Some(text) = text {
                if bodies.get(*text_key)?.is_none() {
                    bodies.insert(*text_key, encode_shallow(*text)?.as_slice())?;
                }
            }
        }
        let tree: BTreeMap<&str, &str> = entries.iter().map(|(rest, k, _)| (*rest, *k)).collect();
        trees.insert(key.as_str(), encode_shallow(&tree)?.as_slice())?;
    }
    Ok(key)
}

/// Writes release `id`'s list of folders, `(folder, tree key)`.
fn put_manifest<'a>(
    txn: &redb::WriteTransaction,
    id: &str,
    folders: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), StoreError> {
    let manifest: BTreeMap<&str, &str> = folders.into_iter().collect();
    txn.open_table(RELEASE_SOURCES)?
        .insert(id, encode_shallow(&manifest)?.as_slice())?;
    Ok(())
}

/// Stores release `id` from its files as `(path, text key, text)`, grouped into their top-level
/// folders' trees. The text is `None` where it is known to be stored already.
pub(crate) fn put_listing<'a>(
    txn: &redb::WriteTransaction,
    id: &str,
    files: impl IntoIterator<Item = (&'a str, &'a str, Option<&'a str>)>,
) -> Result<(), StoreError> {
    let folders = by_folder(
        files
            .into_iter()
            .map(|(path, key, text)| (path, (key, text))),
    );
    let mut bodies = txn.open_table(SOURCE_FILES)?;
    let mut trees = txn.open_table(SOURCE_TREES)?;
    let mut listed = Vec::with_capacity(folders.len());
    for (folder, files) in folders {
        let entries: Vec<TreeEntry<'_>> = files
            .into_iter()
            .map(|(rest, (key, text))| (rest, key, text))
            .collect();
        listed.push((folder, put_tree(&mut bodies, &mut trees, &entries)?));
    }
    put_manifest(txn, id, listed.iter().map(|(f, k)| (*f, k.as_str())))
}

/// Release `id`'s files as `{path: key in source_files}`, `None` if it is not stored.
pub(crate) fn read_listing(
    manifests: &impl ReadableTable<&'static str, &'static [u8]>,
    trees: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<BTreeMap<String, String>>, StoreError> {
    let Some(manifest) = manifests.get(id)? else {
        return Ok(None);
    };
    let manifest: BTreeMap<String, String> = decode("release_sources", manifest.value())?;
    let mut listing = BTreeMap::new();
    for (folder, key) in manifest {
        let tree = trees
            .get(key.as_str())?
            .ok_or_else(|| StoreError::Corrupt {
                table: "source_trees",
                message: format!("release {id}: the files of `{folder}/` ({key}) are missing"),
            })?;
        let tree: BTreeMap<String, String> = decode("source_trees", tree.value())?;
        for (rest, text_key) in tree {
            let path = if folder.is_empty() {
                rest
            } else {
                format!("{folder}/{rest}")
            };
            listing.insert(path, text_key);
        }
    }
    Ok(Some(listing))
}

/// The folders of the release the store wrote last, each with the very texts it held and the
/// key of its tree. A release read after a save shares every unchanged text with the one stored
/// before it, so a folder whose files are those very texts at the same paths keeps its tree
/// without any of its texts hashed again or its tree rebuilt: at a big office's size, hashing
/// 48 MB of texts, and then listing 35,000 paths, was most of storing a release. The texts are
/// held, so no other text can take the place of one in memory and be mistaken for it.
#[derive(Debug, Default)]
pub(crate) struct StoredFolders(std::collections::HashMap<String, StoredFolder>);

#[derive(Debug)]
struct StoredFolder {
    /// `(path within the folder, text)`, in path order.
    files: Vec<(Box<str>, Arc<str>)>,
    tree: String,
}

impl StoredFolder {
    fn holds(&self, files: &[(&str, &Arc<str>)]) -> bool {
        self.files.len() == files.len()
            && self
                .files
                .iter()
                .zip(files)
                .all(|((p, t), (q, u))| **p == **q && Arc::ptr_eq(t, u))
    }
}

impl StoredFolders {
    /// Stores `sources` as the release `id`, hashing and listing only the folders that do not
    /// hold the very texts stored last; then remembers this release's folders.
    pub(crate) fn put(
        &mut self,
        txn: &redb::WriteTransaction,
        id: &str,
        sources: &BTreeMap<String, Arc<str>>,
    ) -> Result<(), StoreError> {
        let folders = by_folder(sources.iter().map(|(path, text)| (path.as_str(), text)));
        let mut bodies = txn.open_table(SOURCE_FILES)?;
        let mut trees = txn.open_table(SOURCE_TREES)?;
        let mut stored = std::collections::HashMap::with_capacity(folders.len());
        for (folder, files) in folders {
            let known = self
                .0
                .remove(folder)
                .filter(|f| f.holds(&files))
                .map(|f| trees.get(f.tree.as_str()).map(|t| t.map(|_| f)))
                .transpose()?
                .flatten();
            // A remembered tree is looked up all the same: one the pruner removed, or one put in
            // a transaction that did not commit, is written again.
            let folder_stored = match known {
                Some(f) => f,
                None => {
                    let keys: Vec<String> = files.iter().map(|(_, t)| source_key(t)).collect();
                    let entries: Vec<TreeEntry<'_>> = files
                        .iter()
                        .zip(&keys)
                        .map(|((rest, text), key)| (*rest, key.as_str(), Some(&***text)))
                        .collect();
                    StoredFolder {
                        tree: put_tree(&mut bodies, &mut trees, &entries)?,
                        files: files
                            .iter()
                            .map(|(rest, text)| (Box::from(*rest), Arc::clone(text)))
                            .collect(),
                    }
                }
            };
            stored.insert(folder.to_owned(), folder_stored);
        }
        put_manifest(
            txn,
            id,
            stored.iter().map(|(f, s)| (f.as_str(), s.tree.as_str())),
        )?;
        self.0 = stored;
        Ok(())
    }
}

/// The stored form of a record. Depth is capped here, once for every record type, so that what
/// is written can always be read back (serde_json reads at most 128 levels).
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let envelope = Envelope {
        v: RECORD_VERSION,
        data: value,
    };
    // Nearly every record is far shallower than the cap: its text is then the capped text, and
    // the copy into a JSON tree that capping needs is saved. The store's writer encodes every
    // record of a commit, one after another, so that copy was on every write's path.
    let text = serde_json::to_vec(&envelope).map_err(StoreError::Encode)?;
    if bound::text_depth(&text) < bound::MAX_RECORD_DEPTH {
        return Ok(text);
    }
    let value = serde_json::to_value(envelope).map_err(StoreError::Encode)?;
    serde_json::to_vec(&bound::cap_depth(value, bound::MAX_RECORD_DEPTH))
        .map_err(StoreError::Encode)
}

/// Values whose type bounds their depth far below [`bound::MAX_RECORD_DEPTH`]: they need no cap.
pub(crate) trait Shallow: Serialize {}
impl Shallow for str {}
impl Shallow for BTreeMap<&str, &str> {}

/// [`encode`] for a [`Shallow`] value: the same bytes, without scanning them for their depth. A
/// big office's release lists 35,000 files, 3.5 MB of text written at every save.
pub(crate) fn encode_shallow<T: Shallow + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&Envelope {
        v: RECORD_VERSION,
        data: value,
    })
    .map_err(StoreError::Encode)
}

fn decode_meta<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    decode("meta", bytes)
}

fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    let env: Envelope<T> = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table,
        message: e.to_string(),
    })?;
    if env.v > RECORD_VERSION {
        return Err(StoreError::Corrupt {
            table,
            message: format!("record version {} is newer than this pintu", env.v),
        });
    }
    Ok(env.data)
}

/// How long a reopen waits for in-flight reads to let go of the old database handle.
const REOPEN_WAIT: Duration = Duration::from_secs(5);

/// The database handle shared by readers and the writer thread. After a storage fault the writer
/// closes and reopens the database (redb accepts nothing more from a handle that saw an I/O
/// error); readers meanwhile get [`StoreError::Unavailable`].
pub(crate) struct Shared {
    db: RwLock<Option<Arc<Database>>>,
    fault: Mutex<Option<String>>,
    path: PathBuf,
}

impl Shared {
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        let slot = self
            .db
            .read()
            .map_err(|_| StoreError::Unavailable("database handle lock poisoned".into()))?;
        slot.clone().ok_or_else(|| {
            StoreError::Unavailable(
                self.fault()
                    .unwrap_or_else(|| "the database is being reopened".into()),
            )
        })
    }

    /// Why writes are failing now, if they are.
    pub(crate) fn fault(&self) -> Option<String> {
        self.fault.lock().ok().and_then(|f| f.clone())
    }

    pub(crate) fn set_fault(&self, fault: Option<String>) {
        if let Ok(mut f) = self.fault.lock() {
            *f = fault;
        }
    }

    /// Closes the database and opens it again (writer thread only).
    pub(crate) fn reopen(&self) -> Result<(), StoreError> {
        let poisoned = || StoreError::Unavailable("database handle lock poisoned".into());
        let old = self.db.write().map_err(|_| poisoned())?.take();
        if let Some(mut old) = old {
            let started = Instant::now();
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        // It saw an I/O error; closing may fail the same way, and that is fine.
                        let _ = db.close();
                        break;
                    }
                    Err(still_shared) if started.elapsed() < REOPEN_WAIT => {
                        old = still_shared;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(still_shared) => {
                        *self.db.write().map_err(|_| poisoned())? = Some(still_shared);
                        return Err(StoreError::Unavailable(
                            "reads still hold the database; will retry".into(),
                        ));
                    }
                }
            }
        }
        // An unclean close is repaired by redb on open; no full integrity check here.
        let db = open_db(&self.path, false).map_err(|e| match e {
            StoreError::Open { message, .. } => StoreError::Unavailable(message),
            other => other,
        })?;
        *self.db.write().map_err(|_| poisoned())? = Some(Arc::new(db));
        Ok(())
    }
}

/// Opens or creates the redb file; a redb panic on a damaged file becomes an error.
fn open_db(path: &Path, check_integrity: bool) -> Result<Database, StoreError> {
    let opened = catch_unwind(|| {
        Database::builder()
            .set_check_integrity_on_open(check_integrity)
            .create(path)
    });
    let open_err = |message: String| StoreError::Open {
        path: path.to_owned(),
        message,
    };
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(StoreError::InUse {
            path: path.to_owned(),
        }),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(m)))) => Err(open_err(
            format!("the file is damaged ({m}); restore it from a backup"),
        )),
        Ok(Err(other)) => Err(open_err(other.to_string())),
        Err(panic) => Err(open_err(format!(
            "the file is damaged (redb failed: {}); restore it from a backup",
            panic_message(&panic)
        ))),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

/// Runs a read against the database; a redb panic (possible on a damaged page) becomes an error
/// for this one request instead of taking the server down.
fn guarded<T>(read: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(read)).unwrap_or_else(|panic| {
        Err(StoreError::Corrupt {
            table: "database",
            message: format!("read failed: {}", panic_message(&panic)),
        })
    })
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    writer: Arc<writer::Writer>,
    path: PathBuf,
}

/// One page of a list: the records (unreadable ones as placeholders) and where the next page
/// starts, if there may be one.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<Listed<T>>,
    /// Pass as `before=` for the next page; `None` when this page reached the oldest record.
    pub next_before: Option<u64>,
}

impl Store {
    /// Opens (or creates) `DATA/pintu.redb`, checking and if needed migrating the schema. The
    /// data folder and its files are made private. An existing file is verified page by page
    /// first: a damaged or empty file is refused, never replaced.
    pub fn open(data_dir: &Path, max_batch: usize) -> Result<Self, StoreError> {
        files::prepare_dir(data_dir)?;
        let path = data_dir.join(DB_FILE);
        files::refuse_empty_db(&path)?;
        let db = open_db(&path, true)?;
        files::make_private(&path)?;
        schema::init(&db)?;
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(Arc::new(db))),
            fault: Mutex::new(None),
            path: path.clone(),
        });
        let writer = Arc::new(writer::Writer::start(shared.clone(), max_batch));
        Ok(Self {
            shared,
            writer,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the database refuses writes now (disk full, I/O error), if it does. Cleared by itself
    /// once the writer has reopened the database and a commit succeeds again.
    pub fn fault(&self) -> Option<String> {
        self.shared.fault()
    }

    /// Writes `ops` in one transaction shared with concurrent callers; returns once durable,
    /// with the sequence numbers assigned to appended records (in order).
    pub async fn write(&self, ops: Vec<Op>) -> Result<Vec<u64>, StoreError> {
        Ok(writer::seqs(
            self.writer
                .submit(ops)?
                .await
                .map_err(|_| StoreError::Closed)??,
        ))
    }

    /// Blocking variant for start-up and command-line tools.
    pub fn write_blocking(&self, ops: Vec<Op>) -> Result<Vec<u64>, StoreError> {
        Ok(writer::seqs(
            self.writer
                .submit(ops)?
                .blocking_recv()
                .map_err(|_| StoreError::Closed)??,
        ))
    }

    /// Runs `work` with this store on the blocking pool: a read of a large page, a lookup per
    /// request or a durable write must not hold an async worker.
    pub(crate) async fn blocking<T, E>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| E::from(StoreError::Task(e)))?
    }

    /// Runs one bounded retention step; returns how many records it removed.
    pub async fn prune(&self, plan: PrunePlan) -> Result<u64, StoreError> {
        Ok(self
            .write(vec![Op::Prune(plan)])
            .await?
            .first()
            .copied()
            .unwrap_or(0))
    }

    /// Notified after each commit that may have appended outbox events (it keeps one permit, so
    /// a signal sent while nobody waits is not lost).
    pub fn outbox_written(&self) -> Arc<tokio::sync::Notify> {
        self.writer.outbox()
    }

    /// Durable commits since the store was opened (each may carry many writes).
    pub fn commits(&self) -> u64 {
        self.writer.commits()
    }

    /// Finishes queued writes and stops the writer; later writes fail with `Closed`.
    pub fn close(&self) {
        self.writer.close();
    }

    fn get<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        name: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let t = txn.open_table(table)?;
            let value = t.get(key)?;
            value.map(|v| decode(name, v.value())).transpose()
        })
    }

    /// Records of a sequence table below `before`, newest first, at most `limit` of them and at
    /// most [`MAX_PAGE_BYTES`] of stored bytes. A record that does not decode is listed as a
    /// placeholder naming its sequence number, so one bad record never fails the whole list.
    fn page<T: DeserializeOwned>(
        &self,
        table: TableDefinition<u64, &[u8]>,
        name: &'static str,
        limit: usize,
        before: Option<u64>,
        set_seq: impl Fn(&mut T, u64),
    ) -> Result<Page<T>, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let t = txn.open_table(table)?;
            let mut page = PageBuilder::new(limit);
            for entry in t.range(..before.unwrap_or(u64::MAX))?.rev() {
                let (k, v) = entry?;
                if !page.push(name, k.value(), v.value(), &set_seq) {
                    break;
                }
            }
            Ok(page.finish())
        })
    }

    pub fn active_release(&self) -> Result<Option<String>, StoreError> {
        self.get(META, "meta", META_ACTIVE)
    }

    pub fn pin(&self) -> Result<Option<records::PinRecord>, StoreError> {
        self.get(META, "meta", META_PIN)
    }

    pub fn release(&self, id: &str) -> Result<Option<ReleaseRecord>, StoreError> {
        self.get(RELEASES, "releases", id)
    }

    /// When release `id` last passed all its fixtures, and under what test conditions.
    pub fn release_pass(&self, id: &str) -> Result<Option<records::PassRecord>, StoreError> {
        self.get(RELEASE_PASSES, "release_passes", id)
    }

    /// Every file of a stored release, `{path: text}`.
    pub fn release_sources(
        &self,
        id: &str,
    ) -> Result<Option<BTreeMap<String, String>>, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let manifests = txn.open_table(RELEASE_SOURCES)?;
            let trees = txn.open_table(SOURCE_TREES)?;
            let Some(manifest) = read_listing(&manifests, &trees, id)? else {
                return Ok(None);
            };
            let files = txn.open_table(SOURCE_FILES)?;
            let mut sources = BTreeMap::new();
            for (path, key) in manifest {
                let text = files
                    .get(key.as_str())?
                    .ok_or_else(|| StoreError::Corrupt {
                        table: "source_files",
                        message: format!("release {id}: the text of `{path}` ({key}) is missing"),
                    })?;
                sources.insert(path, decode::<String>("source_files", text.value())?);
            }
            Ok(Some(sources))
        })
    }

    /// Every stored release, newest first (retention keeps their number small; their sources
    /// are not loaded). A record that does not decode is skipped with a log line.
    pub fn releases(&self) -> Result<Vec<ReleaseRecord>, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let t = txn.open_table(RELEASES)?;
            let mut out = Vec::new();
            for entry in t.iter()? {
                let (k, v) = entry?;
                match decode::<ReleaseRecord>("releases", v.value()) {
                    Ok(r) => out.push(r),
                    Err(e) => tracing::warn!("release `{}` is unreadable: {e}", k.value()),
                }
            }
            out.sort_by_key(|r| std::cmp::Reverse(r.created_at));
            Ok(out)
        })
    }

    pub fn activations(
        &self,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Page<ActivationRecord>, StoreError> {
        self.page(ACTIVATIONS, "activations", limit, before, |_, _| {})
    }

    pub fn reloads(
        &self,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Page<ReloadRecord>, StoreError> {
        self.page(
            RELOADS,
            "reloads",
            limit,
            before,
            |r: &mut ReloadRecord, s| r.seq = s,
        )
    }

    pub fn audit(
        &self,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Page<AuditRecord>, StoreError> {
        self.page(AUDIT, "audit", limit, before, |r: &mut AuditRecord, s| {
            r.seq = s
        })
    }

    /// The newest decisions below sequence number `before` (all when `None`), optionally of
    /// one permit type only (through its index table). Page with `next_before`.
    pub fn decisions(
        &self,
        permit: Option<&str>,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Page<DecisionRecord>, StoreError> {
        let set_seq = |r: &mut DecisionRecord, s| r.seq = s;
        let Some(permit) = permit else {
            return self.page(DECISIONS, "decisions", limit, before, set_seq);
        };
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let index = txn.open_table(DECISIONS_BY_PERMIT)?;
            let decisions = txn.open_table(DECISIONS)?;
            let mut page = PageBuilder::new(limit);
            let before = before.unwrap_or(u64::MAX);
            for entry in index.range((permit, 0)..(permit, before))?.rev() {
                let (k, _) = entry?;
                let seq = k.value().1;
                if let Some(v) = decisions.get(seq)? {
                    if !page.push("decisions", seq, v.value(), &set_seq) {
                        break;
                    }
                }
            }
            Ok(page.finish())
        })
    }

    pub fn decision_count(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            Ok(txn.open_table(DECISIONS)?.len()?)
        })
    }

    /// Stored bytes of the decision log (what `decisions_max_bytes` bounds).
    pub fn decision_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.get(META, "meta", META_DECISION_BYTES)?.unwrap_or(0))
    }

    pub fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.get(TOKENS, "tokens", hash)
    }

    /// The stored hash and record of the token whose public id is `id`.
    pub fn token_by_id(&self, id: &str) -> Result<Option<(String, TokenRecord)>, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let table = txn.open_table(TOKENS)?;
            for entry in table.iter()? {
                let (k, v) = entry?;
                let record = decode::<TokenRecord>("tokens", v.value())?;
                if record.id == id {
                    return Ok(Some((k.value().to_owned(), record)));
                }
            }
            Ok(None)
        })
    }

    /// The token stored under `hash` and, for a user's token, its user as stored now; read in
    /// one transaction so that a request sees one state of both.
    pub fn token_and_user(
        &self,
        hash: &str,
    ) -> Result<Option<(TokenRecord, Option<UserRecord>)>, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let Some(token) = txn.open_table(TOKENS)?.get(hash)? else {
                return Ok(None);
            };
            let token: TokenRecord = decode("tokens", token.value())?;
            let user = match &token.user {
                None => None,
                Some(name) => txn
                    .open_table(USERS)?
                    .get(name.as_str())?
                    .map(|v| decode::<UserRecord>("users", v.value()))
                    .transpose()?,
            };
            Ok(Some((token, user)))
        })
    }

    pub fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.get(USERS, "users", username)
    }

    /// Every user, by username. Offices have tens to hundreds of staff: one read.
    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let t = txn.open_table(USERS)?;
            let mut out = Vec::new();
            for entry in t.iter()? {
                let (_, v) = entry?;
                out.push(decode::<UserRecord>("users", v.value())?);
            }
            Ok(out)
        })
    }

    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let t = txn.open_table(TOKENS)?;
            let mut out = Vec::new();
            for entry in t.iter()? {
                let (_, v) = entry?;
                out.push(decode::<TokenRecord>("tokens", v.value())?);
            }
            Ok(out)
        })
    }
}

/// Collects one page within its count and byte bounds.
struct PageBuilder<T> {
    items: Vec<Listed<T>>,
    limit: usize,
    bytes: usize,
    last_seq: Option<u64>,
    full: bool,
}

impl<T: DeserializeOwned> PageBuilder<T> {
    fn new(limit: usize) -> Self {
        Self {
            items: Vec::new(),
            limit,
            bytes: 0,
            last_seq: None,
            full: false,
        }
    }

    /// Adds the record `seq`; false when the page is full (the record was not added).
    fn push(
        &mut self,
        table: &'static str,
        seq: u64,
        bytes: &[u8],
        set_seq: &impl Fn(&mut T, u64),
    ) -> bool {
        if self.items.len() >= self.limit
            || (!self.items.is_empty() && self.bytes + bytes.len() > MAX_PAGE_BYTES)
        {
            self.full = true;
            return false;
        }
        self.bytes += bytes.len();
        self.items.push(match decode::<T>(table, bytes) {
            Ok(mut record) => {
                set_seq(&mut record, seq);
                Listed::Record(record)
            }
            Err(e) => {
                tracing::warn!("record {seq} of `{table}` is unreadable: {e}");
                Listed::Unreadable {
                    seq,
                    unreadable: e.to_string(),
                }
            }
        });
        self.last_seq = Some(seq);
        true
    }

    fn finish(self) -> Page<T> {
        Page {
            next_before: if self.full { self.last_seq } else { None },
            items: self.items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redb_failure_keeps_redb_s_error_as_its_source() {
        let e = StoreError::from(redb::TableError::TableIsMultimap("decisions".into()));
        let source = std::error::Error::source(&e).expect("redb's error is kept as the source");
        assert!(source.downcast_ref::<redb::Error>().is_some(), "{source:?}");
        assert!(e.to_string().contains("decisions"), "{e}");
        assert!(!e.is_unavailable());
    }

    use chrono::Utc;

    fn decision(permit: &str, n: u64) -> Op {
        Op::Decision(DecisionRecord {
            seq: 0,
            at: Utc::now(),
            permit: permit.into(),
            kind: "levy".into(),
            release: "r".into(),
            input: serde_json::json!({ "n": n }),
            output: serde_json::json!({}),
            duration_us: 1,
        })
    }

    #[test]
    fn records_survive_reopen_and_index_by_permit() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 64).unwrap();
            let seqs = store
                .write_blocking(vec![
                    decision("pbg", 1),
                    decision("sip", 2),
                    decision("pbg", 3),
                ])
                .unwrap();
            assert_eq!(seqs, [1, 2, 3]);
            store.close();
        }
        let store = Store::open(dir.path(), 64).unwrap();
        let pbg = seqs_of(&store.decisions(Some("pbg"), 10, None).unwrap());
        assert_eq!(pbg, [3, 1]);
        let newest = store.decisions(None, 2, None).unwrap();
        assert_eq!(seqs_of(&newest), [3, 2]);
        assert_eq!(newest.next_before, Some(2), "a further page exists");
        // Paging: below sequence 3 for pbg is only 1; below 2 overall is only 1.
        let page = store.decisions(Some("pbg"), 10, Some(3)).unwrap();
        assert_eq!(seqs_of(&page), [1]);
        assert_eq!(page.next_before, None, "that was the oldest");
        let page = store.decisions(None, 10, Some(2)).unwrap();
        assert_eq!(seqs_of(&page), [1]);
        assert_eq!(store.decision_count().unwrap(), 3);
    }

    fn seqs_of(page: &Page<DecisionRecord>) -> Vec<u64> {
        page.items
            .iter()
            .map(|d| d.record().expect("readable").seq)
            .collect()
    }

    fn nested(levels: usize) -> serde_json::Value {
        let mut v = serde_json::json!(1);
        for _ in 0..levels {
            v = serde_json::json!([v]);
        }
        v
    }

    #[test]
    fn deeply_nested_records_are_written_readable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let mut deep = decision("pbg", 1);
        if let Op::Decision(d) = &mut deep {
            d.input = nested(200);
        }
        store
            .write_blocking(vec![deep, decision("pbg", 2)])
            .unwrap();
        let page = store.decisions(None, 10, None).unwrap();
        assert_eq!(page.items.len(), 2);
        let first = page.items[1].record().expect("the deep record reads back");
        let text = first.input.to_string();
        assert!(text.contains(bound::DEPTH_MARKER), "{text}");
    }

    #[test]
    fn a_record_is_stored_as_capping_its_whole_tree_would_store_it() {
        // The reference: the record copied into a JSON tree, capped, then written.
        let capped = |data: &serde_json::Value| {
            let whole = serde_json::to_value(Envelope {
                v: RECORD_VERSION,
                data,
            })
            .unwrap();
            bound::cap_depth(whole, bound::MAX_RECORD_DEPTH)
        };
        let tricky = serde_json::json!({"k\"[": ["]\\", "{{", {"é": "\\\"]"}], "n": 1.50});
        let mut cases = vec![tricky];
        // The envelope is one level: these reach the cap minus one, the cap, and beyond.
        for levels in [
            bound::MAX_RECORD_DEPTH - 2,
            bound::MAX_RECORD_DEPTH - 1,
            200,
        ] {
            cases.push(nested(levels));
        }
        for data in &cases {
            let stored: serde_json::Value = serde_json::from_slice(&encode(data).unwrap()).unwrap();
            assert_eq!(stored, capped(data), "{data}");
        }
        let deepest: serde_json::Value =
            serde_json::from_slice(&encode(&nested(200)).unwrap()).unwrap();
        assert!(deepest.to_string().contains(bound::DEPTH_MARKER));
        let kept: serde_json::Value =
            serde_json::from_slice(&encode(&nested(bound::MAX_RECORD_DEPTH - 2)).unwrap()).unwrap();
        assert!(!kept.to_string().contains(bound::DEPTH_MARKER));
    }

    #[test]
    fn an_unreadable_record_is_a_placeholder_not_a_failed_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        store
            .write_blocking(vec![decision("pbg", 1), decision("pbg", 2)])
            .unwrap();
        store.close();
        drop(store);
        {
            // A record as an older build wrote it: nested deeper than serde_json reads.
            let db = Database::create(dir.path().join(DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            let bad = format!("{{\"v\":1,\"data\":{{\"input\":{}}}}}", nested(130));
            txn.open_table(DECISIONS)
                .unwrap()
                .insert(1, bad.as_bytes())
                .unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(dir.path(), 8).unwrap();
        for page in [
            store.decisions(None, 10, None).unwrap(),
            store.decisions(Some("pbg"), 10, None).unwrap(),
        ] {
            assert_eq!(page.items.len(), 2);
            assert_eq!(page.items[0].record().unwrap().seq, 2);
            match &page.items[1] {
                Listed::Unreadable { seq, unreadable } => {
                    assert_eq!(*seq, 1);
                    assert!(unreadable.contains("recursion"), "{unreadable}");
                }
                other => panic!("expected a placeholder, got {other:?}"),
            }
        }
    }

    #[test]
    fn pages_stop_at_the_byte_bound_and_say_where_to_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let big = "x".repeat(MAX_PAGE_BYTES / 3);
        for i in 0..5 {
            let mut op = decision("pbg", i);
            if let Op::Decision(d) = &mut op {
                d.input = serde_json::json!({ "pad": big });
            }
            store.write_blocking(vec![op]).unwrap();
        }
        let page = store.decisions(None, 1000, None).unwrap();
        assert!(
            page.items.len() < 5,
            "{} records in one page",
            page.items.len()
        );
        // Following `next_before` reaches every record exactly once.
        let mut seen = page.items.len();
        let mut next = page.next_before;
        assert!(next.is_some(), "more to read");
        while let Some(before) = next {
            let p = store.decisions(None, 1000, Some(before)).unwrap();
            seen += p.items.len();
            next = p.next_before;
        }
        assert_eq!(seen, 5);
    }

    #[test]
    fn pruning_removes_old_and_oversize_decisions_in_bounded_steps() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        let now = Utc::now();
        let mut ops = Vec::new();
        for i in 0..30u64 {
            let mut op = decision(if i % 2 == 0 { "pbg" } else { "sip" }, i);
            if let Op::Decision(d) = &mut op {
                // The first ten are two years old.
                if i < 10 {
                    d.at = now - chrono::Duration::days(730);
                }
            }
            ops.push(op);
        }
        store.write_blocking(ops).unwrap();
        let total = store.decision_bytes().unwrap();
        assert!(total > 0);
        let step = |plan: PrunePlan| store.write_blocking(vec![Op::Prune(plan)]).unwrap()[0];
        let by_age = PrunePlan {
            decisions_before: Some(now - chrono::Duration::days(365)),
            decisions_max_bytes: None,
            reloads_keep: None,
            releases_keep: None,
            batch: 4,
        };
        assert_eq!(step(by_age.clone()), 4, "one step removes at most a batch");
        assert_eq!(step(by_age.clone()), 4);
        assert_eq!(step(by_age.clone()), 2);
        assert_eq!(step(by_age), 0);
        assert_eq!(store.decision_count().unwrap(), 20);
        let oldest = store.decisions(None, 1000, None).unwrap();
        assert_eq!(oldest.items.last().unwrap().record().unwrap().seq, 11);
        // The index follows: no entry points at a removed record.
        assert_eq!(
            store
                .decisions(Some("pbg"), 1000, None)
                .unwrap()
                .items
                .len(),
            10
        );

        let per_record = store.decision_bytes().unwrap() / 20;
        let by_size = PrunePlan {
            decisions_before: None,
            decisions_max_bytes: Some(per_record * 5),
            reloads_keep: None,
            releases_keep: None,
            batch: 100,
        };
        step(by_size);
        assert!(store.decision_bytes().unwrap() <= per_record * 5);
        assert_eq!(store.decision_count().unwrap(), 5);
        store.close();
        drop(store);
        // The tracked size survives a restart and matches the records.
        let store = Store::open(dir.path(), 8).unwrap();
        assert!(store.decision_bytes().unwrap() <= per_record * 5);
    }

    /// The number of rows of `table`.
    fn rows(store: &Store, table: TableDefinition<&str, &[u8]>) -> u64 {
        let db = store.shared.db().unwrap();
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(table).unwrap();
        redb::ReadableTableMetadata::len(&t).unwrap()
    }

    /// The number of file bodies stored.
    fn stored_bodies(store: &Store) -> u64 {
        rows(store, SOURCE_FILES)
    }

    #[test]
    fn a_release_lists_its_folders_and_a_save_stores_the_changed_folder_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        let files = |levy: &str| -> BTreeMap<String, String> {
            BTreeMap::from([
                ("calendar.toml".to_owned(), "libur = []\n".to_owned()),
                ("README.md".to_owned(), "# Aturan\n".to_owned()),
                ("a/permit.toml".to_owned(), "name = \"A\"\n".to_owned()),
                ("a/levy.rhai".to_owned(), levy.to_owned()),
                ("a/tests/satu.json".to_owned(), "{}".to_owned()),
                ("a-b/permit.toml".to_owned(), "name = \"AB\"\n".to_owned()),
                ("a.toml".to_owned(), "x = 1\n".to_owned()),
                ("lib/angka.rhai".to_owned(), "fn f() { 1 }\n".to_owned()),
            ])
        };
        let release = |id: &str, levy: &str| Op::Release {
            record: ReleaseRecord {
                id: id.into(),
                created_at: Utc::now(),
                created_by: "t".into(),
                permits: vec![],
                fixtures: 0,
                files: 8,
            },
            sources: files(levy)
                .into_iter()
                .map(|(p, t)| (p, t.into()))
                .collect(),
        };
        store
            .write_blocking(vec![release("satu", "// 1\n")])
            .unwrap();
        // The root's own files, `a`, `a-b` and `lib`.
        assert_eq!(rows(&store, SOURCE_TREES), 4);
        assert_eq!(stored_bodies(&store), 8);
        store
            .write_blocking(vec![release("dua", "// 2\n")])
            .unwrap();
        // One file of `a` changed: one more tree and one more body, nothing else again.
        assert_eq!(rows(&store, SOURCE_TREES), 5);
        assert_eq!(stored_bodies(&store), 9);
        // Each release reads back exactly, paths at the root and in nested folders included.
        assert_eq!(
            store.release_sources("satu").unwrap(),
            Some(files("// 1\n"))
        );
        assert_eq!(store.release_sources("dua").unwrap(), Some(files("// 2\n")));
        // Storing the same files again adds nothing but the release's list.
        store
            .write_blocking(vec![release("tiga", "// 1\n")])
            .unwrap();
        assert_eq!(rows(&store, SOURCE_TREES), 5);
        assert_eq!(stored_bodies(&store), 9);
    }

    #[test]
    fn each_file_body_is_stored_once_and_goes_with_the_last_release_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        let now = Utc::now();
        let files = |rate: &str| -> BTreeMap<String, String> {
            BTreeMap::from([
                ("a/permit.toml".to_owned(), "name = \"A\"\n".to_owned()),
                ("b/permit.toml".to_owned(), "name = \"A\"\n".to_owned()),
                ("a/levy.rhai".to_owned(), format!("// {rate}\n")),
            ])
        };
        let release = |id: &str, age: i64, rate: &str| Op::Release {
            record: ReleaseRecord {
                id: id.into(),
                created_at: now - chrono::Duration::days(age),
                created_by: "t".into(),
                permits: vec![],
                fixtures: 0,
                files: 3,
            },
            sources: files(rate)
                .into_iter()
                .map(|(p, t)| (p, t.into()))
                .collect(),
        };
        store
            .write_blocking(vec![release("lama", 2, "1"), release("baru", 1, "2")])
            .unwrap();
        // Two identical permit.toml texts and two levy versions: three bodies.
        assert_eq!(stored_bodies(&store), 3);
        assert_eq!(store.release_sources("lama").unwrap(), Some(files("1")));
        assert_eq!(store.release_sources("baru").unwrap(), Some(files("2")));

        let plan = PrunePlan {
            decisions_before: None,
            decisions_max_bytes: None,
            reloads_keep: None,
            releases_keep: Some(1),
            batch: 100,
        };
        // Folders `a` (twice) and `b`.
        assert_eq!(rows(&store, SOURCE_TREES), 3);
        assert_eq!(store.write_blocking(vec![Op::Prune(plan)]).unwrap(), [1]);
        assert!(store.release_sources("lama").unwrap().is_none());
        assert_eq!(stored_bodies(&store), 2);
        assert_eq!(rows(&store, SOURCE_TREES), 2);
        assert_eq!(store.release_sources("baru").unwrap(), Some(files("2")));
    }

    #[test]
    fn folders_holding_the_very_texts_stored_last_keep_their_trees_and_others_are_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        let db = store.shared.db().unwrap();
        let txn = db.begin_write().unwrap();
        let folders_of = |id: &str| -> BTreeMap<String, String> {
            let t = txn.open_table(RELEASE_SOURCES).unwrap();
            let bytes = t.get(id).unwrap().unwrap();
            decode("release_sources", bytes.value()).unwrap()
        };
        let listing = |id: &str| -> BTreeMap<String, String> {
            let manifests = txn.open_table(RELEASE_SOURCES).unwrap();
            let trees = txn.open_table(SOURCE_TREES).unwrap();
            read_listing(&manifests, &trees, id).unwrap().unwrap()
        };
        let permit: Arc<str> = Arc::from("name = \"A\"\n");
        let other: Arc<str> = Arc::from("name = \"B\"\n");
        let release = |levy: &str| {
            BTreeMap::from([
                ("a/permit.toml".to_owned(), permit.clone()),
                ("a/levy.rhai".to_owned(), Arc::<str>::from(levy)),
                ("b/permit.toml".to_owned(), other.clone()),
            ])
        };
        let mut folders = StoredFolders::default();
        folders.put(&txn, "satu", &release("// 1\n")).unwrap();
        assert_eq!(listing("satu")["a/permit.toml"], source_key(&permit));
        let b_tree = folders_of("satu")["b"].clone();
        // Mark what is remembered of both folders. `b` holds the very text stored last: its
        // remembered tree is listed (so none of its texts was hashed again), and a tree that is
        // not stored is written again rather than listed unstored.
        folders.0.get_mut("b").unwrap().tree = "diingat".into();
        folders.put(&txn, "dua", &release("// 2\n")).unwrap();
        assert_eq!(
            folders_of("dua")["b"],
            b_tree,
            "an unstored tree is written again"
        );
        assert_eq!(listing("dua")["a/levy.rhai"], source_key("// 2\n"));
        txn.open_table(SOURCE_TREES)
            .unwrap()
            .insert(
                "diingat",
                encode_shallow(&BTreeMap::from([("permit.toml", "k")]))
                    .unwrap()
                    .as_slice(),
            )
            .unwrap();
        folders.0.get_mut("b").unwrap().tree = "diingat".into();
        folders.put(&txn, "tiga", &release("// 2\n")).unwrap();
        assert_eq!(
            folders_of("tiga")["b"],
            "diingat",
            "a remembered, stored tree is kept"
        );
        // `a` changed between the two releases only in `levy.rhai`: its tree is new, and holds
        // the unchanged text's key too.
        assert_ne!(folders_of("satu")["a"], folders_of("dua")["a"]);
        assert_eq!(listing("dua")["a/permit.toml"], source_key(&permit));
        // An equal text that is not the same one, or at another path, makes the folder hashed:
        // its tree is computed (not the remembered `diingat`).
        let copied = BTreeMap::from([
            ("a/permit.toml".to_owned(), permit.clone()),
            ("a/levy.rhai".to_owned(), Arc::<str>::from("// 2\n")),
            ("b/permit.toml".to_owned(), Arc::<str>::from(&*other)),
        ]);
        folders.put(&txn, "empat", &copied).unwrap();
        assert_eq!(folders_of("empat")["b"], b_tree);
        let moved = BTreeMap::from([
            ("a/permit.toml".to_owned(), permit.clone()),
            ("a/levy.rhai".to_owned(), Arc::<str>::from("// 2\n")),
            ("b/izin.toml".to_owned(), other.clone()),
        ]);
        folders.put(&txn, "lima", &moved).unwrap();
        assert_eq!(listing("lima")["b/izin.toml"], source_key(&other));
        assert_ne!(folders_of("lima")["b"], b_tree);
    }

    #[test]
    fn shallow_values_are_stored_as_the_general_encoding_stores_them() {
        let manifest = BTreeMap::from([("b/levy.rhai", "k2"), ("a/permit.toml", "k1")]);
        assert_eq!(
            encode_shallow(&manifest).unwrap(),
            encode(&manifest).unwrap()
        );
        let text = "fn levy(d, p) { \"é\\n\" }";
        assert_eq!(encode_shallow(text).unwrap(), encode(&text).unwrap());
        assert_eq!(
            decode::<String>("source_files", &encode_shallow(text).unwrap()).unwrap(),
            text
        );
    }

    #[test]
    fn a_pass_recorded_with_its_fixture_count_still_reads() {
        // The first binaries with `release_passes` also stored the count; a restart still finds
        // the pass.
        let bytes = format!(
            r#"{{"v":{RECORD_VERSION},"data":{{"release":"a","under":"t","fixtures":3,"at":"2026-11-29T16:00:00Z"}}}}"#
        );
        let pass: records::PassRecord = decode("release_passes", bytes.as_bytes()).unwrap();
        assert_eq!((pass.release.as_str(), pass.under.as_str()), ("a", "t"));
    }

    #[test]
    fn pruning_releases_keeps_the_newest_the_active_and_the_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        let now = Utc::now();
        let release = |id: &str, age: i64| Op::Release {
            record: ReleaseRecord {
                id: id.into(),
                created_at: now - chrono::Duration::days(age),
                created_by: "t".into(),
                permits: vec![],
                fixtures: 0,
                files: 0,
            },
            sources: BTreeMap::new(),
        };
        let pass = |id: &str| {
            Op::Passed(records::PassRecord {
                release: id.into(),
                under: "t".into(),
                at: now,
            })
        };
        store
            .write_blocking(vec![
                release("a", 5),
                release("b", 4),
                release("c", 3),
                release("d", 2),
                release("e", 1),
                pass("c"),
                pass("e"),
                Op::Activate(ActivationRecord {
                    release: "a".into(),
                    at: now,
                    by: "t".into(),
                    reason: "t".into(),
                }),
                Op::Pin(Some(records::PinRecord {
                    release: "b".into(),
                    folder: String::new(),
                })),
            ])
            .unwrap();
        let plan = PrunePlan {
            decisions_before: None,
            decisions_max_bytes: None,
            reloads_keep: None,
            releases_keep: Some(2),
            batch: 100,
        };
        assert_eq!(store.write_blocking(vec![Op::Prune(plan)]).unwrap(), [1]);
        let ids: Vec<String> = store
            .releases()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["e", "d", "b", "a"]);
        assert!(store.release_sources("c").unwrap().is_none());
        // What it passed goes with the release; the others keep theirs.
        assert!(store.release_pass("c").unwrap().is_none());
        assert_eq!(store.release_pass("e").unwrap().unwrap().under, "t");
    }

    #[test]
    fn an_empty_database_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), b"").unwrap();
        let err = Store::open(dir.path(), 8).err().unwrap();
        assert!(err.to_string().contains("empty"), "{err}");
        assert_eq!(
            std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len(),
            0
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_data_folder_and_its_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        {
            let store = Store::open(&dir, 8).unwrap();
            store.close();
        }
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(DB_FILE)), 0o600);
        // A folder made by an older build is tightened on start.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.join(DB_FILE), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let _store = Store::open(&dir, 8).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(DB_FILE)), 0o600);
    }

    #[test]
    fn a_panic_inside_a_read_becomes_an_error_of_that_read() {
        let read: Result<(), StoreError> = guarded(|| panic!("page 7 is garbage"));
        let err = read.unwrap_err();
        assert!(err.to_string().contains("page 7 is garbage"), "{err}");
        // The store keeps working afterwards.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        assert_eq!(store.decision_count().unwrap(), 0);
    }

    #[test]
    fn a_second_process_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let _store = Store::open(dir.path(), 64).unwrap();
        let err = Store::open(dir.path(), 64).err().unwrap();
        assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    }

    #[test]
    fn concurrent_writers_share_commits_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let store = store.clone();
                s.spawn(move || {
                    for i in 0..25 {
                        store
                            .write_blocking(vec![decision("pbg", t * 100 + i)])
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(store.decision_count().unwrap(), 200);
        assert!(store.writer.commits() < 200, "no batching happened");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::create(dir.path().join(DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(
                    META_SCHEMA,
                    encode(&(SCHEMA_VERSION + 1)).unwrap().as_slice(),
                )
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(dir.path(), 64).err().unwrap();
        assert!(matches!(err, StoreError::NewerSchema { .. }), "{err}");
    }
}
