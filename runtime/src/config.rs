//! Server configuration: command-line flags layered over an optional `pintu.toml`.
//!
//! Every resource limit is a named constant with its default documented beside it, and every one
//! can be overridden in the `[limits]` table (script and data limits) or the `[http]` table
//! (connection limits) of `pintu.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{FixedOffset, Offset, Utc};
use serde::Deserialize;

/// WIB (UTC+7), the time zone of Kota Metro and of most regions.
pub const DEFAULT_UTC_OFFSET_SECONDS: i32 = 7 * 3600;

fn default_offset() -> FixedOffset {
    FixedOffset::east_opt(DEFAULT_UTC_OFFSET_SECONDS)
        .unwrap_or_else(|| FixedOffset::west_opt(0).unwrap_or(Utc.fix()))
}

/// The roles an office's tokens (and later its flows) may carry when `pintu.toml` has no
/// `roles` list. `admin` is always a role, listed or not.
pub const DEFAULT_ROLES: &[&str] = &[
    "admin",
    "front_office",
    "back_office",
    "kabid_pelayanan",
    "tim_teknis",
    "kepala_dinas",
    "bendahara",
];

/// Read from the working directory when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_FILE: &str = "pintu.toml";
/// Rules folder served when neither the flag nor `pintu.toml` names one.
pub const DEFAULT_RULES_DIR: &str = "rules";
/// Connectors folder (`<name>/connector.toml` and its component) served with the rules when
/// neither the flag nor `pintu.toml` names one; a missing folder means no connectors.
pub const DEFAULT_PLUGINS_DIR: &str = "plugins";
/// Data folder (holds `pintu.redb` and `admin.token`) when none is given.
pub const DEFAULT_DATA_DIR: &str = "data";
/// Loopback only by default: exposing the API is a deliberate act.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// Rhai operations one evaluation may run (a loop iteration or call counts as one or a few).
pub const DEFAULT_MAX_OPERATIONS: u64 = 5_000_000;
/// Nested function calls; deep enough for real rules, shallow enough to keep the stack safe.
pub const DEFAULT_MAX_CALL_LEVELS: usize = 48;
/// Expression nesting depth at global level (functions get half of it).
pub const DEFAULT_MAX_EXPR_DEPTH: usize = 64;
/// Longest string a script may build, in bytes.
pub const DEFAULT_MAX_STRING_SIZE: usize = 64 * 1024;
/// Largest array a script may build.
pub const DEFAULT_MAX_ARRAY_SIZE: usize = 10_000;
/// Largest object map a script may build.
pub const DEFAULT_MAX_MAP_SIZE: usize = 10_000;
/// Wall-clock budget of one evaluation, in milliseconds.
pub const DEFAULT_SCRIPT_TIMEOUT_MS: u64 = 1_000;
/// Largest request body accepted by the API, in bytes (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Quiet period after the last file change before a candidate is built, in milliseconds. An
/// editor's save (write a temporary file and rename it over the original; or rename the
/// original away, write the new one and remove the backup; or truncate and write) takes well
/// under a millisecond between its events, so 20 ms still sees it whole while adding little to
/// a reload. A checkout that pauses longer between files is built more than once; a folder
/// updated by a slow copy wants a longer period.
pub const DEFAULT_RELOAD_DEBOUNCE_MS: u64 = 20;
/// Largest single file accepted into a release, in bytes.
pub const DEFAULT_MAX_RULE_FILE_BYTES: usize = 1024 * 1024;
/// Most files one release may hold. A permit type is its `permit.toml`, two scripts, tables
/// and tens of fixtures; an office with 1,000 types holds some 35,000 files, so the default
/// leaves room for about 2,500 such types while still stopping a folder pointed at by mistake.
pub const DEFAULT_MAX_RULE_FILES: usize = 100_000;
/// Longest a whole read of the rules folder may take, in milliseconds. Reloads wait for each
/// other, so a read stuck on a stalled disk or share must end as a problem, not hold them all.
pub const DEFAULT_RULES_READ_TIMEOUT_MS: u64 = 10_000;
/// Evaluations running at once; more requests wait their turn rather than pile up threads.
pub const DEFAULT_MAX_CONCURRENT_EVALUATIONS: usize = 32;
/// Longest a request waits for one of the `max_concurrent_evaluations` slots, in milliseconds,
/// before it is answered 503 `overloaded` with `Retry-After` (0: refused at once when all are
/// taken). A bounded wait absorbs a burst; an unbounded one would let a backlog grow until
/// clients time out with nothing to tell them to back off.
pub const DEFAULT_EVALUATION_QUEUE_TIMEOUT_MS: u64 = 5_000;
/// Most records one group commit writes in one durable transaction.
pub const DEFAULT_MAX_COMMIT_BATCH: usize = 512;
/// Most bytes of canonical JSON kept of a decision's input, and of its output: larger ones are
/// stored as a marked excerpt of this size (`{"truncated": true, "bytes", "excerpt"}`), so one
/// decision record stays under about twice this (32 KiB each, 64 KiB per record).
pub const DEFAULT_MAX_RECORDED_JSON_BYTES: usize = 32 * 1024;

