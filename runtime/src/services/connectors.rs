//! Connectors as the office uses them: inbound requests routed to the active release's
//! connectors, the actions they answer with applied to applications, the admin's list and dry
//! runs. The calls themselves are the connector host's (`crate::connectors`); this service gives
//! them their environment (kv in the store, the release's levy rules, secrets, the office's time
//! zone) and runs them on the blocking pool.
//!
//! Actions of one call are all checked first (permit types, field rules, JSON shapes, the
//! applications they name); if any is invalid, none is applied. Then they are applied in order:
//! a draft is created once per connector and idempotency key (the key is recorded in the same
//! store transaction as the application), references are merged into
//! `external[<connector>]`, notes go into the history; each change writes its outbox event.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::applications::{json_object, ApplicationError, Applications, DraftPlan, MAX_NOTE_BYTES};
use super::dispatcher::{BoxFuture, ConnectorOutlet, Source, Target as DeliveryTarget};
use super::evaluator::{run_in, EvalError, Evaluation, Kind};
use super::releases::Active;
use crate::config::Language;
use crate::connectors::{
    Action, AppRef, CallEnv, CallError, Connector, Event, EventReply, Header, HeldRequest,
    HttpResponse, InboundRequest, LevyAssessor, PendingKv, SecretsFile,
};
use crate::domain::application::Application;
use crate::release::Release;
use crate::scripts::CallContext;
use crate::store::Store;

/// Why a connector request failed; `api::error` maps each to its status.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("no connector `{0}` in the active release")]
    Unknown(String),
    /// The call failed (trap, timeout, memory, output caps, a host outside the allowlist, or
    /// the connector's own error); the message names connector, version and cause.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The connector answered something the HTTP response cannot carry.
    #[error("connector `{connector}` {version}: {message}")]
    BadResponse {
        connector: String,
        version: String,
        message: String,
    },
    /// An action the connector asked for is invalid; none of the call's actions was applied.
    #[error("connector `{connector}` {version}: {message}; no action was applied")]
    InvalidAction {
        connector: String,
        version: String,
        message: String,
    },
    /// The call's actions were applied but its kv writes could not be stored.
    #[error("connector `{connector}`: its kv writes were not stored: {message}")]
    KvNotStored { connector: String, message: String },
    /// The task running the call ended without an answer.
    #[error("the call of connector `{0}` crashed: {1}")]
    Crashed(String, #[source] tokio::task::JoinError),
    /// What the admin asked `invoke` to run is not a request or an event (named).
    #[error("{0}")]
    BadInvocation(String),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Application(#[from] ApplicationError),
}

type Result<T, E = ConnectorError> = std::result::Result<T, E>;

/// What one action did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Applied {
    /// `created`: a new draft; otherwise the key was used before and `application` is the
    /// application its first `create-draft` made. In a dry run a new draft has no id yet.
    CreateDraft {
        key: String,
        application: Option<String>,
        created: bool,
    },
    AttachExternal {
        application: String,
    },
    Note {
        application: String,
    },
}

/// One row of `GET /admin/connectors`. Never secrets nor `[config]` values.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConnectorView {
    pub name: String,
    pub version: String,
    /// The `pintu:connector` version it was built against.
    pub wit: String,
    pub sha256: String,
    /// `active`: part of the release serving now.
    pub status: &'static str,
    pub events: Vec<String>,
    /// As the manifest writes it, e.g. `15m`; `null` without a schedule.
    pub sync_every: Option<String>,
    pub allow_hosts: Vec<String>,
    pub limits: LimitsView,
    pub calls: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub latency_p50_us: Option<u64>,
    pub latency_p99_us: Option<u64>,
}

/// A connector's per-call limits.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct LimitsView {
    pub memory_mib: u32,
    pub timeout_ms: u64,
}

/// `POST /admin/connectors/{name}/invoke`: exactly one of `inbound` and `event`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Invocation {
    pub inbound: Option<InboundInvocation>,
    pub event: Option<EventInvocation>,
}

/// A request as `POST /v1/connectors/{name}/inbound/{path}` would pass it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundInvocation {
    /// Default `POST`.
    #[serde(default)]
    pub method: Option<String>,
    /// The part after `/inbound/`, e.g. `receiveNIB`.
    pub path: String,
    #[serde(default)]
    pub query: String,
    /// `[{"name", "value"}]`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub headers: Vec<Header>,
    /// A string is sent as its text; any other JSON value as its JSON text.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub body: Option<Json>,
}

