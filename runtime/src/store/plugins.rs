//! The connector files of releases: each release with connectors names its files in
//! `release_plugins`, and each file's bytes are kept once in `plugin_files`, raw (components are
//! binary), by their SHA-256. Restoring or reactivating a release reads them back exactly.

use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use sha2::{Digest, Sha256};

use super::records::Envelope;
use super::{decode, encode, guarded, StoreError, PLUGIN_FILES, RELEASE_PLUGINS};

/// The key of a file's bytes in `plugin_files`.
pub(crate) fn plugin_key(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Stores `files` (`{"<name>/<file>": bytes}`) as the connector files of release `id`.
pub(crate) fn put_plugins(
    txn: &WriteTransaction,
    id: &str,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<(), StoreError> {
    let mut bodies = txn.open_table(PLUGIN_FILES)?;
    let mut manifest = BTreeMap::new();
    for (path, bytes) in files {
        let key = plugin_key(bytes);
        if bodies.get(key.as_str())?.is_none() {
            bodies.insert(key.as_str(), bytes.as_slice())?;
        }
        manifest.insert(path.as_str(), key);
    }
    txn.open_table(RELEASE_PLUGINS)?
        .insert(id, encode(&manifest)?.as_slice())?;
    Ok(())
}

/// Forgets the connector files of the releases `ids`, then every body no release names any more.
/// If a release's list of files does not read, no body is removed: one it names must not go.
pub(crate) fn remove_plugins(txn: &WriteTransaction, ids: &[String]) -> Result<(), StoreError> {
    let mut lists = txn.open_table(RELEASE_PLUGINS)?;
    let mut removed = false;
    for id in ids {
        removed |= lists.remove(id.as_str())?.is_some();
    }
    if !removed {
        return Ok(());
    }
    let mut used = BTreeSet::new();
    for entry in lists.iter()? {
        let (_, v) = entry?;
        match serde_json::from_slice::<Envelope<BTreeMap<String, String>>>(v.value()) {
            Ok(list) => used.extend(list.data.into_values()),
            Err(_) => return Ok(()),
        }
    }
    drop(lists);
    let mut bodies = txn.open_table(PLUGIN_FILES)?;
    let mut unused = Vec::new();
    for entry in bodies.iter()? {
        let (k, _) = entry?;
        if !used.contains(k.value()) {
            unused.push(k.value().to_owned());
        }
    }
    for key in unused {
        bodies.remove(key.as_str())?;
    }
    Ok(())
}

impl super::Store {
    /// The connector files of release `id` (`{"<name>/<file>": bytes}`); empty for a release
    /// without connectors.
    pub fn release_plugins(&self, id: &str) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let lists = txn.open_table(RELEASE_PLUGINS)?;
            let Some(list) = lists.get(id)? else {
                return Ok(BTreeMap::new());
            };
            let list: BTreeMap<String, String> = decode("release_plugins", list.value())?;
            let bodies = txn.open_table(PLUGIN_FILES)?;
            let mut files = BTreeMap::new();
            for (path, key) in list {
                let bytes = bodies
                    .get(key.as_str())?
                    .ok_or_else(|| StoreError::Corrupt {
                        table: "plugin_files",
                        message: format!("release {id}: the bytes of `{path}` ({key}) are missing"),
                    })?
                    .value()
                    .to_vec();
                if plugin_key(&bytes) != key {
                    return Err(StoreError::Corrupt {
                        table: "plugin_files",
                        message: format!(
                            "release {id}: the bytes of `{path}` do not match their hash {key}"
                        ),
                    });
                }
                files.insert(path, bytes);
            }
            Ok(files)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{ActivationRecord, ReleaseRecord};
    use crate::store::{Op, PrunePlan, Store};
    use chrono::Utc;

    fn release(id: &str, age: i64) -> Op {
        Op::Release {
            record: ReleaseRecord {
                id: id.into(),
                created_at: Utc::now() - chrono::Duration::days(age),
                created_by: "t".into(),
                permits: vec![],
                fixtures: 0,
                files: 0,
            },
            sources: BTreeMap::new(),
        }
    }

    fn bodies(store: &Store) -> u64 {
        let db = store.shared.db().unwrap();
        let txn = db.begin_read().unwrap();
        redb::ReadableTableMetadata::len(&txn.open_table(PLUGIN_FILES).unwrap()).unwrap()
    }

    #[test]
    fn binary_files_come_back_exactly_and_go_with_the_last_release_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        // Not UTF-8, with NULs: a component is binary.
        let wasm: Vec<u8> = (0..=255u8).chain([0, 0x61, 0x73, 0x6d]).collect();
        let files = |manifest: &str| {
            BTreeMap::from([
                (
                    "echo/connector.toml".to_owned(),
                    manifest.as_bytes().to_vec(),
                ),
                ("echo/echo.wasm".to_owned(), wasm.clone()),
            ])
        };
        store
            .write_blocking(vec![
                release("lama", 2),
                Op::ReleasePlugins {
                    release: "lama".into(),
                    files: files("version = \"0.1.0\"\n"),
                },
                release("baru", 1),
                Op::ReleasePlugins {
                    release: "baru".into(),
                    files: files("version = \"0.2.0\"\n"),
                },
                release("tanpa", 0),
                Op::Activate(ActivationRecord {
                    release: "tanpa".into(),
                    at: Utc::now(),
                    by: "t".into(),
                    reason: "t".into(),
                }),
            ])
            .unwrap();
        // One component shared, two manifests.
        assert_eq!(bodies(&store), 3);
        store.close();
        drop(store);
        let store = Store::open(dir.path(), 64).unwrap();
        assert_eq!(
            store.release_plugins("lama").unwrap(),
            files("version = \"0.1.0\"\n")
        );
        assert!(store.release_plugins("tanpa").unwrap().is_empty());

        let keep = |n| PrunePlan {
            decisions_before: None,
            decisions_max_bytes: None,
            reloads_keep: None,
            releases_keep: Some(n),
            batch: 100,
        };
        store.write_blocking(vec![Op::Prune(keep(2))]).unwrap();
        assert!(store.release_plugins("lama").unwrap().is_empty());
        assert_eq!(bodies(&store), 2, "the shared component stays with `baru`");
        assert_eq!(
            store.release_plugins("baru").unwrap(),
            files("version = \"0.2.0\"\n")
        );
        store.write_blocking(vec![Op::Prune(keep(0))]).unwrap();
        assert_eq!(bodies(&store), 0);
    }
}