/// Decisions older than this many days are pruned (0: kept regardless of age). About 13 months:
/// a full year of audits plus time to close the books.
pub const DEFAULT_DECISIONS_MAX_AGE_DAYS: u32 = 400;
/// The decision log is pruned, oldest first, while its stored size is above this (0: no bound).
/// 2 GiB holds several million typical decisions.
pub const DEFAULT_DECISIONS_MAX_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Newest reload records kept (0: all).
pub const DEFAULT_RELOADS_KEEP: u64 = 10_000;
/// Newest stored releases kept besides the active and the pinned one (0: all).
pub const DEFAULT_RELEASES_KEEP: usize = 50;
/// Seconds between background pruning runs (also run once shortly after start).
pub const DEFAULT_PRUNE_INTERVAL_SECS: u64 = 600;
/// Most records one pruning step removes per table; steps are separate commits, so other writes
/// wait at most one step.
pub const DEFAULT_PRUNE_BATCH: usize = 1_000;
/// Deepest nesting of arrays and objects a JSON request body may have (the body's own object
/// counts as one level). Real forms nest a few levels; serde_json's own recursion limit (128)
/// would answer deeper input with a parser error instead of naming the limit.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 32;

/// Time a client has to send a request's headers, in milliseconds. Hyper also runs this clock
/// while a kept-alive connection waits for its next request, so it bounds idle keep-alive too.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Time a client has to send a whole request body, in milliseconds.
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 30_000;
/// A connection on which no byte moves either way for this long, and no request is being
/// handled, is closed (e.g. a client that stops reading its response), in milliseconds.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Connections served at once; further clients wait in the listen backlog. Keeps file
/// descriptors free for the database and for reading the rules folder.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// After SIGTERM/SIGINT, how long in-flight requests may take to finish before the server
/// closes the remaining connections and exits, in milliseconds.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;

/// Most times one outbox event is offered to a connector before its delivery becomes a dead
/// letter. With the backoff defaults, 8 attempts span about eight and a half minutes.
pub const DEFAULT_DELIVERY_MAX_ATTEMPTS: u32 = 8;
/// Wait before the second attempt of a delivery, in milliseconds; doubled after each failure.
pub const DEFAULT_DELIVERY_BACKOFF_INITIAL_MS: u64 = 1_000;
/// Longest wait between two attempts of a delivery, in milliseconds (5 minutes).
pub const DEFAULT_DELIVERY_BACKOFF_MAX_MS: u64 = 300_000;
/// Longest the dispatcher sleeps before looking for new outbox events and due retries, in
/// milliseconds. A committed application change wakes it at once; this bounds how late it
/// notices events written by another path and retries that came due.
pub const DEFAULT_DELIVERY_POLL_INTERVAL_MS: u64 = 500;
/// Connector calls for outbox events running at once (different applications; one
/// application's events are delivered one after the other). Calls mostly wait on outside
/// systems, so a few more than the cores.
pub const DEFAULT_DELIVERY_CONCURRENCY: usize = 4;

