//! The compiled-code cache: `DATA/connector-cache/<sha256 of component + engine fingerprint>.bin`.
//!
//! Compiling a component takes seconds; a restart or a reactivation should not pay it again.
//! But `Component::deserialize` trusts its input completely (it is native code), so a cache file
//! is only ever deserialized after its HMAC-SHA256 tag checks out under a key that only this
//! data folder holds (`connector-cache/key`, 0600, created once). A file that is missing,
//! truncated, tampered with, written under another key or by another engine configuration is
//! ignored and the component compiled again.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

const MAGIC: &[u8; 8] = b"PINTUCC1";
const KEY_FILE: &str = "key";
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Where compiled components come from, counted for tests and the log.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub compiled: AtomicU64,
    pub from_cache: AtomicU64,
}

pub(crate) struct Cache {
    dir: PathBuf,
    key: [u8; KEY_LEN],
    fingerprint: String,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Feeds `Hash` output into SHA-256, for a fingerprint that is stable across processes.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

/// What the compiled code depends on besides the component: this build and the engine's
/// settings.
fn fingerprint(engine: &Engine) -> String {
    let mut h = ShaHasher(Sha256::new());
    h.write(b"pintu ");
    h.write(env!("CARGO_PKG_VERSION").as_bytes());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex::encode(h.0.finalize())
}

impl Cache {
    /// Opens (creating) the cache folder and its key.
    pub(crate) fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let key = load_or_create_key(&dir.join(KEY_FILE))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            key,
            fingerprint: fingerprint(engine),
        })
    }

    fn entry_name(&self, component_sha: &str) -> String {
        let mut h = Sha256::new();
        h.update(component_sha.as_bytes());
        h.update(b"/");
        h.update(self.fingerprint.as_bytes());
        format!("{}.bin", hex::encode(h.finalize()))
    }

    fn tag(&self, entry: &str, body: &[u8]) -> Option<HmacSha256> {
        let mut mac = HmacSha256::new_from_slice(&self.key).ok()?;
        mac.update(entry.as_bytes());
        mac.update(body);
        Some(mac)
    }

    /// The component with SHA-256 `component_sha` (hex) and bytes `bytes`, from the cache when
    /// a verified entry is there, else compiled (and stored for next time).
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        component_sha: &str,
        bytes: &[u8],
        counters: &Counters,
    ) -> wasmtime::Result<Component> {
        let entry = self.entry_name(component_sha);
        let path = self.dir.join(&entry);
        if let Some(component) = self.read_verified(engine, &entry, &path) {
            counters.from_cache.fetch_add(1, Ordering::Relaxed);
            return Ok(component);
        }
        let component = Component::new(engine, bytes)?;
        counters.compiled.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.write(&entry, &path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the compiled connector to the cache");
        }
        Ok(component)
    }

    fn read_verified(&self, engine: &Engine, entry: &str, path: &Path) -> Option<Component> {
        let data = std::fs::read(path).ok()?;
        let rest = data.strip_prefix(MAGIC.as_slice())?;
        let (tag, body) = rest.split_at_checked(TAG_LEN)?;
        if self.tag(entry, body)?.verify_slice(tag).is_err() {
            tracing::warn!(path = %path.display(), "ignoring a connector cache file that this data folder did not write");
            return None;
        }
        deserialize(engine, body)
            .inspect_err(|e| {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unusable connector cache file");
            })
            .ok()
    }

    fn write(&self, entry: &str, path: &Path, component: &Component) -> std::io::Result<()> {
        let body = component.serialize().map_err(std::io::Error::other)?;
        let tag = self
            .tag(entry, &body)
            .ok_or_else(|| std::io::Error::other("bad cache key"))?
            .finalize()
            .into_bytes();
        let tmp = self
            .dir
            .join(format!(".{entry}.{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&tag)?;
        f.write_all(&body)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, body: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` requires bytes produced by `Component::serialize` of a
    // compatible engine, unmodified. `body` is only reached after its HMAC-SHA256 tag, computed
    // over the entry name (component hash + engine fingerprint) and the body with a secret key
    // that only this data folder holds, was verified: so these are bytes this cache wrote from
    // `serialize` for this component and engine configuration. wasmtime itself also checks the
    // engine compatibility header before using them.
    unsafe { Component::deserialize(engine, body) }
}

fn load_or_create_key(path: &Path) -> std::io::Result<[u8; KEY_LEN]> {
    if let Ok(bytes) = std::fs::read(path) {
        if let Ok(key) = <[u8; KEY_LEN]>::try_from(bytes.as_slice()) {
            return Ok(key);
        }
        tracing::warn!(path = %path.display(), "replacing a malformed connector cache key");
    }
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp)?;
    f.write_all(&key)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    Ok(key)
}