/// An outbox event as the dispatcher would deliver it. `snapshot` defaults to the application
/// as it is now.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInvocation {
    /// e.g. `application.advanced`.
    #[serde(rename = "type", alias = "kind")]
    pub kind: String,
    /// e.g. `APP-1`.
    pub application: String,
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Option<Json>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub snapshot: Option<Json>,
}

/// What a dry run answered: the connector's reply and the actions that would be applied.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InvokeAnswer {
    pub connector: String,
    pub version: String,
    /// `handle-inbound`: the response (`status`, `headers`, `body` as text when it is UTF-8,
    /// else `body_hex`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub response: Option<Json>,
    /// `handle-event`: `{"outcome": "ok"}`, `{"outcome": "retry_later", "reason"}` or
    /// `{"outcome": "failed", "reason"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub outcome: Option<Json>,
    /// The actions as the connector returned them (`{"type": "create_draft", ...}`).
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<Action>,
    /// What applying them would do; nothing was applied, and kv writes were dropped.
    pub would_apply: Vec<Applied>,
    /// The outbound requests the connector made, held back instead of sent (the connector
    /// was told the connection failed): header names only, its secrets masked.
    pub held_requests: Vec<HeldRequest>,
}

/// An action checked against the active release, ready to apply.
enum Planned {
    Draft(Box<DraftPlan>),
    External {
        target: Target,
        value: Map<String, Json>,
    },
    Note {
        target: Target,
        text: String,
    },
}

/// The application an action is about, once checked.
#[derive(Clone)]
enum Target {
    Id(String),
    /// A draft key: created earlier (`Some(id)`) or by an earlier action of this call.
    Key(String, Option<String>),
}

pub struct Connectors {
    active: Active,
    store: Store,
    applications: Applications,
    secrets: SecretsFile,
    language: Language,
    utc_offset: FixedOffset,
}

impl Connectors {
    pub(crate) fn new(
        active: Active,
        store: Store,
        data_dir: PathBuf,
        language: Language,
        utc_offset: FixedOffset,
    ) -> Self {
        Self {
            applications: Applications::new(active.clone(), store.clone(), language, utc_offset),
            active,
            store,
            secrets: SecretsFile::new(data_dir),
            language,
            utc_offset,
        }
    }

    fn release(&self) -> Result<Arc<Release>> {
        self.active
            .current()
            .ok_or(ConnectorError::Eval(EvalError::NoRelease))
    }

    fn connector(&self, release: &Release, name: &str) -> Result<Connector> {
        release
            .connectors
            .get(name)
            .cloned()
            .ok_or_else(|| ConnectorError::Unknown(name.to_owned()))
    }

    /// The connectors of the active release, by name (none before a release serves).
    pub fn list(&self) -> Vec<ConnectorView> {
        let Some(release) = self.active.current() else {
            return Vec::new();
        };
        release.connectors.values().map(view).collect()
    }

    /// What a call of a connector of `release` needs: its kv space in the store (kept in an
    /// overlay that is dropped for a dry run), the release's levy rules, the secrets as the data
    /// folder holds them now, the office's time zone. A dry run also holds outbound requests
    /// back instead of sending them.
    pub fn env(&self, release: &Arc<Release>, dry_run: bool) -> CallEnv {
        let secrets = self.secrets.current();
        CallEnv {
            kv: Arc::new(self.store.clone()),
            levy: Arc::new(ReleaseLevy {
                release: release.clone(),
                language: self.language,
                utc_offset: self.utc_offset,
            }),
            secrets,
            utc_offset_minutes: self.utc_offset.local_minus_utc() / 60,
            dry_run,
            held: dry_run.then(Default::default),
            pending_kv: None,
        }
    }