/// Sandbox and resource limits. Each field defaults to the constant of the same name.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub script_timeout_ms: u64,
    pub max_body_bytes: usize,
    pub reload_debounce_ms: u64,
    pub max_rule_file_bytes: usize,
    pub max_rule_files: usize,
    pub rules_read_timeout_ms: u64,
    pub max_commit_batch: usize,
    pub max_concurrent_evaluations: usize,
    pub evaluation_queue_timeout_ms: u64,
    pub max_recorded_json_bytes: usize,
    pub max_json_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: DEFAULT_MAX_OPERATIONS,
            max_call_levels: DEFAULT_MAX_CALL_LEVELS,
            max_expr_depth: DEFAULT_MAX_EXPR_DEPTH,
            max_string_size: DEFAULT_MAX_STRING_SIZE,
            max_array_size: DEFAULT_MAX_ARRAY_SIZE,
            max_map_size: DEFAULT_MAX_MAP_SIZE,
            script_timeout_ms: DEFAULT_SCRIPT_TIMEOUT_MS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            reload_debounce_ms: DEFAULT_RELOAD_DEBOUNCE_MS,
            max_rule_file_bytes: DEFAULT_MAX_RULE_FILE_BYTES,
            max_rule_files: DEFAULT_MAX_RULE_FILES,
            rules_read_timeout_ms: DEFAULT_RULES_READ_TIMEOUT_MS,
            max_commit_batch: DEFAULT_MAX_COMMIT_BATCH,
            max_concurrent_evaluations: DEFAULT_MAX_CONCURRENT_EVALUATIONS,
            evaluation_queue_timeout_ms: DEFAULT_EVALUATION_QUEUE_TIMEOUT_MS,
            max_recorded_json_bytes: DEFAULT_MAX_RECORDED_JSON_BYTES,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
        }
    }
}

/// How long records are kept (`[retention]` in `pintu.toml`). Each field defaults to the
/// constant of the same name; 0 turns a bound off.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    pub decisions_max_age_days: u32,
    pub decisions_max_bytes: u64,
    pub reloads_keep: u64,
    pub releases_keep: usize,
    pub prune_interval_secs: u64,
    pub prune_batch: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            decisions_max_age_days: DEFAULT_DECISIONS_MAX_AGE_DAYS,
            decisions_max_bytes: DEFAULT_DECISIONS_MAX_BYTES,
            reloads_keep: DEFAULT_RELOADS_KEEP,
            releases_keep: DEFAULT_RELEASES_KEEP,
            prune_interval_secs: DEFAULT_PRUNE_INTERVAL_SECS,
            prune_batch: DEFAULT_PRUNE_BATCH,
        }
    }
}

impl Retention {
    /// Refuses values that do not turn a bound off but would quietly mean something else.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("prune_interval_secs", self.prune_interval_secs),
            ("prune_batch", to_u64(self.prune_batch)),
        ] {
            if value == 0 {
                return Err(ConfigError::Retention {
                    key,
                    message: "must be at least 1 (to keep records longer, set the bounds to 0)"
                        .into(),
                });
            }
        }
        Ok(())
    }

    pub fn prune_interval(&self) -> Duration {
        Duration::from_secs(self.prune_interval_secs.max(1))
    }

    /// One pruning step as of `now`.
    pub fn plan(&self, now: chrono::DateTime<Utc>) -> crate::store::PrunePlan {
        crate::store::PrunePlan {
            decisions_before: (self.decisions_max_age_days > 0)
                .then(|| now - chrono::Duration::days(i64::from(self.decisions_max_age_days))),
            decisions_max_bytes: (self.decisions_max_bytes > 0).then_some(self.decisions_max_bytes),
            reloads_keep: (self.reloads_keep > 0).then_some(self.reloads_keep),
            releases_keep: (self.releases_keep > 0).then_some(self.releases_keep),
            batch: self.prune_batch.max(1),
        }
    }
}

/// Most slots a semaphore can hold (tokio's own bound); more would panic at start.
const MAX_SEMAPHORE_PERMITS: usize = tokio::sync::Semaphore::MAX_PERMITS;

