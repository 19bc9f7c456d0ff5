//! Connectors: sandboxed WebAssembly components (the `pintu:connector` WIT contract) that link
//! the office to outside systems. This module is the host: it loads and checks a connector's
//! manifest and component, and calls it under limits. It is an adapter below the services: it
//! knows nothing of HTTP routes or of the store's tables; what a call needs from the rest of
//! Pintu comes through [`CallEnv`].
//!
//! - [`types`] — plain Rust mirrors of the WIT records, independent of the WIT version;
//! - [`error`] — [`CallError`]: why one call failed, naming connector, version and cause;
//! - [`manifest`] — `connector.toml`, checked with located diagnostics;
//! - `v0_1_0` — the bindings of `pintu:connector@0.1.0` (one module per supported version);
//! - `call` — one call's state and the host imports; `engine` — the engine and epoch ticker;
//!   `cache` — the HMAC-verified compiled-code cache; [`secrets`]; [`env`].
//!
//! Every call gets a fresh instance in a fresh `Store` with the manifest's memory limit and an
//! epoch deadline from its `timeout_ms`; nothing survives between calls but kv writes.

mod cache;
mod call;
mod engine;
pub mod env;
pub mod error;
pub mod manifest;
pub mod secrets;
mod stats;
pub mod types;
mod v0_1_0;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, Trap};

use crate::diagnostic::Diagnostic;
use cache::{Cache, Counters};
use call::{CallConnector, CallState};
pub use engine::Allocation;
pub use env::{CallEnv, HeldRequest, KvSpace, KvWrite, LevyAssessor, MemoryKv, NoLevy, PendingKv};
pub use error::{CallError, CallFailure};
pub use manifest::{Limits, Manifest, SUPPORTED_WIT};
pub use secrets::{Secrets, SecretsFile};
pub use stats::StatsSnapshot;
pub use types::{
    Action, AppNote, AppRef, Draft, Event, EventOutcome, EventReply, ExternalRef, Header,
    HttpError, HttpRequest, HttpResponse, InboundReply, InboundRequest, Info, LogLevel,
};

/// Most bytes of an inbound response body a connector may return.
pub const MAX_INBOUND_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Most actions one call may return.
pub const MAX_ACTIONS: usize = 1_000;
/// Most bytes of one action's JSON text.
pub const MAX_ACTION_JSON_BYTES: usize = 1024 * 1024;
/// Most headers of an inbound response, and their total bytes.
pub const MAX_RESPONSE_HEADERS: usize = 100;
pub const MAX_RESPONSE_HEADER_BYTES: usize = 64 * 1024;

/// The WIT package a connector imports its host interface from.
const WIT_PACKAGE: &str = "pintu:connector/";

/// One per process: the engine (pooling or on-demand), its epoch ticker, the linkers of every
/// supported WIT version and the compiled-code cache.
pub struct ConnectorHost {
    engine: Engine,
    allocation: Allocation,
    linker_v0_1_0: Linker<CallState>,
    cache: Option<Cache>,
    counters: Counters,
    slots: Arc<engine::Slots>,
    _ticker: engine::Ticker,
}

