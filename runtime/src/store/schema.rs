//! The version of the table layout and the migrations between versions. On open the stored
//! version is compared with [`SCHEMA_VERSION`]: a newer one is refused (this binary would misread
//! it), an older one is brought up to date by running every migration from it onwards, all in the
//! one write transaction that also creates missing tables, so a failed migration leaves the file
//! exactly as it was. How to add a step: `docs/storage.md`, "How to change the schema".

use redb::{Database, ReadableTable, WriteTransaction};

use super::{
    decode, encode, StoreError, ACTIVATIONS, APPLICATIONS, APPLICATION_INDEX, AUDIT,
    CONNECTOR_DRAFTS, CONNECTOR_KV, COUNTERS, DECISIONS, DECISIONS_BY_PERMIT, DELIVERIES,
    DELIVERIES_BY_STATE, DELIVERY_CURSORS, EVENTS, META, META_DECISION_BYTES, META_SCHEMA,
    PLUGIN_FILES, RELEASES, RELEASE_PLUGINS, RELEASE_SOURCES, RELOADS, SOURCE_FILES, SOURCE_TREES,
    TOKENS, USERS,
};

/// Version of the table layout this binary writes and reads.
pub const SCHEMA_VERSION: u32 = 3;

/// One step of the table layout, from version `from` to `from + 1`.
pub(crate) struct Migration {
    pub(crate) from: u32,
    /// What changes, for the log line and the error if it fails.
    pub(crate) what: &'static str,
    pub(crate) run: fn(&WriteTransaction) -> Result<(), StoreError>,
}

// INVARIANT: ordered by `from`, one step per version from 1 up to `SCHEMA_VERSION - 1` (a unit
// test checks it), each written against the layout of its own `from` version only.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        from: 1,
        what: "store each release's file bodies once, by hash, in `source_files`",
        run: sources_by_hash,
    },
    Migration {
        from: 2,
        what: "list each release's files by top-level folder, in `source_trees`",
        run: sources_by_folder,
    },
];

/// Version 1 kept `{path: text}` per release in `release_sources`; version 2 keeps
/// `{path: key}` there and each text once in `source_files` under its key.
fn sources_by_hash(txn: &WriteTransaction) -> Result<(), StoreError> {
    let releases = stored_lists(txn)?;
    let mut files = txn.open_table(SOURCE_FILES)?;
    let mut manifests = txn.open_table(RELEASE_SOURCES)?;
    for (id, sources) in releases {
        let mut manifest = std::collections::BTreeMap::new();
        for (path, text) in &sources {
            let key = super::source_key(text);
            if files.get(key.as_str())?.is_none() {
                files.insert(key.as_str(), encode(text)?.as_slice())?;
            }
            manifest.insert(path.as_str(), key);
        }
        manifests.insert(id.as_str(), encode(&manifest)?.as_slice())?;
    }
    Ok(())
}

/// Version 2 kept `{path: key}` per release in `release_sources`; version 3 keeps `{folder:
/// tree key}` there and each folder's `{path within it: key}` once in `source_trees`. The texts
/// stay where they are.
fn sources_by_folder(txn: &WriteTransaction) -> Result<(), StoreError> {
    for (id, listing) in stored_lists(txn)? {
        super::put_listing(
            txn,
            &id,
            listing
                .iter()
                .map(|(path, key)| (path.as_str(), key.as_str(), None)),
        )?;
    }
    Ok(())
}

type StoredList = std::collections::BTreeMap<String, String>;

/// Every release's entry in `release_sources`, read as `{name: text or key}`: the shape of
/// versions 1 and 2, whose steps rewrite them.
fn stored_lists(txn: &WriteTransaction) -> Result<Vec<(String, StoredList)>, StoreError> {
    let mut releases = Vec::new();
    for entry in txn.open_table(RELEASE_SOURCES)?.iter()? {
        let (k, v) = entry?;
        releases.push((k.value().to_owned(), decode("release_sources", v.value())?));
    }
    Ok(releases)
}