impl Limits {
    /// Refuses values with which the server could not do its work, naming the key. 0 stays
    /// valid where it has a meaning: no bound for `max_operations`, `max_expr_depth`,
    /// `max_string_size`, `max_array_size`, `max_map_size` (Rhai's "unlimited"); no quiet
    /// period for `reload_debounce_ms`; no wait for `evaluation_queue_timeout_ms`; an excerpt
    /// marker only for `max_recorded_json_bytes`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let at_least_one = [
            // Every script would fail at its first operation.
            ("script_timeout_ms", self.script_timeout_ms),
            // `levy` and `validate` are function calls themselves: none could run.
            ("max_call_levels", to_u64(self.max_call_levels)),
            // Every request with a body would be refused.
            ("max_body_bytes", to_u64(self.max_body_bytes)),
            // Every rules file would be refused, so no release could ever build.
            ("max_rule_file_bytes", to_u64(self.max_rule_file_bytes)),
            ("max_rule_files", to_u64(self.max_rule_files)),
            // Every read of the rules folder would time out.
            ("rules_read_timeout_ms", self.rules_read_timeout_ms),
            // A commit that may write nothing never makes progress.
            ("max_commit_batch", to_u64(self.max_commit_batch)),
            // No evaluation could ever run.
            (
                "max_concurrent_evaluations",
                to_u64(self.max_concurrent_evaluations),
            ),
            // The body's own object is one level: every body would be refused.
            ("max_json_depth", to_u64(self.max_json_depth)),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(ConfigError::Limit {
                    key,
                    message: "must be at least 1 (0 would stop every request it governs)".into(),
                });
            }
        }
        if self.max_concurrent_evaluations > MAX_SEMAPHORE_PERMITS {
            return Err(ConfigError::Limit {
                key: "max_concurrent_evaluations",
                message: format!("must be at most {MAX_SEMAPHORE_PERMITS}"),
            });
        }
        Ok(())
    }

    pub fn script_timeout(&self) -> Duration {
        Duration::from_millis(self.script_timeout_ms)
    }

    pub fn evaluation_queue_timeout(&self) -> Duration {
        Duration::from_millis(self.evaluation_queue_timeout_ms)
    }

    pub fn reload_debounce(&self) -> Duration {
        Duration::from_millis(self.reload_debounce_ms)
    }

    pub fn rules_read_timeout(&self) -> Duration {
        Duration::from_millis(self.rules_read_timeout_ms)
    }
}

/// Connection limits of the HTTP server. Each field defaults to the constant of the same name.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    pub header_read_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_connections: usize,
    pub shutdown_grace_ms: u64,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            body_read_timeout_ms: DEFAULT_BODY_READ_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
        }
    }
}

impl Http {
    /// Refuses values with which no request could be served, naming the key.
    /// `shutdown_grace_ms = 0` stays valid: close at once on a stop signal.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("max_connections", to_u64(self.max_connections)),
        ] {
            if value == 0 {
                return Err(ConfigError::Http {
                    key,
                    message: "must be at least 1 (0 would stop every request)".into(),
                });
            }
        }
        if self.max_connections > MAX_SEMAPHORE_PERMITS {
            return Err(ConfigError::Http {
                key: "max_connections",
                message: format!("must be at most {MAX_SEMAPHORE_PERMITS}"),
            });
        }
        Ok(())
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// Delivery of outbox events to connectors (`[connectors]` in `pintu.toml`), and the office's
/// overrides of connectors' `[config]` (`[connectors.config.<name>]`). Each number defaults to
/// the `DEFAULT_DELIVERY_*` constant of the same name.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Connectors {
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub poll_interval_ms: u64,
    pub concurrency: usize,
    /// Per connector name: values merged over the `[config]` of its manifest, so that an office
    /// sets its own URLs and codes without editing the plugin.
    pub config: std::collections::BTreeMap<String, toml::Table>,
}

impl Default for Connectors {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_DELIVERY_MAX_ATTEMPTS,
            backoff_initial_ms: DEFAULT_DELIVERY_BACKOFF_INITIAL_MS,
            backoff_max_ms: DEFAULT_DELIVERY_BACKOFF_MAX_MS,
            poll_interval_ms: DEFAULT_DELIVERY_POLL_INTERVAL_MS,
            concurrency: DEFAULT_DELIVERY_CONCURRENCY,
            config: std::collections::BTreeMap::new(),
        }
    }
}