    /// Routes an inbound request to connector `name` of the active release, applies the actions
    /// it answers with, and returns its response as it is.
    pub async fn inbound(&self, name: &str, req: InboundRequest) -> Result<HttpResponse> {
        let release = self.release()?;
        let connector = self.connector(&release, name)?;
        // Its kv writes are stored only once its actions are applied (see `PendingKv`).
        let pending = PendingKv::default();
        let env = CallEnv {
            pending_kv: Some(pending.clone()),
            ..self.env(&release, false)
        };
        let kv = env.kv.clone();
        let called = connector.clone();
        let reply = tokio::task::spawn_blocking(move || called.handle_inbound(&env, req))
            .await
            .map_err(|e| ConnectorError::Crashed(name.to_owned(), e))??;
        check_response(&reply.response).map_err(|message| ConnectorError::BadResponse {
            connector: connector.name().to_owned(),
            version: connector.version().to_owned(),
            message,
        })?;
        self.apply(&connector, reply.actions, false).await?;
        let owner = connector.name().to_owned();
        tokio::task::spawn_blocking(move || pending.commit(&*kv, &owner))
            .await
            .map_err(|e| ConnectorError::Crashed(name.to_owned(), e))?
            .map_err(|message| ConnectorError::KvNotStored {
                connector: connector.name().to_owned(),
                message,
            })?;
        Ok(reply.response)
    }