/// Brings the database at the open to [`SCHEMA_VERSION`] and creates any missing table; returns
/// the version found (`None` for a new database).
pub(crate) fn init(db: &Database) -> Result<Option<u32>, StoreError> {
    init_to(db, SCHEMA_VERSION, MIGRATIONS)
}

/// [`init`] against any target and list of steps (tests run it with steps of their own).
pub(crate) fn init_to(
    db: &Database,
    target: u32,
    migrations: &[Migration],
) -> Result<Option<u32>, StoreError> {
    let txn = db.begin_write()?;
    let found = {
        let meta = txn.open_table(META)?;
        let stored = meta.get(META_SCHEMA)?;
        stored
            .map(|v| decode::<u32>("meta", v.value()))
            .transpose()?
    };
    match found {
        Some(v) if v > target => {
            return Err(StoreError::NewerSchema {
                found: v,
                supported: target,
            })
        }
        Some(v) => migrate(&txn, v, target, migrations)?,
        // A new database: the tables below are created in today's layout.
        None => {}
    }
    if found != Some(target) {
        txn.open_table(META)?
            .insert(META_SCHEMA, encode(&target)?.as_slice())?;
    }
    create_tables(&txn)?;
    txn.commit()?;
    if let Some(from) = found.filter(|&v| v < target) {
        tracing::info!("database schema migrated from version {from} to {target}");
    }
    Ok(found)
}

/// Runs every step from `found` up to `target`, in order, inside `txn`.
fn migrate(
    txn: &WriteTransaction,
    found: u32,
    target: u32,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    for from in found..target {
        let step = migrations
            .iter()
            .find(|m| m.from == from)
            .ok_or(StoreError::NoMigration { found: from })?;
        tracing::info!(
            "migrating the database schema from version {from} to {}: {}",
            from + 1,
            step.what
        );
        (step.run)(txn).map_err(|e| StoreError::Migration {
            from,
            what: step.what,
            source: Box::new(e),
        })?;
    }
    Ok(())
}