impl Connectors {
    /// Refuses values with which delivery could not work, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            // No delivery could be attempted at all.
            ("max_attempts", u64::from(self.max_attempts)),
            // Retries would spin without pause against a system that is down.
            ("backoff_initial_ms", self.backoff_initial_ms),
            // The dispatcher would poll without pause.
            ("poll_interval_ms", self.poll_interval_ms),
            // No event could ever be delivered.
            ("concurrency", to_u64(self.concurrency)),
        ] {
            if value == 0 {
                return Err(ConfigError::Connectors {
                    key,
                    message: "must be at least 1".into(),
                });
            }
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            return Err(ConfigError::Connectors {
                key: "backoff_max_ms",
                message: format!(
                    "must be at least `backoff_initial_ms` ({})",
                    self.backoff_initial_ms
                ),
            });
        }
        if self.concurrency > MAX_SEMAPHORE_PERMITS {
            return Err(ConfigError::Connectors {
                key: "concurrency",
                message: format!("must be at most {MAX_SEMAPHORE_PERMITS}"),
            });
        }
        Ok(())
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(1))
    }

    /// The office's `[config]` overrides of connector `name`, if it has any.
    pub fn overrides(&self, name: &str) -> Option<&toml::Table> {
        self.config.get(name)
    }
}

/// The language of the messages the runtime itself writes for citizens and front-office staff
/// (field checks, the document checklist, `invalid_data`). Rules speak Indonesian, so the
/// runtime does too by default. Field names, error codes and scripts' own messages never change.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Bahasa Indonesia.
    #[default]
    Id,
    /// English.
    En,
}

/// The contents of `pintu.toml`. Flags given on the command line win over the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// The office's UTC offset, e.g. `"+07:00"` (WIB), `"+08:00"` (WITA), `"+09:00"` (WIT):
    /// what `today()` means to rule scripts.
    pub utc_offset: Option<String>,
    pub rules: Option<PathBuf>,
    /// The connectors folder ([`DEFAULT_PLUGINS_DIR`] when absent).
    pub plugins: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub bind: Option<SocketAddr>,
    /// `"id"` (default) or `"en"`: see [`Language`].
    pub language: Language,
    /// The office's roles ([`DEFAULT_ROLES`] when absent); `admin` is added if left out.
    pub roles: Option<Vec<String>>,
    pub limits: Limits,
    pub retention: Retention,
    pub http: Http,
    pub connectors: Connectors,
}