    /// A dry run of connector `name`'s `handle-inbound` or `handle-event`: its answer and what
    /// its actions would do; nothing is applied and kv writes are dropped.
    pub async fn invoke(&self, name: &str, what: Invocation) -> Result<InvokeAnswer> {
        let release = self.release()?;
        let connector = self.connector(&release, name)?;
        let env = self.env(&release, true);
        let held = env.held.clone().unwrap_or_default();
        let called = connector.clone();
        let crashed = |e| ConnectorError::Crashed(name.to_owned(), e);
        let (response, outcome, actions) = match (what.inbound, what.event) {
            (Some(inbound), None) => {
                let req = inbound_request(inbound);
                let reply = tokio::task::spawn_blocking(move || called.handle_inbound(&env, req))
                    .await
                    .map_err(crashed)??;
                (Some(response_json(&reply.response)), None, reply.actions)
            }
            (None, Some(event)) => {
                let ev = self.event(&release, event).await?;
                let reply: EventReply =
                    tokio::task::spawn_blocking(move || called.handle_event(&env, ev))
                        .await
                        .map_err(crashed)??;
                let outcome = serde_json::to_value(&reply.outcome)
                    .map_err(|e| ConnectorError::Eval(EvalError::Encode(e)))?;
                (None, Some(outcome), reply.actions)
            }
            _ => {
                return Err(ConnectorError::BadInvocation(
                    "request body: give exactly one of `inbound` and `event`".into(),
                ))
            }
        };
        let would_apply = self.apply(&connector, actions.clone(), true).await?;
        let held_requests = std::mem::take(&mut *held.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(InvokeAnswer {
            connector: connector.name().to_owned(),
            version: connector.version().to_owned(),
            response,
            outcome,
            actions,
            would_apply,
            held_requests,
        })
    }

    /// The event an admin's `invoke` delivers: the application must exist; its snapshot is the
    /// application as the API shows it unless the invocation gives one.
    async fn event(&self, release: &Release, inv: EventInvocation) -> Result<Event> {
        let app = self.applications.read_any(&inv.application).await?;
        let snapshot = match inv.snapshot {
            Some(s) => s,
            None => serde_json::to_value(self.applications.view(release, app))
                .map_err(|e| ConnectorError::Eval(EvalError::Encode(e)))?,
        };
        let seq = inv.seq;
        Ok(Event {
            seq,
            kind: inv.kind,
            application: inv.application,
            at: Utc::now().to_rfc3339(),
            data: inv
                .data
                .unwrap_or_else(|| Json::Object(Map::new()))
                .to_string(),
            snapshot: snapshot.to_string(),
            idempotency_key: format!("invoke:{seq}"),
            attempt: 1,
        })
    }

    /// Checks every action of one call of `connector` against the active release, then (unless
    /// `dry_run`) applies them in order. An invalid action fails the whole list before anything
    /// is applied.
    pub async fn apply(
        &self,
        connector: &Connector,
        actions: Vec<Action>,
        dry_run: bool,
    ) -> Result<Vec<Applied>> {
        self.apply_as(connector.name(), connector.version(), actions, dry_run)
            .await
    }

    /// [`Self::apply`] for the connector named `name` at `version`.
    pub async fn apply_as(
        &self,
        name: &str,
        version: &str,
        actions: Vec<Action>,
        dry_run: bool,
    ) -> Result<Vec<Applied>> {
        if actions.is_empty() {
            return Ok(Vec::new());
        }
        let plan = self.check(name, version, actions).await?;
        let mut applied = Vec::with_capacity(plan.len());
        // Keys of drafts this call created (or found) → their application.
        let mut created: BTreeMap<String, Option<String>> = BTreeMap::new();
        for step in plan {
            match step {
                Planned::Draft(draft) => {
                    let key = draft.key.clone();
                    let existing = self.applications.draft_by_key(name, &key).await?;
                    let (application, was_created) = match (existing, dry_run) {
                        (Some(id), _) => (Some(id), false),
                        (None, true) => (
                            created.get(&key).cloned().flatten(),
                            !created.contains_key(&key),
                        ),
                        (None, false) => {
                            let (id, was_created) =
                                self.applications.create_draft_once(name, *draft).await?;
                            (Some(id), was_created)
                        }
                    };
                    created.insert(key.clone(), application.clone());
                    applied.push(Applied::CreateDraft {
                        key,
                        application,
                        created: was_created,
                    });
                }
                Planned::External { target, value } => {
                    let id = resolve(&target, &created);
                    if let (false, Some(id)) = (dry_run, &id) {
                        self.applications.attach_external(name, id, value).await?;
                    }
                    applied.push(Applied::AttachExternal {
                        application: id.unwrap_or_else(|| shown(&target)),
                    });
                }
                Planned::Note { target, text } => {
                    let id = resolve(&target, &created);
                    if let (false, Some(id)) = (dry_run, &id) {
                        self.applications.add_note(name, id, &text).await?;
                    }
                    applied.push(Applied::Note {
                        application: id.unwrap_or_else(|| shown(&target)),
                    });
                }
            }
        }
        Ok(applied)
    }

    /// Checks every action; the first invalid one fails them all, naming its place and kind.
    async fn check(&self, name: &str, version: &str, actions: Vec<Action>) -> Result<Vec<Planned>> {
        let release = self.release()?;
        let invalid = |index: usize, what: &str, message: String| ConnectorError::InvalidAction {
            connector: name.to_owned(),
            version: version.to_owned(),
            message: format!("action {} ({what}): {message}", index + 1),
        };
        // Draft keys of this call so far: later actions may name them.
        let mut keys: BTreeMap<String, ()> = BTreeMap::new();
        let mut plan = Vec::with_capacity(actions.len());
        for (i, action) in actions.into_iter().enumerate() {
            match action {
                Action::CreateDraft(d) => {
                    let what = format!("create-draft `{}`", d.key);
                    let planned = self
                        .applications
                        .plan_draft(&release, name, &d)
                        .map_err(|m| invalid(i, &what, m))?;
                    keys.insert(d.key, ());
                    plan.push(Planned::Draft(Box::new(planned)));
                }
                Action::AttachExternal(r) => {
                    let target = self
                        .target(name, &r.application, &keys)
                        .await?
                        .map_err(|m| invalid(i, "attach-external", m))?;
                    let value = json_object(&r.value, "value")
                        .map_err(|m| invalid(i, "attach-external", m))?;
                    plan.push(Planned::External { target, value });
                }
                Action::Note(n) => {
                    let target = self
                        .target(name, &n.application, &keys)
                        .await?
                        .map_err(|m| invalid(i, "note", m))?;
                    if n.text.trim().is_empty() || n.text.len() > MAX_NOTE_BYTES {
                        return Err(invalid(
                            i,
                            "note",
                            format!("`text` must be 1 to {MAX_NOTE_BYTES} bytes and not blank"),
                        ));
                    }
                    plan.push(Planned::Note {
                        target,
                        text: n.text,
                    });
                }
            }
        }
        Ok(plan)
    }

    /// The application `r` names, or why it names none (the inner error).
    async fn target(
        &self,
        connector: &str,
        r: &AppRef,
        keys: &BTreeMap<String, ()>,
    ) -> Result<std::result::Result<Target, String>> {
        Ok(match r {
            AppRef::Id(id) => {
                if self.applications.exists(id).await? {
                    Ok(Target::Id(id.clone()))
                } else {
                    Err(format!("no application `{id}`"))
                }
            }
            AppRef::Key(key) => {
                let stored = self.applications.draft_by_key(connector, key).await?;
                if stored.is_some() || keys.contains_key(key) {
                    Ok(Target::Key(key.clone(), stored))
                } else {
                    Err(format!(
                        "no draft was created with key `{key}` by connector `{connector}`"
                    ))
                }
            }
        })
    }
}

/// The dispatcher's view of the serving release: its connectors (each called with the
/// environment of that release), an application as the API shows it, and the actions of a
/// delivered event applied as an inbound call's would be.
impl Source for Connectors {
    fn targets(&self) -> Vec<DeliveryTarget> {
        let Some(release) = self.active.current() else {
            return Vec::new();
        };
        let env = Arc::new(self.env(&release, false));
        release
            .connectors
            .values()
            .map(|connector| {
                let manifest = connector.manifest();
                DeliveryTarget {
                    name: connector.name().to_owned(),
                    version: connector.version().to_owned(),
                    release: release.id.clone(),
                    events: manifest.events.iter().cloned().collect(),
                    sync_every: manifest.sync_every,
                    outlet: Arc::new(ConnectorOutlet {
                        connector: connector.clone(),
                        env: env.clone(),
                    }),
                }
            })
            .collect()
    }