/// Creates every table of today's layout up front so readers never meet a missing one, and
/// counts the decision log's size once for databases written before it was tracked.
fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(RELEASES)?;
    txn.open_table(RELEASE_SOURCES)?;
    txn.open_table(SOURCE_FILES)?;
    txn.open_table(SOURCE_TREES)?;
    txn.open_table(ACTIVATIONS)?;
    txn.open_table(RELOADS)?;
    txn.open_table(DECISIONS_BY_PERMIT)?;
    txn.open_table(TOKENS)?;
    txn.open_table(AUDIT)?;
    txn.open_table(USERS)?;
    txn.open_table(APPLICATIONS)?;
    txn.open_table(APPLICATION_INDEX)?;
    txn.open_table(COUNTERS)?;
    txn.open_table(EVENTS)?;
    txn.open_table(CONNECTOR_KV)?;
    txn.open_table(DELIVERY_CURSORS)?;
    txn.open_table(DELIVERIES)?;
    txn.open_table(DELIVERIES_BY_STATE)?;
    txn.open_table(RELEASE_PLUGINS)?;
    txn.open_table(PLUGIN_FILES)?;
    txn.open_table(CONNECTOR_DRAFTS)?;
    txn.open_table(super::RELEASE_PASSES)?;
    let decisions = txn.open_table(DECISIONS)?;
    let mut meta = txn.open_table(META)?;
    if meta.get(META_DECISION_BYTES)?.is_none() {
        let mut bytes = 0u64;
        for entry in decisions.iter()? {
            bytes += entry?.1.value().len() as u64;
        }
        meta.insert(META_DECISION_BYTES, encode(&bytes)?.as_slice())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableDatabase;

    fn schema_of(db: &Database) -> Option<u32> {
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        let v = meta.get(META_SCHEMA).unwrap();
        v.map(|v| decode::<u32>("meta", v.value()).unwrap())
    }

    fn meta_value(db: &Database, key: &str) -> Option<String> {
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        let v = meta.get(key).unwrap();
        v.map(|v| decode::<String>("meta", v.value()).unwrap())
    }

    #[test]
    fn the_migration_list_has_one_step_per_older_version() {
        let froms: Vec<u32> = MIGRATIONS.iter().map(|m| m.from).collect();
        let expected: Vec<u32> = (1..SCHEMA_VERSION).collect();
        assert_eq!(froms, expected);
    }

    fn rename_note(txn: &WriteTransaction) -> Result<(), StoreError> {
        let mut meta = txn.open_table(META)?;
        let old = meta
            .remove("note")?
            .map(|v| decode::<String>("meta", v.value()))
            .transpose()?;
        if let Some(old) = old {
            meta.insert("office_note", encode(&old)?.as_slice())?;
        }
        Ok(())
    }

    fn add_greeting(txn: &WriteTransaction) -> Result<(), StoreError> {
        txn.open_table(META)?
            .insert("greeting", encode(&"halo")?.as_slice())?;
        Ok(())
    }

    fn fail(_: &WriteTransaction) -> Result<(), StoreError> {
        Err(StoreError::Corrupt {
            table: "meta",
            message: "cannot convert `note`".into(),
        })
    }

    /// A version-1 database holding a meta entry the steps below change.
    fn v1_database(dir: &std::path::Path) -> Database {
        let db = Database::create(dir.join("pintu.redb")).unwrap();
        assert_eq!(init_to(&db, 1, &[]).unwrap(), None);
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("note", encode(&"kantor lama").unwrap().as_slice())
            .unwrap();
        txn.commit().unwrap();
        db
    }

    #[test]
    fn an_older_database_runs_every_later_step_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = v1_database(dir.path());
        let steps = [
            Migration {
                from: 1,
                what: "rename meta `note` to `office_note`",
                run: rename_note,
            },
            Migration {
                from: 2,
                what: "add a greeting",
                run: add_greeting,
            },
        ];
        assert_eq!(init_to(&db, 3, &steps).unwrap(), Some(1));
        assert_eq!(schema_of(&db), Some(3));
        assert_eq!(meta_value(&db, "note"), None);
        assert_eq!(
            meta_value(&db, "office_note").as_deref(),
            Some("kantor lama")
        );
        assert_eq!(meta_value(&db, "greeting").as_deref(), Some("halo"));
        // Opening again at the same version runs nothing more.
        assert_eq!(init_to(&db, 3, &[]).unwrap(), Some(3));
    }

    #[test]
    fn a_failing_step_leaves_the_database_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let db = v1_database(dir.path());
        let steps = [
            Migration {
                from: 1,
                what: "rename meta `note` to `office_note`",
                run: rename_note,
            },
            Migration {
                from: 2,
                what: "convert the notes",
                run: fail,
            },
        ];
        let err = init_to(&db, 3, &steps).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("version 2") && text.contains("convert the notes"),
            "{text}"
        );
        assert!(text.contains("cannot convert `note`"), "{text}");
        // The first step's change went with the failed transaction.
        assert_eq!(schema_of(&db), Some(1));
        assert_eq!(meta_value(&db, "note").as_deref(), Some("kantor lama"));
        assert_eq!(meta_value(&db, "office_note"), None);
    }

    #[test]
    fn a_missing_step_is_refused_naming_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let db = v1_database(dir.path());
        let err = init_to(&db, 2, &[]).unwrap_err();
        assert!(matches!(err, StoreError::NoMigration { found: 1 }), "{err}");
        assert_eq!(schema_of(&db), Some(1));
    }

    #[test]
    fn a_newer_database_is_refused_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let db = v1_database(dir.path());
        let err = init_to(&db, 0, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "database schema version 1 is newer than this pintu supports (0)"
        );
        assert!(
            matches!(
                err,
                StoreError::NewerSchema {
                    found: 1,
                    supported: 0
                }
            ),
            "{err}"
        );
        assert_eq!(schema_of(&db), Some(1));
    }
}
