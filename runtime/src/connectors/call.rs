//! The state of one call (one fresh `Store`): the limiter that enforces the manifest's memory
//! limit, the deadline, the dry-run overlay of kv writes, and the host imports' behaviour, shared
//! by every WIT version's bindings.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::ResourceLimiter;

use super::env::{CallEnv, HeldRequest, PendingKv};
use super::manifest::{origin_of, Manifest};
use super::types::{Header, HttpError, HttpRequest, HttpResponse, LogLevel};

/// Most bytes of a response body `http-send` hands to a guest.
pub const MAX_HTTP_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;
/// Keys and values of the kv space, as the WIT promises.
pub const MAX_KV_KEY_BYTES: usize = 512;
pub const MAX_KV_VALUE_BYTES: usize = 64 * 1024;
/// Most kv writes (set or delete) one call may make: each is a durable commit, and a guest
/// looping on writes must not fill the disk before its deadline.
pub const MAX_KV_WRITES_PER_CALL: u32 = 1_000;
/// Most log lines one call may write, and the longest line kept (longer ones are cut).
pub const MAX_LOG_LINES_PER_CALL: u32 = 1_000;
pub const MAX_LOG_LINE_BYTES: usize = 4 * 1024;
/// Most table elements an instance may have (tables hold function references).
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// How much of a held request's body a dry run shows.
const MAX_HELD_BODY_BYTES: usize = 4 * 1024;

/// What a call knows about its connector.
pub(crate) struct CallConnector {
    pub manifest: Manifest,
    /// `[config]` merged with the office's overrides, as a JSON object.
    pub config_json: String,
}

/// Enforces the manifest's memory limit and remembers that the guest hit it, so that the
/// trap that follows (an allocation failure aborts a Rust guest) is reported as running out of
/// memory.
pub(crate) struct Limiter {
    max_memory_bytes: usize,
    pub exceeded: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The data of one call's `Store`.
pub struct CallState {
    connector: Arc<CallConnector>,
    env: CallEnv,
    pub(crate) limiter: Limiter,
    deadline: Instant,
    /// Where kv writes go instead of the store: the caller's (`CallEnv::pending_kv`), or, in
    /// a dry run, this call's own, dropped with it. `None`: they are written through.
    held_kv: Option<PendingKv>,
    kv_writes: u32,
    log_lines: u32,
    /// The first origin the guest tried to reach outside its allowlist: the call fails with it.
    pub(crate) violation: Option<String>,
}

impl CallState {
    pub(crate) fn new(connector: Arc<CallConnector>, env: CallEnv, deadline: Instant) -> Self {
        let max_memory_bytes = usize::try_from(connector.manifest.limits.memory_mib)
            .unwrap_or(usize::MAX)
            .saturating_mul(1024 * 1024);
        let held_kv = env
            .pending_kv
            .clone()
            .or_else(|| env.dry_run.then(PendingKv::default));
        Self {
            connector,
            env,
            limiter: Limiter {
                max_memory_bytes,
                exceeded: false,
            },
            deadline,
            held_kv,
            kv_writes: 0,
            log_lines: 0,
            violation: None,
        }
    }

    fn name(&self) -> &str {
        &self.connector.manifest.name
    }