    fn snapshot(&self, app: Application) -> String {
        let view = match self.active.current() {
            Some(release) => serde_json::to_value(self.applications.view(&release, app)),
            None => serde_json::to_value(app),
        };
        view.map_or_else(|_| "null".to_owned(), |v| v.to_string())
    }

    fn apply<'a>(
        &'a self,
        target: &'a DeliveryTarget,
        actions: Vec<Action>,
    ) -> BoxFuture<'a, std::result::Result<(), String>> {
        Box::pin(async move {
            self.apply_as(&target.name, &target.version, actions, false)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// The application id of `target` now that earlier actions ran (`None` only in a dry run, for
/// a draft not created yet).
fn resolve(target: &Target, created: &BTreeMap<String, Option<String>>) -> Option<String> {
    match target {
        Target::Id(id) => Some(id.clone()),
        Target::Key(key, stored) => stored
            .clone()
            .or_else(|| created.get(key).cloned().flatten()),
    }
}

/// How a dry run names an application that does not exist yet.
fn shown(target: &Target) -> String {
    match target {
        Target::Id(id) => id.clone(),
        Target::Key(key, _) => format!("(the draft with key `{key}`)"),
    }
}

fn view(c: &Connector) -> ConnectorView {
    let m = c.manifest();
    let stats = c.stats();
    ConnectorView {
        name: c.name().to_owned(),
        version: c.version().to_owned(),
        wit: c.wit().to_owned(),
        sha256: c.sha256().to_owned(),
        status: "active",
        events: m.events.clone(),
        sync_every: m.sync_every_text.clone(),
        allow_hosts: m.allow_hosts.clone(),
        limits: LimitsView {
            memory_mib: m.limits.memory_mib,
            timeout_ms: m.limits.timeout_ms,
        },
        calls: stats.calls,
        failures: stats.failures,
        last_error: stats.last_error,
        latency_p50_us: stats.latency_p50_us,
        latency_p99_us: stats.latency_p99_us,
    }
}

/// Whether HTTP can carry the status and headers of a connector's response; what it cannot,
/// named. Checked before its actions are applied.
fn check_response(r: &HttpResponse) -> std::result::Result<(), String> {
    if !(100..=599).contains(&r.status) {
        return Err(format!(
            "answered status {}, which is not an HTTP status",
            r.status
        ));
    }
    for h in &r.headers {
        // RFC 9110 tokens for names; no control characters but tab in values.
        let name_ok = !h.name.is_empty()
            && h.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        let value_ok = h
            .value
            .bytes()
            .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
        if !name_ok || !value_ok {
            return Err(format!(
                "answered header `{}`, which HTTP cannot carry",
                h.name.escape_debug()
            ));
        }
    }
    Ok(())
}

fn inbound_request(inv: InboundInvocation) -> InboundRequest {
    let body = match inv.body {
        None => Vec::new(),
        Some(Json::String(text)) => text.into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    InboundRequest {
        method: inv.method.unwrap_or_else(|| "POST".into()),
        path: inv.path,
        query: inv.query,
        headers: inv.headers,
        body,
    }
}

/// A response for an admin to read: the body as text when it is UTF-8.
fn response_json(r: &HttpResponse) -> Json {
    let headers: Vec<Json> = r
        .headers
        .iter()
        .map(|h| serde_json::json!({"name": h.name, "value": h.value}))
        .collect();
    let mut out = Map::new();
    out.insert("status".into(), Json::from(r.status));
    out.insert("headers".into(), Json::Array(headers));
    match std::str::from_utf8(&r.body) {
        Ok(text) => out.insert("body".into(), Json::String(text.to_owned())),
        Err(_) => out.insert("body_hex".into(), Json::String(hex::encode(&r.body))),
    };
    Json::Object(out)
}

/// The levy rules of one release, for connectors' `assess-levy`: the answer of
/// `POST /v1/permits/<permit>/levy` (not recorded in the decision log: the connector's own
/// request is what the office keeps).
struct ReleaseLevy {
    release: Arc<Release>,
    language: Language,
    utc_offset: FixedOffset,
}

impl LevyAssessor for ReleaseLevy {
    fn assess(&self, permit: &str, input_json: &str) -> Result<String, String> {
        let data: Json =
            serde_json::from_str(input_json).map_err(|e| format!("input is not JSON: {e}"))?;
        let today = Utc::now().with_timezone(&self.utc_offset).date_naive();
        let answer = run_in(
            &self.release,
            permit,
            Kind::Levy,
            &data,
            self.language,
            &CallContext::on(today),
        )
        .map_err(|e| e.to_string())?;
        match answer {
            Evaluation::Invalid { errors, .. } => {
                let listed: Vec<String> = errors
                    .iter()
                    .map(|e| format!("`{}`: {}", e.field, e.message))
                    .collect();
                Err(format!("data is invalid: {}", listed.join("; ")))
            }
            other => serde_json::to_string(&other).map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::{AppNote, Draft, ExternalRef};
    use crate::domain::application::{event, Status};
    use crate::release::{build, SourceTree};

    const PERMIT: &str = "name = \"Uji\"\n[[fields]]\nname = \"luas\"\ntype = \"decimal\"\nrequired = true\n[[fields]]\nname = \"alamat\"\ntype = \"text\"\n[[flow]]\nstep = \"a\"\nlabel = \"A\"\nrole = \"front_office\"\n";

    fn service(dir: &std::path::Path) -> (Connectors, Store) {
        let store = Store::open(&dir.join("data"), 64).unwrap();
        let tree = SourceTree::from_files(
            [("uji/permit.toml".to_owned(), PERMIT.to_owned())]
                .into_iter()
                .collect(),
        );
        let release = build(tree, &crate::config::Limits::default())
            .map_err(|r| r.diagnostics)
            .unwrap();
        let active = Active::default();
        active.set(release);
        let offset = FixedOffset::east_opt(7 * 3600).unwrap();
        let service = Connectors::new(
            active,
            store.clone(),
            dir.join("data"),
            Language::En,
            offset,
        );
        (service, store)
    }

    fn draft(key: &str, data: &str) -> Action {
        Action::CreateDraft(Draft {
            key: key.into(),
            permit: "uji".into(),
            kind: None,
            applicant: r#"{"name": "Budi"}"#.into(),
            data: data.into(),
            external: r#"{"nib": "9120001234567"}"#.into(),
        })
    }

    fn attach(app: AppRef, value: &str) -> Action {
        Action::AttachExternal(ExternalRef {
            application: app,
            value: value.into(),
        })
    }

    fn note(app: AppRef, text: &str) -> Action {
        Action::Note(AppNote {
            application: app,
            text: text.into(),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drafts_are_created_once_and_later_actions_find_them_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let (service, store) = service(dir.path());
        let actions = vec![
            // A draft may lack required fields (`luas`), as a staff draft may.
            draft("I-1", r#"{"alamat": "Jl. Ahmad Yani 1"}"#),
            attach(
                AppRef::Key("I-1".into()),
                r#"{"id_izin": "I-1", "nib": "9120001234568"}"#,
            ),
            note(AppRef::Key("I-1".into()), "diterima dari OSS"),
        ];
        let applied = service
            .apply_as("oss-rba", "0.1.0", actions.clone(), false)
            .await
            .unwrap();
        assert_eq!(
            applied,
            [
                Applied::CreateDraft {
                    key: "I-1".into(),
                    application: Some("APP-1".into()),
                    created: true
                },
                Applied::AttachExternal {
                    application: "APP-1".into()
                },
                Applied::Note {
                    application: "APP-1".into()
                },
            ]
        );
        let app = store.application("APP-1").unwrap().unwrap();
        assert_eq!(app.status, Status::Draft);
        assert_eq!(app.version, 3);
        assert_eq!(
            app.external["oss-rba"],
            serde_json::json!({"nib": "9120001234568", "id_izin": "I-1"}),
            "attach-external merges, its keys win"
        );
        let by: Vec<(&str, &str)> = app
            .history
            .iter()
            .map(|h| (h.by.as_str(), h.action.as_str()))
            .collect();
        assert_eq!(
            by,
            [
                ("connector:oss-rba", "created"),
                ("connector:oss-rba", "external_changed"),
                ("connector:oss-rba", "note"),
            ]
        );
        assert_eq!(app.history[2].note.as_deref(), Some("diterima dari OSS"));
        let kinds: Vec<String> = store
            .events(0, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, [event::EXTERNAL_CHANGED, event::NOTE_ADDED]);

        // The same call again: nothing new is created, the key resolves to the first.
        let again = service
            .apply_as("oss-rba", "0.1.0", actions[..1].to_vec(), false)
            .await
            .unwrap();
        assert_eq!(
            again,
            [Applied::CreateDraft {
                key: "I-1".into(),
                application: Some("APP-1".into()),
                created: false
            }]
        );
        assert!(store.application("APP-2").unwrap().is_none());
        // Another connector's key space is its own.
        let other = service
            .apply_as("simbg", "0.1.0", actions[..1].to_vec(), false)
            .await
            .unwrap();
        assert!(
            matches!(&other[0], Applied::CreateDraft { application: Some(id), created: true, .. } if id == "APP-2")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_invalid_action_applies_none_and_says_which_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let (service, store) = service(dir.path());
        let cases = [
            (
                vec![draft("I-1", "{}"), draft("I-2", r#"{"luas": "banyak"}"#)],
                "connector `oss-rba` 0.1.0: action 2 (create-draft `I-2`): `data` is invalid: `luas`:",
            ),
            (
                vec![draft("I-1", "{}"), note(AppRef::Key("I-9".into()), "x")],
                "action 2 (note): no draft was created with key `I-9` by connector `oss-rba`",
            ),
            (
                vec![attach(AppRef::Id("APP-7".into()), "{}")],
                "action 1 (attach-external): no application `APP-7`",
            ),
            (
                vec![draft("I-1", "{}"), attach(AppRef::Key("I-1".into()), "[1]")],
                "action 2 (attach-external): `value` must be a JSON object, not an array",
            ),
            (
                vec![Action::CreateDraft(Draft {
                    permit: "imb".into(),
                    ..match draft("I-1", "{}") {
                        Action::CreateDraft(d) => d,
                        _ => unreachable!(),
                    }
                })],
                "action 1 (create-draft `I-1`): no permit type `imb` in release",
            ),
        ];
        for (actions, expected) in cases {
            let err = service
                .apply_as("oss-rba", "0.1.0", actions, false)
                .await
                .unwrap_err();
            assert!(matches!(err, ConnectorError::InvalidAction { .. }), "{err}");
            let message = err.to_string();
            assert!(
                message.contains(expected),
                "{message}\nexpected: {expected}"
            );
            assert!(message.ends_with("no action was applied"), "{message}");
        }
        assert!(
            store.application("APP-1").unwrap().is_none(),
            "nothing applied"
        );
        assert!(store.connector_draft("oss-rba", "I-1").unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dry_run_says_what_would_happen_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (service, store) = service(dir.path());
        let actions = vec![
            draft("I-1", "{}"),
            note(AppRef::Key("I-1".into()), "dicoba"),
        ];
        let would = service
            .apply_as("oss-rba", "0.1.0", actions.clone(), true)
            .await
            .unwrap();
        assert_eq!(
            would,
            [
                Applied::CreateDraft {
                    key: "I-1".into(),
                    application: None,
                    created: true
                },
                Applied::Note {
                    application: "(the draft with key `I-1`)".into()
                },
            ]
        );
        assert!(store.application("APP-1").unwrap().is_none());
        service
            .apply_as("oss-rba", "0.1.0", actions[..1].to_vec(), false)
            .await
            .unwrap();
        let would = service
            .apply_as("oss-rba", "0.1.0", actions, true)
            .await
            .unwrap();
        assert_eq!(
            would[0],
            Applied::CreateDraft {
                key: "I-1".into(),
                application: Some("APP-1".into()),
                created: false
            }
        );
        assert_eq!(store.application("APP-1").unwrap().unwrap().version, 1);
    }
}
