//! What a call needs from the rest of Pintu: the connector's key-value space, the office's levy
//! rules, secrets, the office's time zone, and whether this is a dry run. The services build a
//! [`CallEnv`]; the host never reaches into them otherwise.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::secrets::Secrets;

/// What host imports need from the rest of Pintu during one call.
#[derive(Clone)]
pub struct CallEnv {
    pub kv: Arc<dyn KvSpace>,
    pub levy: Arc<dyn LevyAssessor>,
    pub secrets: Arc<Secrets>,
    /// The office's offset from UTC in minutes (420 for WIB), for `host.now`.
    pub utc_offset_minutes: i32,
    /// Keep kv writes in an overlay that is dropped after the call (admin `invoke`).
    pub dry_run: bool,
    /// When set, outbound requests that pass the allowlist are recorded here instead of sent,
    /// and the guest sees a connection error saying so: an admin's dry run must not report to
    /// OSS or SIMBG for real.
    pub held: Option<Arc<Mutex<Vec<HeldRequest>>>>,
    /// When set, the call's kv writes are kept here (and seen by its own reads) instead of
    /// written; the caller stores them once the call's actions are applied
    /// ([`PendingKv::commit`]), or drops them. A connector that records "imported" in kv and
    /// asks for the import as an action must not find it recorded when the import failed.
    pub pending_kv: Option<PendingKv>,
}

/// One kv write: the key and its new value, `None` for a delete.
pub type KvWrite = (String, Option<Vec<u8>>);

/// One call's kv writes, held until its actions are applied, or dropped (a dry run's). The
/// call's own reads see them. Clones share the writes.
#[derive(Debug, Clone, Default)]
pub struct PendingKv(Arc<Mutex<Vec<KvWrite>>>);

impl PendingKv {
    /// The writes in the order the call made them.
    fn held(&self) -> std::sync::MutexGuard<'_, Vec<KvWrite>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn push(&self, key: &str, value: Option<Vec<u8>>) {
        self.held().push((key.to_owned(), value));
    }

    /// The value the call's last write of `key` left (`Some(None)`: deleted); `None` when the
    /// call did not write it. A call makes at most `MAX_KV_WRITES_PER_CALL` writes, so the newest is
    /// found by looking back through them.
    pub(crate) fn get(&self, key: &str) -> Option<Option<Vec<u8>>> {
        self.held()
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// Stores the writes in `kv` for `connector`, in the order the call made them, durably
    /// when it returns `Ok`; they are then gone from here.
    pub fn commit(&self, kv: &dyn KvSpace, connector: &str) -> Result<(), String> {
        let writes = std::mem::take(&mut *self.held());
        if writes.is_empty() {
            return Ok(());
        }
        kv.write_all(connector, writes)
    }
}

/// An outbound request a dry run held back, as an admin may see it: the header *names* only,
/// and every secret of the connector that appears literally in the URL or body replaced by
/// `[secret <name>]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct HeldRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<String>,
    /// The body as text (lossy UTF-8), cut to the first 4 KiB.
    pub body: String,
}

impl CallEnv {
    /// An environment with nothing behind it: kv in memory, no levy rules, no secrets, UTC.
    /// Used to call `describe` at load, and by tests.
    pub fn detached() -> Self {
        Self {
            kv: Arc::new(MemoryKv::default()),
            levy: Arc::new(NoLevy),
            secrets: Arc::new(Secrets::default()),
            utc_offset_minutes: 0,
            dry_run: false,
            held: None,
            pending_kv: None,
        }
    }
}

impl std::fmt::Debug for CallEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallEnv")
            .field("secrets", &self.secrets)
            .field("utc_offset_minutes", &self.utc_offset_minutes)
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

/// A connector's private key-value space, by connector name. Errors are texts the guest sees.
pub trait KvSpace: Send + Sync {
    fn get(&self, connector: &str, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Durable when it returns `Ok`.
    fn set(&self, connector: &str, key: &str, value: &[u8]) -> Result<(), String>;
    fn delete(&self, connector: &str, key: &str) -> Result<(), String>;
    /// Sets (`Some`) or deletes (`None`) each key in order; the store does it in one
    /// transaction.
    fn write_all(
        &self,
        connector: &str,
        writes: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), String> {
        for (key, value) in writes {
            match value {
                Some(v) => self.set(connector, &key, &v)?,
                None => self.delete(connector, &key)?,
            }
        }
        Ok(())
    }
}

/// The office's own levy rules, as `POST /v1/permits/<permit>/levy` answers them.
pub trait LevyAssessor: Send + Sync {
    /// `input_json` is a JSON object of the permit type's form data; the answer is JSON text.
    fn assess(&self, permit: &str, input_json: &str) -> Result<String, String>;
}

/// A key-value space in memory (tests, `describe` at load).
#[derive(Debug, Default)]
pub struct MemoryKv {
    map: Mutex<BTreeMap<(String, String), Vec<u8>>>,
}

impl KvSpace for MemoryKv {
    fn get(&self, connector: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        let map = self
            .map
            .lock()
            .map_err(|_| "kv is unavailable".to_owned())?;
        Ok(map.get(&(connector.to_owned(), key.to_owned())).cloned())
    }

    fn set(&self, connector: &str, key: &str, value: &[u8]) -> Result<(), String> {
        let mut map = self
            .map
            .lock()
            .map_err(|_| "kv is unavailable".to_owned())?;
        map.insert((connector.to_owned(), key.to_owned()), value.to_vec());
        Ok(())
    }

    fn delete(&self, connector: &str, key: &str) -> Result<(), String> {
        let mut map = self
            .map
            .lock()
            .map_err(|_| "kv is unavailable".to_owned())?;
        map.remove(&(connector.to_owned(), key.to_owned()));
        Ok(())
    }
}

/// No levy rules: every assessment is refused with a reason.
#[derive(Debug, Default)]
pub struct NoLevy;

impl LevyAssessor for NoLevy {
    fn assess(&self, permit: &str, _input_json: &str) -> Result<String, String> {
        Err(format!(
            "no levy rules are available to assess `{permit}` here"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_writes_answer_reads_with_the_last_write_and_commit_in_order() {
        let held = PendingKv::default();
        held.push("a", Some(b"1".to_vec()));
        held.push("b", Some(b"2".to_vec()));
        held.push("a", None);
        held.push("b", Some(b"3".to_vec()));
        assert_eq!(held.get("a"), Some(None), "deleted by its last write");
        assert_eq!(held.get("b"), Some(Some(b"3".to_vec())));
        assert_eq!(held.get("c"), None, "never written");

        let kv = MemoryKv::default();
        kv.set("echo", "a", b"0").unwrap();
        held.clone().commit(&kv, "echo").unwrap();
        assert_eq!(kv.get("echo", "a").unwrap(), None);
        assert_eq!(kv.get("echo", "b").unwrap(), Some(b"3".to_vec()));
        assert_eq!(held.get("b"), None, "committed writes are gone");
    }
}
