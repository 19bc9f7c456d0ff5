//! Connectors' private key-value spaces in `connector_kv`, as the host's [`KvSpace`]: every
//! write is durable when it returns (a connector may record "sent" before answering).

use redb::ReadableDatabase;

use super::{guarded, Op, Store, StoreError, CONNECTOR_KV};
use crate::connectors::KvSpace;

impl Store {
    /// One value of a connector's key-value space.
    pub fn connector_kv_get(
        &self,
        connector: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let t = txn.open_table(CONNECTOR_KV)?;
            let value = t.get((connector, key))?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }
}

// Calls run on the blocking pool, so the blocking write is the right one here.
impl KvSpace for Store {
    fn get(&self, connector: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.connector_kv_get(connector, key)
            .map_err(|e| format!("kv read failed: {e}"))
    }

    fn set(&self, connector: &str, key: &str, value: &[u8]) -> Result<(), String> {
        self.write_blocking(vec![Op::ConnectorKv {
            connector: connector.to_owned(),
            key: key.to_owned(),
            value: Some(value.to_vec()),
        }])
        .map(drop)
        .map_err(|e| format!("kv write failed: {e}"))
    }

    fn delete(&self, connector: &str, key: &str) -> Result<(), String> {
        self.write_blocking(vec![Op::ConnectorKv {
            connector: connector.to_owned(),
            key: key.to_owned(),
            value: None,
        }])
        .map(drop)
        .map_err(|e| format!("kv write failed: {e}"))
    }

    fn write_all(
        &self,
        connector: &str,
        writes: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), String> {
        let ops = writes
            .into_iter()
            .map(|(key, value)| Op::ConnectorKv {
                connector: connector.to_owned(),
                key,
                value,
            })
            .collect();
        self.write_blocking(ops)
            .map(drop)
            .map_err(|e| format!("kv write failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_values_persist_across_reopen_and_are_private_per_connector() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 16).unwrap();
            KvSpace::set(&store, "echo", "k", b"v1").unwrap();
            KvSpace::set(&store, "other", "k", b"v2").unwrap();
            KvSpace::set(&store, "echo", "gone", b"x").unwrap();
            KvSpace::delete(&store, "echo", "gone").unwrap();
            store.close();
        }
        let store = Store::open(dir.path(), 16).unwrap();
        assert_eq!(
            KvSpace::get(&store, "echo", "k").unwrap(),
            Some(b"v1".to_vec())
        );
        assert_eq!(
            KvSpace::get(&store, "other", "k").unwrap(),
            Some(b"v2".to_vec())
        );
        assert_eq!(KvSpace::get(&store, "echo", "gone").unwrap(), None);
        assert_eq!(KvSpace::get(&store, "nobody", "k").unwrap(), None);
    }
}