impl std::fmt::Debug for ConnectorHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorHost")
            .field("allocation", &self.allocation)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl ConnectorHost {
    /// `cache_dir` is where compiled components are kept (`DATA/connector-cache`); none: no
    /// cache. A cache folder that cannot be opened is logged and skipped.
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Arc<Self>> {
        let (engine, allocation) = engine::build()?;
        let ticker = engine::Ticker::start(engine.clone())?;
        let mut linker_v0_1_0 = Linker::new(&engine);
        v0_1_0::Connector::add_to_linker::<CallState, HasSelf<CallState>>(
            &mut linker_v0_1_0,
            |state| state,
        )
        .map_err(|e| anyhow::anyhow!("cannot link the connector host imports: {e}"))?;
        let cache = cache_dir.and_then(|dir| match Cache::open(&dir, &engine) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "connector compiled-code cache disabled");
                None
            }
        });
        Ok(Arc::new(Self {
            engine,
            allocation,
            linker_v0_1_0,
            cache,
            counters: Counters::default(),
            slots: Arc::new(engine::Slots::new(engine::POOL_INSTANCES)),
            _ticker: ticker,
        }))
    }

    /// Whether the pooling allocator could be used.
    pub fn allocation(&self) -> Allocation {
        self.allocation
    }

    /// Components compiled by this host so far (not taken from the cache).
    pub fn compiled_count(&self) -> u64 {
        self.counters.compiled.load(Ordering::Relaxed)
    }

    /// Components taken from the compiled-code cache so far.
    pub fn cache_hit_count(&self) -> u64 {
        self.counters.from_cache.load(Ordering::Relaxed)
    }

    /// Loads the connector of folder `folder` from its files (the manifest and the component
    /// it names, by file name relative to the folder): parses and checks the manifest, checks
    /// the component's sha256, compiles it (or takes it from the cache), type-checks it
    /// against its WIT version, and calls `describe` to check it agrees with the manifest.
    /// `overrides` is the office's `[connectors.config.<name>]`, merged over `[config]`.
    pub fn load(
        &self,
        folder: &str,
        files: &BTreeMap<String, Vec<u8>>,
        overrides: Option<&toml::Table>,
    ) -> Result<Connector, Vec<Diagnostic>> {
        let manifest_file = manifest::manifest_path(folder);
        let Some(raw) = files.get(manifest::MANIFEST_FILE) else {
            return Err(vec![Diagnostic::file(
                manifest_file,
                "connector folder has no connector.toml",
            )]);
        };
        let Ok(text) = std::str::from_utf8(raw) else {
            return Err(vec![Diagnostic::file(
                manifest_file,
                "connector.toml is not UTF-8",
            )]);
        };
        let manifest = Manifest::parse(folder, text)?;
        let component_file = format!("plugins/{folder}/{}", manifest.component);
        let Some(bytes) = files.get(&manifest.component) else {
            return Err(vec![Diagnostic::file(
                component_file,
                "the component named by connector.toml is missing",
            )]);
        };
        let actual = hex::encode(Sha256::digest(bytes));
        if actual != manifest.sha256 {
            return Err(vec![Manifest::sha256_diagnostic(
                folder,
                text,
                format!(
                    "sha256 mismatch: the manifest says {} but `{}` has {actual}",
                    manifest.sha256, manifest.component
                ),
            )]);
        }
        let at_component = |message: String| vec![Diagnostic::file(&component_file, message)];
        let component = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, &actual, bytes, &self.counters),
            None => Component::new(&self.engine, bytes).inspect(|_| {
                self.counters.compiled.fetch_add(1, Ordering::Relaxed);
            }),
        }
        .map_err(|e| at_component(format!("not a valid WebAssembly component: {e}")))?;

        // The WIT version the component was built against, from its imports, before linking:
        // a version this host lacks deserves a better message than a missing import.
        let ty = component.component_type();
        for (name, _) in ty.imports(&self.engine) {
            let Some(rest) = name.strip_prefix(WIT_PACKAGE) else {
                return Err(at_component(format!(
                    "the component imports `{name}`, which connectors cannot have: a connector imports only `pintu:connector/host`"
                )));
            };
            let version = rest.split_once('@').map_or("", |(_, v)| v);
            if !SUPPORTED_WIT.contains(&version) {
                return Err(at_component(format!(
                    "the component was built against WIT pintu:connector@{version} (it imports `{name}`); this Pintu supports {}",
                    manifest::supported_list()
                )));
            }
            if version != manifest.wit {
                return Err(at_component(format!(
                    "the component was built against WIT {version} (it imports `{name}`) but connector.toml says wit = \"{}\"",
                    manifest.wit
                )));
            }
        }
        let pre = match manifest.wit.as_str() {
            v0_1_0::WIT => {
                let instance_pre = self
                    .linker_v0_1_0
                    .instantiate_pre(&component)
                    .map_err(|e| {
                        at_component(format!(
                            "the component does not type-check against WIT {}: {e}",
                            manifest.wit
                        ))
                    })?;
                Pre::V0_1_0(v0_1_0::ConnectorPre::new(instance_pre).map_err(|e| {
                    at_component(format!(
                        "the component does not export the connector world of WIT {}: {e}",
                        manifest.wit
                    ))
                })?)
            }
            other => {
                return Err(vec![Diagnostic::file(
                    manifest_file,
                    format!("wit version `{other}` has no bindings in this Pintu"),
                )])
            }
        };
        let config = manifest::merge_config(&manifest.config, overrides);
        let config_json = serde_json::to_string(&config).map_err(|e| {
            vec![Diagnostic::file(
                &manifest_file,
                format!("[config] cannot be given as JSON: {e}"),
            )]
        })?;
        let connector = Connector {
            inner: Arc::new(Inner {
                call: Arc::new(CallConnector {
                    manifest,
                    config_json,
                }),
                pre,
                engine: self.engine.clone(),
                slots: Arc::clone(&self.slots),
                stats: stats::Stats::default(),
            }),
        };
        let info = connector
            .describe(&CallEnv::detached())
            .map_err(|e| at_component(format!("describe failed: {e}")))?;
        let m = connector.manifest();
        let mut problems = Vec::new();
        if info.name != m.name {
            problems.push(format!(
                "describe says name `{}` but the manifest `{}`",
                info.name, m.name
            ));
        }
        if info.version != m.version {
            problems.push(format!(
                "describe says version `{}` but the manifest `{}`",
                info.version, m.version
            ));
        }
        let said: BTreeSet<&String> = info.events.iter().collect();
        let listed: BTreeSet<&String> = m.events.iter().collect();
        if said != listed {
            problems.push(format!(
                "describe says events {:?} but the manifest {:?}",
                info.events, m.events
            ));
        }
        if !problems.is_empty() {
            return Err(problems
                .into_iter()
                .map(|p| Diagnostic::file(&manifest_file, p))
                .collect());
        }
        Ok(connector)
    }
}