    pub(crate) fn log(&mut self, level: LogLevel, message: &str, fields: &[(String, String)]) {
        self.log_lines = self.log_lines.saturating_add(1);
        let (name, version) = (self.name(), &self.connector.manifest.version);
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            if self.log_lines == MAX_LOG_LINES_PER_CALL + 1 {
                tracing::warn!(connector = %name, version = %version,
                    "connector wrote more than {MAX_LOG_LINES_PER_CALL} log lines in one call; the rest are dropped");
            }
            return;
        }
        let message = cut(message, MAX_LOG_LINE_BYTES);
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let fields = cut(&fields, MAX_LOG_LINE_BYTES);
        match level {
            LogLevel::Trace => {
                tracing::trace!(connector = %name, version = %version, fields = %fields, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(connector = %name, version = %version, fields = %fields, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(connector = %name, version = %version, fields = %fields, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(connector = %name, version = %version, fields = %fields, "{message}")
            }
            LogLevel::Error => {
                tracing::error!(connector = %name, version = %version, fields = %fields, "{message}")
            }
        }
    }

    pub(crate) fn http_send(&mut self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        // The allowlist is checked before anything touches the network, DNS included.
        let origin = origin_of(&request.url).map_err(HttpError::InvalidRequest)?;
        if !self.connector.manifest.allow_hosts.contains(&origin) {
            self.violation.get_or_insert_with(|| origin.clone());
            return Err(HttpError::NotAllowed(format!(
                "{origin} is not in the manifest's [allow] hosts"
            )));
        }
        let method = match request.method.to_ascii_uppercase().as_str() {
            m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD") => m.to_owned(),
            other => {
                return Err(HttpError::InvalidRequest(format!(
                    "method `{other}` is not one of GET, POST, PUT, PATCH, DELETE, HEAD"
                )))
            }
        };
        if let Some(held) = &self.env.held {
            let kept = self.hold(&method, &request);
            held.lock().unwrap_or_else(|p| p.into_inner()).push(kept);
            return Err(HttpError::Connection(
                "dry run: the request was held, not sent".to_owned(),
            ));
        }
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining < Duration::from_millis(1) {
            return Err(HttpError::Timeout(
                "the call's deadline passed before the request was sent".to_owned(),
            ));
        }
        let mut builder = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&request.url);
        for h in &request.headers {
            builder = builder.header(&h.name, &h.value);
        }
        let req = builder
            .body(request.body)
            .map_err(|e| HttpError::InvalidRequest(e.to_string()))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A redirect could lead outside the allowlist: the guest sees the 3xx instead.
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(remaining))
            .build()
            .into();
        let mut response = agent.run(req).map_err(http_error)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| Header {
                name: name.as_str().to_owned(),
                value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            })
            .collect();
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            response
                .body_mut()
                .with_config()
                .limit(MAX_HTTP_RESPONSE_BYTES)
                .read_to_vec()
                .map_err(http_error)?
        };
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// `request` as a dry run shows it, without the connector's secrets.
    fn hold(&self, method: &str, request: &HttpRequest) -> HeldRequest {
        let mut secrets: Vec<(String, String)> = self
            .env
            .secrets
            .of(self.name())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        for (name, var) in &self.connector.manifest.secrets {
            if let Ok(value) = std::env::var(var) {
                secrets.push((name.clone(), value));
            }
        }
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        let redact = |text: &str| {
            secrets
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .fold(text.to_owned(), |t, (name, value)| {
                    t.replace(value.as_str(), &format!("[secret {name}]"))
                })
        };
        let body = String::from_utf8_lossy(&request.body);
        HeldRequest {
            method: method.to_owned(),
            url: redact(&request.url),
            headers: request.headers.iter().map(|h| h.name.clone()).collect(),
            body: cut(&redact(&body), MAX_HELD_BODY_BYTES).to_owned(),
        }
    }

    pub(crate) fn config_json(&self) -> &str {
        &self.connector.config_json
    }

    pub(crate) fn secret(&self, name: &str) -> Option<String> {
        if let Some(v) = self.env.secrets.get(self.name(), name) {
            return Some(v.to_owned());
        }
        let var = self.connector.manifest.secrets.get(name)?;
        std::env::var(var).ok()
    }

    pub(crate) fn kv_get(&mut self, key: &str) -> Option<Vec<u8>> {
        if let Some(v) = self.held_kv.as_ref().and_then(|h| h.get(key)) {
            return v;
        }
        match self.env.kv.get(self.name(), key) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(connector = %self.name(), error = %e, "connector kv read failed");
                None
            }
        }
    }

    fn count_write(&mut self, key: &str) -> Result<(), String> {
        if key.len() > MAX_KV_KEY_BYTES {
            return Err(format!(
                "kv key of {} bytes exceeds {MAX_KV_KEY_BYTES} bytes",
                key.len()
            ));
        }
        self.kv_writes = self.kv_writes.saturating_add(1);
        if self.kv_writes > MAX_KV_WRITES_PER_CALL {
            return Err(format!(
                "more than {MAX_KV_WRITES_PER_CALL} kv writes in one call"
            ));
        }
        Ok(())
    }

    pub(crate) fn kv_set(&mut self, key: &str, value: Vec<u8>) -> Result<(), String> {
        self.count_write(key)?;
        if value.len() > MAX_KV_VALUE_BYTES {
            return Err(format!(
                "kv value of {} bytes exceeds {MAX_KV_VALUE_BYTES} bytes",
                value.len()
            ));
        }
        if let Some(held) = &self.held_kv {
            held.push(key, Some(value));
            return Ok(());
        }
        self.env.kv.set(self.name(), key, &value)
    }

    pub(crate) fn kv_delete(&mut self, key: &str) -> Result<(), String> {
        self.count_write(key)?;
        if let Some(held) = &self.held_kv {
            held.push(key, None);
            return Ok(());
        }
        self.env.kv.delete(self.name(), key)
    }

    pub(crate) fn now(&self) -> (i64, i32) {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        (millis, self.env.utc_offset_minutes)
    }

    pub(crate) fn assess_levy(&self, permit: &str, input: &str) -> Result<String, String> {
        self.env.levy.assess(permit, input)
    }
}

fn http_error(e: ureq::Error) -> HttpError {
    match e {
        ureq::Error::Timeout(t) => HttpError::Timeout(format!("no answer in time ({t})")),
        ureq::Error::BodyExceedsLimit(n) => {
            HttpError::TooLarge(format!("response body exceeds {n} bytes"))
        }
        ureq::Error::BadUri(m) => HttpError::InvalidRequest(m),
        ureq::Error::Http(e) => HttpError::InvalidRequest(e.to_string()),
        other => HttpError::Connection(other.to_string()),
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("abc", 10), "abc");
        assert_eq!(cut("aé", 2), "a");
    }
}
