//! Durable state in one redb file, `DATA/pintu.redb`. This module owns every table; nothing else
//! touches redb. Writes go through a single writer thread that batches whatever is queued into
//! one durable transaction (group commit): a caller's write returns only after its batch is on
//! disk, so an acknowledged write is never lost.

pub mod records;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use records::{
    ActivationRecord, AuditRecord, DecisionRecord, Envelope, ReleaseRecord, ReloadRecord,
    TokenRecord, RECORD_VERSION,
};
pub use writer::Op;

/// Schema version of the table layout; bumped with a migration in [`Store::open`].
pub const SCHEMA_VERSION: u32 = 1;
pub const DB_FILE: &str = "pintu.redb";

// INVARIANT: every table of the database is declared here and documented in docs/storage.md.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const RELEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("releases");
pub(crate) const RELEASE_SOURCES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("release_sources");
pub(crate) const ACTIVATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("activations");
pub(crate) const RELOADS: TableDefinition<u64, &[u8]> = TableDefinition::new("reloads");
pub(crate) const DECISIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("decisions");
pub(crate) const DECISIONS_BY_PERMIT: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("decisions_by_permit");
pub(crate) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
pub(crate) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

pub(crate) const META_SCHEMA: &str = "schema_version";
pub(crate) const META_ACTIVE: &str = "active_release";
pub(crate) const META_PIN: &str = "pin";

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
    #[error(
        "database schema version {found} is newer than this pintu supports ({SCHEMA_VERSION})"
    )]
    NewerSchema { found: u32 },
    #[error("storage error: {0}")]
    Storage(String),
    #[error("corrupt record in `{table}`: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
    #[error("the store is shut down")]
    Closed,
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Storage(e.to_string())
            }
        }
    )*};
}
storage_from!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError
);

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&Envelope {
        v: RECORD_VERSION,
        data: value,
    })
    .map_err(|e| StoreError::Storage(e.to_string()))
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

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    writer: Arc<writer::Writer>,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) `DATA/pintu.redb`, checking and if needed migrating the schema.
    pub fn open(data_dir: &Path, max_batch: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse { path: path.clone() },
            other => StoreError::Open {
                path: path.clone(),
                message: other.to_string(),
            },
        })?;
        let db = Arc::new(db);
        Self::init_schema(&db)?;
        let writer = Arc::new(writer::Writer::start(db.clone(), max_batch));
        Ok(Self { db, writer, path })
    }

    fn init_schema(db: &Database) -> Result<(), StoreError> {
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta
                .get(META_SCHEMA)?
                .map(|v| decode::<u32>("meta", v.value()))
                .transpose()?;
            match found {
                Some(v) if v > SCHEMA_VERSION => return Err(StoreError::NewerSchema { found: v }),
                // Older layouts would be migrated here, one version step at a time.
                Some(_) => {}
                None => {
                    meta.insert(META_SCHEMA, encode(&SCHEMA_VERSION)?.as_slice())?;
                }
            }
            // Create every table up front so readers never meet a missing one.
            txn.open_table(RELEASES)?;
            txn.open_table(RELEASE_SOURCES)?;
            txn.open_table(ACTIVATIONS)?;
            txn.open_table(RELOADS)?;
            txn.open_table(DECISIONS)?;
            txn.open_table(DECISIONS_BY_PERMIT)?;
            txn.open_table(TOKENS)?;
            txn.open_table(AUDIT)?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `ops` in one transaction shared with concurrent callers; returns once durable,
    /// with the sequence numbers assigned to appended records (in order).
    pub async fn write(&self, ops: Vec<Op>) -> Result<Vec<u64>, StoreError> {
        self.writer
            .submit(ops)?
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Blocking variant for start-up and command-line tools.
    pub fn write_blocking(&self, ops: Vec<Op>) -> Result<Vec<u64>, StoreError> {
        self.writer
            .submit(ops)?
            .blocking_recv()
            .map_err(|_| StoreError::Closed)?
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
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table)?;
        let value = t.get(key)?;
        value.map(|v| decode(name, v.value())).transpose()
    }

    /// The newest `limit` records of a sequence table, newest first, with `seq` filled in.
    fn newest<T: DeserializeOwned>(
        &self,
        table: TableDefinition<u64, &[u8]>,
        name: &'static str,
        limit: usize,
        set_seq: impl Fn(&mut T, u64),
    ) -> Result<Vec<T>, StoreError> {
        self.newest_before(table, name, limit, u64::MAX, set_seq)
    }

    /// Like [`Self::newest`], for records whose sequence number is below `before` (paging).
    fn newest_before<T: DeserializeOwned>(
        &self,
        table: TableDefinition<u64, &[u8]>,
        name: &'static str,
        limit: usize,
        before: u64,
        set_seq: impl Fn(&mut T, u64),
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table)?;
        let mut out = Vec::new();
        for entry in t.range(..before)?.rev().take(limit) {
            let (k, v) = entry?;
            let mut record: T = decode(name, v.value())?;
            set_seq(&mut record, k.value());
            out.push(record);
        }
        Ok(out)
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

    pub fn release_sources(
        &self,
        id: &str,
    ) -> Result<Option<BTreeMap<String, String>>, StoreError> {
        self.get(RELEASE_SOURCES, "release_sources", id)
    }

    /// Every stored release, newest first.
    pub fn releases(&self) -> Result<Vec<ReleaseRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(RELEASES)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (_, v) = entry?;
            out.push(decode::<ReleaseRecord>("releases", v.value())?);
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        Ok(out)
    }

    pub fn activations(&self, limit: usize) -> Result<Vec<ActivationRecord>, StoreError> {
        self.newest(ACTIVATIONS, "activations", limit, |_, _| {})
    }

    pub fn reloads(&self, limit: usize) -> Result<Vec<ReloadRecord>, StoreError> {
        self.newest(RELOADS, "reloads", limit, |r: &mut ReloadRecord, s| {
            r.seq = s
        })
    }

    pub fn audit(&self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.newest(AUDIT, "audit", limit, |r: &mut AuditRecord, s| r.seq = s)
    }

    /// The newest decisions, optionally of one permit type only (through its index table).
    /// The newest decisions below sequence number `before` (all when `None`), optionally of
    /// one permit type only (through its index table). Page with the last `seq` seen.
    pub fn decisions(
        &self,
        permit: Option<&str>,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let before = before.unwrap_or(u64::MAX);
        let Some(permit) = permit else {
            return self.newest_before(
                DECISIONS,
                "decisions",
                limit,
                before,
                |r: &mut DecisionRecord, s| r.seq = s,
            );
        };
        let txn = self.db.begin_read()?;
        let index = txn.open_table(DECISIONS_BY_PERMIT)?;
        let decisions = txn.open_table(DECISIONS)?;
        let mut out = Vec::new();
        for entry in index
            .range((permit, 0)..(permit, before))?
            .rev()
            .take(limit)
        {
            let (k, _) = entry?;
            let seq = k.value().1;
            if let Some(v) = decisions.get(seq)? {
                let mut record: DecisionRecord = decode("decisions", v.value())?;
                record.seq = seq;
                out.push(record);
            }
        }
        Ok(out)
    }

    pub fn decision_count(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(DECISIONS)?.len()?)
    }

    pub fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.get(TOKENS, "tokens", hash)
    }

    /// The stored hash and record of the token whose public id is `id`.
    pub fn token_by_id(&self, id: &str) -> Result<Option<(String, TokenRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TOKENS)?;
        for entry in table.iter()? {
            let (k, v) = entry?;
            let record = decode::<TokenRecord>("tokens", v.value())?;
            if record.id == id {
                return Ok(Some((k.value().to_owned(), record)));
            }
        }
        Ok(None)
    }

    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(TOKENS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (_, v) = entry?;
            out.push(decode::<TokenRecord>("tokens", v.value())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let pbg = store.decisions(Some("pbg"), 10, None).unwrap();
        assert_eq!(pbg.iter().map(|d| d.seq).collect::<Vec<_>>(), [3, 1]);
        assert_eq!(store.decisions(None, 2, None).unwrap().len(), 2);
        // Paging: below sequence 3 for pbg is only 1; below 2 overall is only 1.
        let page = store.decisions(Some("pbg"), 10, Some(3)).unwrap();
        assert_eq!(page.iter().map(|d| d.seq).collect::<Vec<_>>(), [1]);
        let page = store.decisions(None, 10, Some(2)).unwrap();
        assert_eq!(page.iter().map(|d| d.seq).collect::<Vec<_>>(), [1]);
        assert_eq!(store.decision_count().unwrap(), 3);
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