/// The instance of one WIT version, ready to instantiate.
enum Pre {
    V0_1_0(v0_1_0::ConnectorPre<CallState>),
}

/// An instantiated connector of one WIT version.
enum Bound {
    V0_1_0(v0_1_0::Connector),
}

struct Inner {
    call: Arc<CallConnector>,
    pre: Pre,
    engine: Engine,
    slots: Arc<engine::Slots>,
    stats: stats::Stats,
}

/// A loaded, type-checked connector; cheap to clone. Its calls are synchronous: callers run
/// them on the blocking pool.
#[derive(Clone)]
pub struct Connector {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.name())
            .field("version", &self.version())
            .field("wit", &self.wit())
            .field("sha256", &self.sha256())
            .finish_non_exhaustive()
    }
}

impl Connector {
    pub fn name(&self) -> &str {
        &self.manifest().name
    }

    pub fn version(&self) -> &str {
        &self.manifest().version
    }

    pub fn wit(&self) -> &str {
        &self.manifest().wit
    }

    pub fn sha256(&self) -> &str {
        &self.manifest().sha256
    }

    pub fn manifest(&self) -> &Manifest {
        &self.inner.call.manifest
    }

    /// The `[config]` the connector sees (overrides merged), as JSON text.
    pub fn config_json(&self) -> &str {
        &self.inner.call.config_json
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    fn error(&self, cause: CallFailure) -> CallError {
        CallError::new(self.name(), self.version(), cause)
    }

    /// Name, version and wanted events, as the component says.
    pub fn describe(&self, env: &CallEnv) -> Result<Info, CallError> {
        self.run(env, |store, bound| match bound {
            Bound::V0_1_0(b) => b.call_describe(store).map(v0_1_0::info_in),
        })
    }

    /// An HTTP request routed to the connector → its response and the actions to apply.
    pub fn handle_inbound(
        &self,
        env: &CallEnv,
        req: InboundRequest,
    ) -> Result<InboundReply, CallError> {
        let started = Instant::now();
        let result = self
            .run(env, |store, bound| match bound {
                Bound::V0_1_0(b) => b
                    .call_handle_inbound(store, &v0_1_0::inbound_out(req))
                    .map(|r| r.map(v0_1_0::inbound_reply_in)),
            })
            .and_then(|r| r.map_err(|e| self.error(CallFailure::Guest(e))))
            .and_then(|reply| {
                check_response(&reply.response)
                    .and_then(|()| check_actions(&reply.actions))
                    .map_err(|why| self.error(CallFailure::OutputTooLarge(why)))
                    .map(|()| reply)
            });
        self.record(started, result.as_ref().err().map(ToString::to_string));
        result
    }

    /// One outbox event → its outcome and the actions to apply.
    pub fn handle_event(&self, env: &CallEnv, ev: Event) -> Result<EventReply, CallError> {
        let started = Instant::now();
        let result = self
            .run(env, |store, bound| match bound {
                Bound::V0_1_0(b) => b
                    .call_handle_event(store, &v0_1_0::event_out(ev))
                    .map(v0_1_0::event_reply_in),
            })
            .and_then(|reply| {
                check_actions(&reply.actions)
                    .map_err(|why| self.error(CallFailure::OutputTooLarge(why)))
                    .map(|()| reply)
            });
        let error = match &result {
            Err(e) => Some(e.to_string()),
            Ok(EventReply {
                outcome: EventOutcome::RetryLater(why),
                ..
            }) => Some(format!(
                "connector `{}` {}: asked to retry later: {why}",
                self.name(),
                self.version()
            )),
            Ok(EventReply {
                outcome: EventOutcome::Failed(why),
                ..
            }) => Some(format!(
                "connector `{}` {}: failed the event: {why}",
                self.name(),
                self.version()
            )),
            Ok(_) => None,
        };
        self.record(started, error);
        result
    }

    /// The periodic run → the actions to apply.
    pub fn sync(&self, env: &CallEnv) -> Result<Vec<Action>, CallError> {
        let started = Instant::now();
        let result = self
            .run(env, |store, bound| match bound {
                Bound::V0_1_0(b) => b
                    .call_sync(store)
                    .map(|r| r.map(|a| a.into_iter().map(v0_1_0::action_in).collect())),
            })
            .and_then(|r| r.map_err(|e| self.error(CallFailure::Guest(e))))
            .and_then(|actions: Vec<Action>| {
                check_actions(&actions)
                    .map_err(|why| self.error(CallFailure::OutputTooLarge(why)))
                    .map(|()| actions)
            });
        self.record(started, result.as_ref().err().map(ToString::to_string));
        result
    }

    fn record(&self, started: Instant, error: Option<String>) {
        if let Some(e) = &error {
            tracing::warn!(connector = %self.name(), version = %self.version(), error = %e, "connector call failed");
        }
        self.inner.stats.record(started.elapsed(), error);
    }

    /// One call in a fresh store and instance, under the manifest's limits.
    fn run<R>(
        &self,
        env: &CallEnv,
        body: impl FnOnce(&mut Store<CallState>, &Bound) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let limits = self.manifest().limits;
        let timeout = Duration::from_millis(limits.timeout_ms);
        let deadline = Instant::now() + timeout;
        let Some(_slot) = self.inner.slots.take(deadline) else {
            return Err(self.error(CallFailure::Instantiate(format!(
                "all {} connector instances stayed busy for its {} ms",
                engine::POOL_INSTANCES,
                limits.timeout_ms
            ))));
        };
        let state = CallState::new(Arc::clone(&self.inner.call), env.clone(), deadline);
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|state| &mut state.limiter);
        // The epoch advances every TICK; one tick more so a call never gets less than its due.
        let tick_ms = u64::try_from(engine::TICK.as_millis()).unwrap_or(1).max(1);
        store.set_epoch_deadline(limits.timeout_ms.div_ceil(tick_ms) + 1);
        store.epoch_deadline_trap();
        let instantiated = match &self.inner.pre {
            Pre::V0_1_0(pre) => pre.instantiate(&mut store).map(Bound::V0_1_0),
        };
        let result = match instantiated {
            Ok(bound) => body(&mut store, &bound).map_err(|e| (e, false)),
            Err(e) => Err((e, true)),
        };
        let state = store.data();
        // Reaching outside the allowlist fails the call whatever the guest made of the refusal.
        if let Some(origin) = &state.violation {
            return Err(self.error(CallFailure::NotAllowed(origin.clone())));
        }
        result.map_err(|(e, instantiating)| {
            let cause = if state.limiter.exceeded {
                CallFailure::OutOfMemory {
                    mib: limits.memory_mib,
                }
            } else if let Some(trap) = e.downcast_ref::<Trap>() {
                if *trap == Trap::Interrupt {
                    CallFailure::Timeout {
                        ms: limits.timeout_ms,
                    }
                } else {
                    CallFailure::Trap(trap.to_string())
                }
            } else if instantiating {
                CallFailure::Instantiate(e.to_string())
            } else {
                CallFailure::Trap(e.to_string())
            };
            self.error(cause)
        })
    }
}

fn check_response(r: &HttpResponse) -> Result<(), String> {
    if r.body.len() > MAX_INBOUND_BODY_BYTES {
        return Err(format!(
            "the response body has {} bytes, more than {MAX_INBOUND_BODY_BYTES}",
            r.body.len()
        ));
    }
    let header_bytes: usize = r.headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    if r.headers.len() > MAX_RESPONSE_HEADERS || header_bytes > MAX_RESPONSE_HEADER_BYTES {
        return Err(format!(
            "the response has {} headers of {header_bytes} bytes, more than {MAX_RESPONSE_HEADERS} or {MAX_RESPONSE_HEADER_BYTES} bytes",
            r.headers.len()
        ));
    }
    Ok(())
}

fn check_actions(actions: &[Action]) -> Result<(), String> {
    if actions.len() > MAX_ACTIONS {
        return Err(format!(
            "{} actions, more than {MAX_ACTIONS}",
            actions.len()
        ));
    }
    for (i, a) in actions.iter().enumerate() {
        let len = a.json_len();
        if len > MAX_ACTION_JSON_BYTES {
            return Err(format!(
                "action {} is {len} bytes of JSON, more than {MAX_ACTION_JSON_BYTES}",
                i + 1
            ));
        }
    }
    Ok(())
}