/// The resolved configuration a server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub rules_dir: PathBuf,
    /// The connectors released with the rules (`--plugins`, `plugins` in `pintu.toml`).
    pub plugins_dir: PathBuf,
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    pub limits: Limits,
    pub retention: Retention,
    pub http: Http,
    /// Delivery to connectors and the office's overrides of their `[config]`.
    pub connectors: Connectors,
    /// Language of the runtime's own messages.
    pub language: Language,
    /// The office's time zone offset, for the date scripts see.
    pub utc_offset: FixedOffset,
    /// The roles tokens may carry.
    pub roles: crate::auth::Roles,
    /// Whether to watch the rules folder for changes (tests and `check` turn it off).
    pub watch: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config `{path}`: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid utc_offset `{0}` (expected e.g. \"+07:00\")")]
    Offset(String),
    #[error("invalid bind address `{0}`")]
    Bind(String),
    #[error("invalid [limits] {key}: {message}")]
    Limit { key: &'static str, message: String },
    #[error("invalid [retention] {key}: {message}")]
    Retention { key: &'static str, message: String },
    #[error("invalid [http] {key}: {message}")]
    Http { key: &'static str, message: String },
    #[error("invalid [connectors] {key}: {message}")]
    Connectors { key: &'static str, message: String },
    #[error("invalid roles: {0}")]
    Roles(#[from] crate::auth::RolesError),
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Config {
    /// Layers flags over the config file (if any) over the defaults.
    pub fn resolve(
        file: Option<&Path>,
        rules: Option<PathBuf>,
        data: Option<PathBuf>,
        bind: Option<SocketAddr>,
    ) -> Result<Self, ConfigError> {
        let file_config = match file {
            Some(path) => Self::read_file(path)?,
            None => FileConfig::default(),
        };
        file_config.limits.validate()?;
        file_config.retention.validate()?;
        file_config.http.validate()?;
        file_config.connectors.validate()?;
        let default_bind = DEFAULT_BIND
            .parse()
            .map_err(|_| ConfigError::Bind(DEFAULT_BIND.to_owned()))?;
        Ok(Self {
            rules_dir: rules
                .or(file_config.rules)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_RULES_DIR)),
            plugins_dir: file_config
                .plugins
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PLUGINS_DIR)),
            data_dir: data
                .or(file_config.data)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            bind: bind.or(file_config.bind).unwrap_or(default_bind),
            utc_offset: match &file_config.utc_offset {
                Some(text) => text
                    .parse()
                    .map_err(|_| ConfigError::Offset(text.clone()))?,
                None => default_offset(),
            },
            roles: match file_config.roles {
                Some(names) => crate::auth::Roles::new(names)?,
                None => crate::auth::Roles::default(),
            },
            limits: file_config.limits,
            retention: file_config.retention,
            http: file_config.http,
            connectors: file_config.connectors,
            language: file_config.language,
            watch: true,
        })
    }

    fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_limits_override_defaults_and_flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pintu.toml");
        std::fs::write(
            &path,
            "rules = \"r\"\nbind = \"127.0.0.1:9000\"\n[limits]\nmax_operations = 10\n",
        )
        .unwrap();
        let cfg = Config::resolve(Some(&path), None, Some("d".into()), None).unwrap();
        assert_eq!(cfg.rules_dir, PathBuf::from("r"));
        assert_eq!(cfg.data_dir, PathBuf::from("d"));
        assert_eq!(cfg.bind.port(), 9000);
        assert_eq!(cfg.limits.max_operations, 10);
        assert_eq!(cfg.limits.max_call_levels, DEFAULT_MAX_CALL_LEVELS);
    }

    #[test]
    fn the_example_config_is_valid_and_states_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pintu.toml.example");
        let cfg = Config::resolve(Some(&path), None, None, None).unwrap();
        assert_eq!(cfg.limits, Limits::default());
        assert_eq!(cfg.retention, Retention::default());
        assert_eq!(cfg.http, Http::default());
        assert_eq!(cfg.connectors, Connectors::default());
        assert_eq!(cfg.language, Language::default());
        assert_eq!(cfg.bind.to_string(), DEFAULT_BIND);
        assert_eq!(cfg.plugins_dir, PathBuf::from(DEFAULT_PLUGINS_DIR));
        assert_eq!(cfg.roles, crate::auth::Roles::default());
    }

    fn resolve_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pintu.toml");
        std::fs::write(&path, text).unwrap();
        Config::resolve(Some(&path), None, None, None)
    }

    #[test]
    fn limits_that_cannot_work_are_refused_naming_the_key() {
        for key in [
            "script_timeout_ms",
            "max_call_levels",
            "max_body_bytes",
            "max_rule_file_bytes",
            "max_rule_files",
            "rules_read_timeout_ms",
            "max_commit_batch",
            "max_concurrent_evaluations",
            "max_json_depth",
        ] {
            let err = resolve_text(&format!("[limits]\n{key} = 0\n")).unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains(&format!("[limits] {key}")),
                "{key}: {message}"
            );
            assert!(message.contains("at least 1"), "{key}: {message}");
        }
        let err = resolve_text("[limits]\nmax_concurrent_evaluations = 9223372036854775807\n")
            .unwrap_err();
        assert!(
            err.to_string().contains("max_concurrent_evaluations"),
            "{err}"
        );
    }

    #[test]
    fn zero_keeps_its_meaning_where_it_has_one() {
        let cfg = resolve_text(
            "[limits]\nmax_operations = 0\nmax_expr_depth = 0\nmax_string_size = 0\n\
             max_array_size = 0\nmax_map_size = 0\nreload_debounce_ms = 0\n\
             evaluation_queue_timeout_ms = 0\nmax_recorded_json_bytes = 0\n\
             [retention]\ndecisions_max_age_days = 0\ndecisions_max_bytes = 0\n\
             reloads_keep = 0\nreleases_keep = 0\n",
        )
        .unwrap();
        assert_eq!(cfg.limits.max_operations, 0);
        assert_eq!(cfg.limits.evaluation_queue_timeout_ms, 0);
        assert_eq!(cfg.retention.releases_keep, 0);
    }

    #[test]
    fn http_values_that_cannot_work_are_refused_naming_the_key() {
        for key in [
            "header_read_timeout_ms",
            "body_read_timeout_ms",
            "idle_timeout_ms",
            "max_connections",
        ] {
            let err = resolve_text(&format!("[http]\n{key} = 0\n")).unwrap_err();
            assert!(
                err.to_string().contains(&format!("[http] {key}")),
                "{key}: {err}"
            );
        }
        let cfg = resolve_text("[http]\nshutdown_grace_ms = 0\n").unwrap();
        assert_eq!(cfg.http.shutdown_grace_ms, 0);
    }

    #[test]
    fn retention_values_that_would_mislead_are_refused_naming_the_key() {
        for key in ["prune_interval_secs", "prune_batch"] {
            let err = resolve_text(&format!("[retention]\n{key} = 0\n")).unwrap_err();
            assert!(
                err.to_string().contains(&format!("[retention] {key}")),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn language_and_http_limits_are_read_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pintu.toml");
        std::fs::write(
            &path,
            "language = \"en\"\n[http]\nheader_read_timeout_ms = 500\nmax_connections = 8\n",
        )
        .unwrap();
        let cfg = Config::resolve(Some(&path), None, None, None).unwrap();
        assert_eq!(cfg.language, Language::En);
        assert_eq!(cfg.http.header_read_timeout(), Duration::from_millis(500));
        assert_eq!(cfg.http.max_connections, 8);
        assert_eq!(cfg.http.shutdown_grace_ms, DEFAULT_SHUTDOWN_GRACE_MS);
        std::fs::write(&path, "language = \"jv\"\n").unwrap();
        let err = Config::resolve(Some(&path), None, None, None).unwrap_err();
        assert!(err.to_string().contains("jv"), "{err}");
    }

    #[test]
    fn roles_are_read_from_the_file_and_bad_lists_refused() {
        let cfg = resolve_text("roles = [\"front_office\", \"bendahara\"]\n").unwrap();
        assert_eq!(cfg.roles.names(), ["admin", "front_office", "bendahara"]);
        assert_eq!(
            resolve_text("").unwrap().roles,
            crate::auth::Roles::default()
        );
        let err = resolve_text("roles = [\"kasir\", \"kasir\"]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid roles: role `kasir` is listed twice"
        );
        let err = resolve_text("roles = [\"Kasir\"]\n").unwrap_err();
        assert!(err.to_string().contains("`Kasir`"), "{err}");
    }

    #[test]
    fn connector_delivery_keys_and_config_overrides_are_read_and_checked() {
        let cfg = resolve_text(
            "[connectors]\nmax_attempts = 3\nbackoff_initial_ms = 10\nbackoff_max_ms = 40\n\
             [connectors.config.oss-rba]\nbase_url = \"http://127.0.0.1:18081\"\n\
             [connectors.config.oss-rba.izin_map]\nA = \"pbg\"\n",
        )
        .unwrap();
        assert_eq!(cfg.connectors.max_attempts, 3);
        assert_eq!(cfg.connectors.backoff_max_ms, 40);
        assert_eq!(cfg.connectors.concurrency, DEFAULT_DELIVERY_CONCURRENCY);
        let oss = cfg.connectors.overrides("oss-rba").unwrap();
        assert_eq!(oss["base_url"].as_str(), Some("http://127.0.0.1:18081"));
        assert_eq!(oss["izin_map"]["A"].as_str(), Some("pbg"));
        assert!(cfg.connectors.overrides("simbg").is_none());
        for key in [
            "max_attempts",
            "backoff_initial_ms",
            "poll_interval_ms",
            "concurrency",
        ] {
            let err = resolve_text(&format!("[connectors]\n{key} = 0\n")).unwrap_err();
            assert!(
                err.to_string().contains(&format!("[connectors] {key}")),
                "{key}: {err}"
            );
        }
        let err = resolve_text("[connectors]\nbackoff_initial_ms = 50\nbackoff_max_ms = 10\n")
            .unwrap_err();
        assert!(err.to_string().contains("backoff_max_ms"), "{err}");
        let err = resolve_text("[connectors]\nmax_atempts = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_atempts"), "{err}");
    }

    #[test]
    fn unknown_limit_is_rejected_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pintu.toml");
        std::fs::write(&path, "[limits]\nmax_operashuns = 10\n").unwrap();
        let err = Config::resolve(Some(&path), None, None, None).unwrap_err();
        assert!(err.to_string().contains("max_operashuns"), "{err}");
    }
}
