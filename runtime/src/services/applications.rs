//! Applications: creating them (drafts or submitted), submitting drafts, moving them through
//! their permit type's flow, editing their data, reading and listing them.
//!
//! An application follows the flow of its permit type in the **active** release, by step key.
//! Every change is computed here from the version read, then handed to the store as one
//! conditional write (`store::applications::ApplicationWrite`) that also assigns the numbers it
//! needs and appends its events; a change computed from a version that is no longer current is
//! refused there (409 `conflict`), never applied over another.

mod external;

use std::sync::Arc;

use chrono::{FixedOffset, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use super::releases::Active;
use crate::auth::{PermitScope, Principal};
use crate::config::Language;
use crate::domain::application::{event, AppKind, Applicant, Application, HistoryEntry, Status};
use crate::domain::flow::{Effect, Step};
use crate::domain::numbering::NumberKind;
use crate::permits::fields::{check_record, FieldError};
use crate::permits::messages::Problem;
use crate::permits::{pipeline, Permit};
use crate::release::Release;
use crate::scripts::CallContext;
use crate::services::evaluator::EvalError;
use crate::store::applications::{
    AppPage, ApplicationWrite, Cursor, EventDraft, Expect, ListQuery, NumberAssignment, Refusal,
    Render,
};
use crate::store::{Store, StoreError};

/// The role that may re-route an application whose step left the flow.
const ADMIN: &str = crate::auth::ADMIN;

/// Why an application request was not carried out; `api::error` maps each to its status.
#[derive(Debug, thiserror::Error)]
pub enum ApplicationError {
    #[error("no application `{0}`")]
    NotFound(String),
    /// What the caller lacks (a role at a step, a permit type's scope).
    #[error("{0}")]
    Forbidden(String),
    /// The change was computed from a version that is no longer current.
    #[error("{0}")]
    Conflict(String),
    /// The data fails the permit type's rules; nothing was stored.
    #[error("data is invalid")]
    Invalid {
        errors: Vec<FieldError>,
        release: String,
        /// The language of the runtime's messages in `errors`.
        language: Language,
    },
    /// The step's guard refused to let the application advance, with its message.
    #[error("{0}")]
    GuardRefused(String),
    /// The application waits at a step the active flow no longer has.
    #[error("{0}")]
    StepRemoved(String),
    /// The action is not possible from where the application is (its status or step).
    #[error("{0}")]
    InvalidTransition(String),
    /// A request value is wrong (named in the message).
    #[error("{0}")]
    BadInput(String),
    /// A query parameter is wrong (named in the message).
    #[error("{0}")]
    BadQuery(String),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T, E = ApplicationError> = std::result::Result<T, E>;

/// `POST /v1/applications`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApplication {
    /// The permit type, e.g. `pbg`.
    pub permit: String,
    /// Default `baru`.
    #[serde(default)]
    pub kind: AppKind,
    pub applicant: Applicant,
    #[serde(default = "empty_object")]
    pub data: Json,
    /// When a paper application was received (default: the office's today; not in the future).
    #[serde(default)]
    pub submitted_on: Option<NaiveDate>,
    /// Store it incomplete: missing required fields allowed, no number, not in the flow.
    #[serde(default)]
    pub draft: bool,
}

fn empty_object() -> Json {
    Json::Object(serde_json::Map::new())
}

/// `POST /v1/applications/{id}/transitions`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    pub action: Action,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    pub version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Advance,
    Return,
    Reject,
}

/// `PUT /v1/applications/{id}/data`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DataChange {
    pub data: Json,
    #[serde(default)]
    pub applicant: Option<Applicant>,
    #[serde(default)]
    pub version: Option<u64>,
    #[serde(default)]
    pub note: Option<String>,
}

/// `POST /v1/applications/{id}/submit`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    #[serde(default)]
    pub version: Option<u64>,
}

/// An application as the API shows it: the stored record plus what depends on the active
/// release (`step_due_on`, `step_removed`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApplicationView {
    pub id: String,
    pub permit: String,
    pub kind: AppKind,
    pub registration_number: Option<String>,
    pub submitted_on: Option<NaiveDate>,
    pub status: Status,
    pub step: Option<String>,
    pub step_due_on: Option<NaiveDate>,
    /// Present (and `true`) only when the step is no longer in the active flow.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub step_removed: bool,
    pub version: u64,
    pub applicant: Applicant,
    pub data: Json,
    pub permit_number: Option<String>,
    pub release: String,
    pub external: std::collections::BTreeMap<String, Json>,
    pub history: Vec<HistoryEntry>,
    pub created_at: chrono::DateTime<Utc>,
}

/// A page of `GET /v1/applications`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApplicationList {
    pub applications: Vec<ApplicationView>,
    pub next_cursor: Option<String>,
}

/// Filters of `GET /v1/applications` as the request gave them.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only this permit type.
    pub permit: Option<String>,
    /// `draft`, `in_progress`, `completed` or `rejected`.
    pub status: Option<String>,
    /// Only those at this step.
    pub step: Option<String>,
    /// `baru`, `perubahan` or `perpanjangan`.
    pub kind: Option<String>,
    /// Submitted on or after this date (`YYYY-MM-DD`).
    pub submitted_from: Option<NaiveDate>,
    /// Submitted on or before this date (`YYYY-MM-DD`).
    pub submitted_to: Option<NaiveDate>,
    /// Case-insensitive text in the registration number, permit number or applicant's name.
    pub q: Option<String>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Default and largest page of a list.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

/// How many times a change without a client version is recomputed when a concurrent change
/// got there first.
const RETRIES: usize = 5;

pub struct Applications {
    active: Active,
    store: Store,
    language: Language,
    utc_offset: FixedOffset,
}

impl Applications {
    pub(crate) fn new(
        active: Active,
        store: Store,
        language: Language,
        utc_offset: FixedOffset,
    ) -> Self {
        Self {
            active,
            store,
            language,
            utc_offset,
        }
    }

    /// The office's date now.
    fn today(&self) -> NaiveDate {
        Utc::now().with_timezone(&self.utc_offset).date_naive()
    }

    fn release(&self) -> Result<Arc<Release>> {
        self.active
            .current()
            .ok_or(ApplicationError::Eval(EvalError::NoRelease))
    }

    /// The application `id`, as `who` may see it.
    pub async fn get(&self, who: &Principal, id: &str) -> Result<ApplicationView> {
        let app = self.read(id).await?;
        in_scope(who, &app.permit)?;
        Ok(self.view(&*self.release()?, app))
    }

    /// A page of applications in `who`'s scope, newest first.
    pub async fn list(&self, who: &Principal, params: ListParams) -> Result<ApplicationList> {
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApplicationError::BadQuery(format!(
                "`limit` must be between 1 and {MAX_LIMIT}, not {limit}"
            )));
        }
        if let Some(status) = params
            .status
            .as_deref()
            .filter(|s| !["draft", "in_progress", "completed", "rejected"].contains(s))
        {
            return Err(ApplicationError::BadQuery(format!(
                "`status` `{status}` is not one of draft, in_progress, completed, rejected"
            )));
        }
        if let Some(kind) = params
            .kind
            .as_deref()
            .filter(|k| !["baru", "perubahan", "perpanjangan"].contains(k))
        {
            return Err(ApplicationError::BadQuery(format!(
                "`kind` `{kind}` is not one of baru, perubahan, perpanjangan"
            )));
        }
        let cursor = params
            .cursor
            .as_deref()
            .map(str::parse::<Cursor>)
            .transpose()
            .map_err(ApplicationError::BadQuery)?;
        let scope = match &who.permits {
            PermitScope::All => None,
            PermitScope::Only(set) => Some(set.clone()),
        };
        let query = ListQuery {
            permit: params.permit,
            status: params.status,
            step: params.step,
            kind: params.kind,
            submitted_from: params.submitted_from,
            submitted_to: params.submitted_to,
            q: params.q.filter(|q| !q.trim().is_empty()),
            scope,
            limit,
            cursor,
        };
        let page: AppPage = self
            .store
            .blocking(move |s| s.applications(&query).map_err(ApplicationError::Store))
            .await?;
        let release = self.release()?;
        Ok(ApplicationList {
            applications: page
                .items
                .into_iter()
                .map(|a| self.view(&release, a))
                .collect(),
            next_cursor: page.next_cursor.map(|c| c.to_string()),
        })
    }

    /// Stores a new application: a draft (present fields checked), or submitted (validated in
    /// full, numbered, at the first step of its flow).
    pub async fn create(&self, who: &Principal, req: NewApplication) -> Result<ApplicationView> {
        in_scope(who, &req.permit)?;
        let release = self.release()?;
        let permit = permit_of(&release, &req.permit)?;
        let today = self.today();
        if let Some(on) = req.submitted_on.filter(|on| *on > today) {
            return Err(ApplicationError::BadInput(format!(
                "`submitted_on` {on} is in the future (the office's date is {today})"
            )));
        }
        check_applicant(&req.applicant)?;
        let now = Utc::now();
        let mut app = Application::draft(
            req.permit.clone(),
            req.kind,
            req.applicant,
            req.data,
            release.id.clone(),
            now,
            today,
        );
        app.submitted_on = req.submitted_on;
        let write = if req.draft {
            self.check_draft(&release, &permit, &app.data)?;
            app.created_by(who.actor());
            ApplicationWrite {
                expect: Expect::New,
                record: app,
                numbers: Vec::new(),
                events: Vec::new(),
            }
        } else {
            self.check_full(&release, &permit, &app.data, today).await?;
            let (numbers, events) = submit_into(&mut app, &release, &permit, who, today, now)?;
            ApplicationWrite {
                expect: Expect::New,
                record: app,
                numbers,
                events,
            }
        };
        let stored = self.write(write).await?;
        Ok(self.view(&release, stored))
    }

    /// Submits a draft: validated in full, numbered, at the first step of its flow.
    pub async fn submit(
        &self,
        who: &Principal,
        id: &str,
        req: SubmitRequest,
    ) -> Result<ApplicationView> {
        let app = self.read(id).await?;
        in_scope(who, &app.permit)?;
        expect_version(&app, req.version)?;
        if app.status != Status::Draft {
            return Err(ApplicationError::InvalidTransition(format!(
                "application `{id}` is {}, not a draft: it was submitted already",
                app.status.as_str()
            )));
        }
        let release = self.release()?;
        let permit = permit_of(&release, &app.permit)?;
        let today = self.today();
        self.check_full(&release, &permit, &app.data, today).await?;
        let read_version = app.version;
        let mut next = app;
        next.version += 1;
        let (numbers, events) = submit_into(&mut next, &release, &permit, who, today, Utc::now())?;
        let stored = self
            .write_over(id, read_version, next, numbers, events)
            .await?;
        Ok(self.view(&release, stored))
    }

    /// `advance`, `return` or `reject` at the application's current step.
    pub async fn transition(
        &self,
        who: &Principal,
        id: &str,
        req: TransitionRequest,
    ) -> Result<ApplicationView> {
        let app = self.read(id).await?;
        in_scope(who, &app.permit)?;
        // A client that acted on an older version is told so first, whatever the step is now:
        // of two racing advances, the loser hears `conflict`, not that the step moved on to a
        // role it lacks. Then who may act here; then whether the action is possible from here.
        expect_version(&app, Some(req.version))?;
        let release = self.release()?;
        let permit = permit_of(&release, &app.permit)?;
        let flow = permit.flow();
        let at = app.step.clone().unwrap_or_default();
        let step = flow.step(&at);
        match step {
            _ if app.status != Status::InProgress => {}
            Some(step) => {
                if !who.has_role(&step.role) {
                    return Err(ApplicationError::Forbidden(format!(
                        "role `{}` required at step `{}`",
                        step.role, step.step
                    )));
                }
            }
            None => {
                // The step left the flow: only re-routing by an admin (return to any step of
                // the active flow, or reject) gets the application moving again.
                let rerouting = matches!(req.action, Action::Return | Action::Reject);
                if !rerouting {
                    return Err(ApplicationError::StepRemoved(format!(
                        "step `{at}` of application `{id}` is no longer in the flow of `{}`; an admin may `return` it to a step of the flow or `reject` it",
                        app.permit
                    )));
                }
                if !who.has_role(ADMIN) {
                    return Err(ApplicationError::Forbidden(format!(
                        "role `{ADMIN}` required to re-route from removed step `{at}`"
                    )));
                }
            }
        }
        if app.status != Status::InProgress {
            return Err(ApplicationError::InvalidTransition(format!(
                "application `{id}` is {}: only an application in progress moves through its flow",
                app.status.as_str()
            )));
        }
        let today = self.today();
        let now = Utc::now();
        let read_version = app.version;
        let mut next = app.clone();
        next.version += 1;
        next.release = release.id.clone();
        let mut numbers = Vec::new();
        let mut events = Vec::new();
        let (action, to): (&str, Option<String>) = match req.action {
            Action::Advance => {
                let step = step.ok_or_else(|| {
                    ApplicationError::StepRemoved(format!("step `{at}` is no longer in the flow"))
                })?;
                if let Some(guard) = &step.guard {
                    let view = serde_json::to_value(self.view(&release, app.clone()))
                        .map_err(|e| ApplicationError::Eval(EvalError::Encode(e)))?;
                    if let Some(message) = self
                        .run_guard(&release, &permit, guard, view, today)
                        .await?
                    {
                        return Err(ApplicationError::GuardRefused(message));
                    }
                }
                if step.has_effect(Effect::IssuePermit) {
                    numbers.push(assignment(&permit, NumberKind::Permit, next.kind, today)?);
                    events.push(EventDraft {
                        kind: event::PERMIT_ISSUED.into(),
                        data: json!({}),
                    });
                }
                match flow.next_after(&at) {
                    Some(after) => {
                        next.step = Some(after.step.clone());
                        next.step_entered_on = Some(today);
                        events.insert(
                            0,
                            EventDraft {
                                kind: event::ADVANCED.into(),
                                data: json!({}),
                            },
                        );
                        ("advanced", Some(after.step.clone()))
                    }
                    None => {
                        next.status = Status::Completed;
                        next.step = None;
                        next.step_entered_on = None;
                        events.push(EventDraft {
                            kind: event::COMPLETED.into(),
                            data: json!({}),
                        });
                        ("completed", None)
                    }
                }
            }
            Action::Return => {
                let to = req.to.clone().ok_or_else(|| {
                    ApplicationError::BadInput("`return` needs `to`: the step to return to".into())
                })?;
                let allowed = match step {
                    Some(_) => flow.may_return(&at, &to),
                    None => flow.step(&to).is_some(),
                };
                if !allowed {
                    return Err(ApplicationError::InvalidTransition(format!(
                        "cannot return from step `{at}` to `{to}`: {}",
                        if flow.step(&to).is_none() {
                            "no such step in the flow".to_owned()
                        } else {
                            "it is not an earlier step this step may return to".to_owned()
                        }
                    )));
                }
                next.step = Some(to.clone());
                next.step_entered_on = Some(today);
                events.push(EventDraft {
                    kind: event::RETURNED.into(),
                    data: json!({}),
                });
                ("returned", Some(to))
            }
            Action::Reject => {
                next.status = Status::Rejected;
                next.step = None;
                next.step_entered_on = None;
                events.push(EventDraft {
                    kind: event::REJECTED.into(),
                    data: json!({}),
                });
                ("rejected", None)
            }
        };
        let from = Some(at);
        next.history.push(HistoryEntry {
            at: now,
            by: who.actor(),
            action: action.into(),
            from: from.clone(),
            to: to.clone(),
            note: req.note.clone(),
            release: release.id.clone(),
        });
        let data = event_data(&next, who, from.as_deref(), to.as_deref());
        for e in &mut events {
            e.data = data.clone();
        }
        let stored = self
            .write_over(id, read_version, next, numbers, events)
            .await?;
        Ok(self.view(&release, stored))
    }

    /// Replaces the data (and the applicant, if given) of a draft or an application in
    /// progress; in progress, the new data must pass the rules in full.
    pub async fn change_data(
        &self,
        who: &Principal,
        id: &str,
        req: DataChange,
    ) -> Result<ApplicationView> {
        if let Some(applicant) = &req.applicant {
            check_applicant(applicant)?;
        }
        for attempt in 0..RETRIES {
            let app = self.read(id).await?;
            in_scope(who, &app.permit)?;
            expect_version(&app, req.version)?;
            if !matches!(app.status, Status::Draft | Status::InProgress) {
                return Err(ApplicationError::InvalidTransition(format!(
                    "application `{id}` is {}: its data can no longer change",
                    app.status.as_str()
                )));
            }
            let release = self.release()?;
            let permit = permit_of(&release, &app.permit)?;
            let today = self.today();
            if app.status == Status::Draft {
                self.check_draft(&release, &permit, &req.data)?;
            } else {
                self.check_full(&release, &permit, &req.data, today).await?;
            }
            let read_version = app.version;
            let mut next = app;
            next.version += 1;
            next.release = release.id.clone();
            next.data = req.data.clone();
            if let Some(applicant) = &req.applicant {
                next.applicant = applicant.clone();
            }
            next.history.push(HistoryEntry {
                at: Utc::now(),
                by: who.actor(),
                action: "data_changed".into(),
                from: next.step.clone(),
                to: next.step.clone(),
                note: req.note.clone(),
                release: release.id.clone(),
            });
            let step = next.step.clone();
            let data = event_data(&next, who, step.as_deref(), step.as_deref());
            let events = vec![EventDraft {
                kind: event::DATA_CHANGED.into(),
                data,
            }];
            match self
                .write_over(id, read_version, next, Vec::new(), events)
                .await
            {
                // Without a client version, a change that lost a race is recomputed on the
                // newer record; with one, the client must see the newer record first.
                Err(ApplicationError::Conflict(_))
                    if req.version.is_none() && attempt + 1 < RETRIES =>
                {
                    continue
                }
                other => return other.map(|stored| self.view(&release, stored)),
            }
        }
        Err(ApplicationError::Conflict(format!(
            "application `{id}` kept changing; retry"
        )))
    }

    async fn read(&self, id: &str) -> Result<Application> {
        let key = id.to_owned();
        self.store
            .blocking(move |s| s.application(&key).map_err(ApplicationError::Store))
            .await?
            .ok_or_else(|| ApplicationError::NotFound(id.to_owned()))
    }

    /// Writes `record` over application `id` if it is still at `read_version` (the version the
    /// change was computed from), with the numbers and events of the change.
    async fn write_over(
        &self,
        id: &str,
        read_version: u64,
        record: Application,
        numbers: Vec<NumberAssignment>,
        events: Vec<EventDraft>,
    ) -> Result<Application> {
        self.write(ApplicationWrite {
            expect: Expect::Version {
                seq: seq_of(id)?,
                version: read_version,
            },
            record,
            numbers,
            events,
        })
        .await
    }

    async fn write(&self, write: ApplicationWrite) -> Result<Application> {
        match self.store.write_application(write).await? {
            Ok(app) => Ok(app),
            Err(Refusal::NotFound(id)) => Err(ApplicationError::NotFound(id)),
            Err(r @ (Refusal::Conflict { .. } | Refusal::Exists { .. })) => Err(
                ApplicationError::Conflict(format!("{r}: it changed since; read it again")),
            ),
        }
    }

    /// Present fields are checked (types, bounds, patterns, unknown fields); missing required
    /// ones, the document checklist and `validate.rhai` wait for the submission.
    fn check_draft(&self, release: &Release, permit: &Permit, data: &Json) -> Result<()> {
        let Some(object) = data.as_object() else {
            return Err(ApplicationError::Invalid {
                errors: vec![FieldError::new(
                    "data",
                    Problem::NotObject.text(self.language),
                )],
                release: release.id.clone(),
                language: self.language,
            });
        };
        let required = Problem::Required.text(self.language);
        let (_, errors) = check_record(&permit.fields, object, "", self.language);
        let errors: Vec<FieldError> = errors
            .into_iter()
            .filter(|e| e.message != required)
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApplicationError::Invalid {
                errors,
                release: release.id.clone(),
                language: self.language,
            })
        }
    }

    /// The permit type's rules in full (field checks, documents, `validate.rhai`), on the
    /// blocking pool like every evaluation.
    async fn check_full(
        &self,
        release: &Arc<Release>,
        permit: &Arc<Permit>,
        data: &Json,
        today: NaiveDate,
    ) -> Result<()> {
        let (release, permit, data, language) =
            (release.clone(), permit.clone(), data.clone(), self.language);
        let outcome = tokio::task::spawn_blocking(move || {
            let context = CallContext::on(today);
            pipeline::check(
                &permit,
                &release.host,
                &context,
                &data,
                &permit.script_params,
                language,
            )
            .map(|checked| checked.err())
            .map(|errors| (errors, release.id.clone()))
        })
        .await
        .map_err(|e| ApplicationError::Eval(EvalError::Crashed(e)))?
        .map_err(|e| ApplicationError::Eval(EvalError::Script(e)))?;
        match outcome {
            (None, _) => Ok(()),
            (Some(errors), release) => Err(ApplicationError::Invalid {
                errors,
                release,
                language: self.language,
            }),
        }
    }

    async fn run_guard(
        &self,
        release: &Arc<Release>,
        permit: &Arc<Permit>,
        guard: &str,
        app: Json,
        today: NaiveDate,
    ) -> Result<Option<String>> {
        let (release, permit, guard) = (release.clone(), permit.clone(), guard.to_owned());
        tokio::task::spawn_blocking(move || {
            let context = CallContext::on(today);
            pipeline::guard(&permit, &release.host, &guard, &app, &context)
        })
        .await
        .map_err(|e| ApplicationError::Eval(EvalError::Crashed(e)))?
        .map_err(|e| ApplicationError::Eval(EvalError::Script(e)))
    }

    /// The API's view of `app` under `release`.
    pub fn view(&self, release: &Release, app: Application) -> ApplicationView {
        let step = release.permits.get(&app.permit).and_then(|p| {
            app.step
                .as_deref()
                .and_then(|key| p.flow().step(key).cloned())
        });
        let in_flow = app.status == Status::InProgress;
        let step_removed = in_flow && app.step.is_some() && step.is_none();
        let step_due_on = match (in_flow, &step, app.step_entered_on) {
            (
                true,
                Some(Step {
                    sla_days: Some(days),
                    ..
                }),
                Some(entered),
            ) => Some(release.calendar().add_working_days(entered, *days)),
            _ => None,
        };
        ApplicationView {
            id: app.id,
            permit: app.permit,
            kind: app.kind,
            registration_number: app.registration_number,
            submitted_on: app.submitted_on,
            status: app.status,
            step: app.step,
            step_due_on,
            step_removed,
            version: app.version,
            applicant: app.applicant,
            data: app.data,
            permit_number: app.permit_number,
            release: app.release,
            external: app.external,
            history: app.history,
            created_at: app.created_at,
        }
    }

    /// Events after `after`, at most `limit`; `next` is the `after` of the following call.
    pub async fn events(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<crate::store::applications::EventRecord>, u64)> {
        let events = self
            .store
            .blocking(move |s| s.events(after, limit).map_err(ApplicationError::Store))
            .await?;
        let next = events.last().map_or(after, |e| e.seq);
        Ok((events, next))
    }
}

/// Puts a (draft or new) application into the flow: submitted today unless the office received
/// it earlier, registration number assigned (today's counter), first step entered today.
fn submit_into(
    app: &mut Application,
    release: &Release,
    permit: &Permit,
    who: &Principal,
    today: NaiveDate,
    now: chrono::DateTime<Utc>,
) -> Result<(Vec<NumberAssignment>, Vec<EventDraft>)> {
    let first = permit.flow().first().ok_or_else(|| {
        ApplicationError::InvalidTransition(format!(
            "permit type `{}` has no flow in release {}: it takes no applications",
            permit.id, release.id
        ))
    })?;
    app.status = Status::InProgress;
    app.step = Some(first.step.clone());
    app.step_entered_on = Some(today);
    app.submitted_on = Some(app.submitted_on.unwrap_or(today));
    app.release = release.id.clone();
    app.history.push(HistoryEntry {
        at: now,
        by: who.actor(),
        action: "submitted".into(),
        from: None,
        to: Some(first.step.clone()),
        note: None,
        release: release.id.clone(),
    });
    let numbers = vec![assignment(
        permit,
        NumberKind::Registration,
        app.kind,
        today,
    )?];
    let events = vec![EventDraft {
        kind: event::SUBMITTED.into(),
        data: event_data(app, who, None, Some(&first.step)),
    }];
    Ok((numbers, events))
}

/// The next number of `number` for an application of `kind`, rendered on `today` (the
/// assignment date: its year picks the counter).
fn assignment(
    permit: &Permit,
    number: NumberKind,
    kind: AppKind,
    today: NaiveDate,
) -> Result<NumberAssignment> {
    use chrono::Datelike;
    let numbering = permit.numbering();
    let (format_key, format) = numbering.format(number, kind.as_str()).ok_or_else(|| {
        ApplicationError::InvalidTransition(format!(
            "permit type `{}` has no {} number format for kind `{}`",
            permit.id,
            number.as_str(),
            kind.as_str()
        ))
    })?;
    let (format, code) = (format.clone(), numbering.code().clone());
    Ok(NumberAssignment {
        kind: number,
        permit: permit.id.clone(),
        format: format_key.to_owned(),
        year: today.year(),
        render: Render(Arc::new(move |seq| format.render(seq, today, &code))),
    })
}

pub use external::{connector_actor, json_object, DraftPlan, MAX_DRAFT_KEY_BYTES, MAX_NOTE_BYTES};

/// What a connector needs to know of a change.
fn event_data(app: &Application, who: &Principal, from: Option<&str>, to: Option<&str>) -> Json {
    event_data_by(app, &who.actor(), from, to)
}

/// [`event_data`] for a change by `by` (a user, a token or a connector).
fn event_data_by(app: &Application, by: &str, from: Option<&str>, to: Option<&str>) -> Json {
    json!({
        "permit": app.permit,
        "kind": app.kind,
        "status": app.status,
        "step": app.step,
        "from": from,
        "to": to,
        "registration_number": app.registration_number,
        "permit_number": app.permit_number,
        "by": by,
        "version": app.version,
    })
}

fn in_scope(who: &Principal, permit: &str) -> Result<()> {
    if who.may_handle(permit) {
        Ok(())
    } else {
        Err(ApplicationError::Forbidden(format!(
            "no access to permit type `{permit}`"
        )))
    }
}

fn permit_of(release: &Release, id: &str) -> Result<Arc<Permit>> {
    release
        .permits
        .get(id)
        .cloned()
        .ok_or_else(|| ApplicationError::Eval(EvalError::UnknownPermit(id.to_owned())))
}

fn expect_version(app: &Application, version: Option<u64>) -> Result<()> {
    match version {
        Some(v) if v != app.version => Err(ApplicationError::Conflict(format!(
            "application `{}` is at version {}, not {v}: it changed since; read it again",
            app.id, app.version
        ))),
        _ => Ok(()),
    }
}

fn seq_of(id: &str) -> Result<u64> {
    crate::domain::application::app_seq(id).ok_or_else(|| ApplicationError::NotFound(id.to_owned()))
}

fn check_applicant(applicant: &Applicant) -> Result<()> {
    if applicant.name.trim().is_empty() {
        return Err(ApplicationError::BadInput(
            "`applicant.name` is required".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::release::SourceTree;

    const FLOW_RHAI: &str = r#"fn ada_nik(app, params) {
    if app.applicant.nik == () { return "NIK belum diisi"; }
    ()
}
"#;

    fn permit_toml(steps: &[(&str, &str, &str)]) -> String {
        let mut toml = String::from(
            "name = \"Uji\"\n[[fields]]\nname = \"x\"\ntype = \"decimal\"\nrequired = true\n\n[numbering]\nregistration = \"REG/{YYYY}/{NNN}\"\npermit = \"IZN/{NNN}/{MM}/{YYYY}\"\n[numbering.perpanjangan]\npermit = \"IZN-P/{NNN}/{YYYY}\"\n",
        );
        for (step, role, extra) in steps {
            toml.push_str(&format!(
                "\n[[flow]]\nstep = \"{step}\"\nlabel = \"{step}\"\nrole = \"{role}\"\nsla_days = 2\n{extra}\n"
            ));
        }
        toml
    }

    fn release(steps: &[(&str, &str, &str)]) -> Release {
        let files = [
            ("uji/permit.toml".to_owned(), permit_toml(steps)),
            ("uji/flow.rhai".to_owned(), FLOW_RHAI.to_owned()),
        ];
        match crate::release::build(
            SourceTree::from_files(files.into_iter().collect()),
            &Limits::default(),
        ) {
            Ok(r) => r,
            Err(report) => panic!("{:?}", report.diagnostics),
        }
    }

    const FULL: &[(&str, &str, &str)] = &[
        ("periksa", "front_office", "guard = \"ada_nik\""),
        ("tetapkan", "kepala_dinas", "effects = [\"issue_permit\"]"),
        ("serahkan", "front_office", ""),
    ];

    fn who(user: &str, roles: &[&str]) -> Principal {
        Principal {
            token_id: format!("t-{user}"),
            user: Some(user.to_owned()),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            permits: PermitScope::All,
        }
    }

    fn service(dir: &std::path::Path, r: Release) -> (Applications, Active) {
        let store = Store::open(dir, 64).unwrap();
        let active = Active::default();
        active.set(r);
        let utc = FixedOffset::east_opt(7 * 3600).unwrap();
        (
            Applications::new(active.clone(), store, Language::Id, utc),
            active,
        )
    }

    fn new_app(nik: Option<&str>, kind: AppKind) -> NewApplication {
        NewApplication {
            permit: "uji".into(),
            kind,
            applicant: Applicant {
                name: "Ani".into(),
                nik: nik.map(str::to_owned),
                ..Applicant::default()
            },
            data: json!({ "x": "5" }),
            submitted_on: None,
            draft: false,
        }
    }

    fn act(action: Action, to: Option<&str>, version: u64) -> TransitionRequest {
        TransitionRequest {
            action,
            to: to.map(str::to_owned),
            note: None,
            version,
        }
    }

    #[tokio::test]
    async fn guards_refuse_and_the_permit_number_uses_the_kind_s_own_counter() {
        let dir = tempfile::tempdir().unwrap();
        let (apps, _) = service(dir.path(), release(FULL));
        let fo = who("fo", &["front_office"]);
        let kd = who("kd", &["kepala_dinas"]);
        let year = apps.today().format("%Y").to_string();

        let a = apps
            .create(&fo, new_app(None, AppKind::Baru))
            .await
            .unwrap();
        assert_eq!(a.registration_number, Some(format!("REG/{year}/001")));
        let err = apps
            .transition(&fo, &a.id, act(Action::Advance, None, 1))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ApplicationError::GuardRefused(m) if m == "NIK belum diisi"),
            "{err:?}"
        );
        // Nothing changed: still version 1 at the first step.
        let still = apps.get(&fo, &a.id).await.unwrap();
        assert_eq!((still.version, still.step.as_deref()), (1, Some("periksa")));

        let b = apps
            .create(&fo, new_app(Some("1871"), AppKind::Perpanjangan))
            .await
            .unwrap();
        assert_eq!(b.registration_number, Some(format!("REG/{year}/002")));
        let b = apps
            .transition(&fo, &b.id, act(Action::Advance, None, 1))
            .await
            .unwrap();
        let err = apps
            .transition(&fo, &b.id, act(Action::Advance, None, 2))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ApplicationError::Forbidden(m) if m == "role `kepala_dinas` required at step `tetapkan`"),
            "{err:?}"
        );
        let b = apps
            .transition(&kd, &b.id, act(Action::Advance, None, 2))
            .await
            .unwrap();
        // The perpanjangan format, from its own counter.
        assert_eq!(b.permit_number, Some(format!("IZN-P/001/{year}")));
        assert_eq!(b.step.as_deref(), Some("serahkan"));
        let (events, next) = apps.events(0, 100).await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                event::SUBMITTED,
                event::SUBMITTED,
                event::ADVANCED,
                event::ADVANCED,
                event::PERMIT_ISSUED
            ]
        );
        assert_eq!(next, 5);
        assert_eq!(
            events[4].data["permit_number"],
            json!(format!("IZN-P/001/{year}"))
        );
        assert_eq!(events[4].data["from"], "tetapkan");
        assert_eq!(events[4].data["by"], "kd");

        // A return must go to an earlier step.
        let err = apps
            .transition(&fo, &b.id, act(Action::Return, Some("serahkan"), 3))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ApplicationError::InvalidTransition(_)),
            "{err:?}"
        );
        let back = apps
            .transition(&fo, &b.id, act(Action::Return, Some("periksa"), 3))
            .await
            .unwrap();
        assert_eq!(back.step.as_deref(), Some("periksa"));
        let h = back.history.last().unwrap();
        assert_eq!(
            (h.action.as_str(), h.from.as_deref(), h.to.as_deref()),
            ("returned", Some("serahkan"), Some("periksa"))
        );
    }

    #[tokio::test]
    async fn a_removed_step_holds_the_application_until_an_admin_reroutes_it() {
        let dir = tempfile::tempdir().unwrap();
        let (apps, active) = service(dir.path(), release(FULL));
        let fo = who("fo", &["front_office"]);
        let kd = who("kd", &["kepala_dinas"]);
        let a = apps
            .create(&fo, new_app(Some("1871"), AppKind::Baru))
            .await
            .unwrap();
        let a = apps
            .transition(&fo, &a.id, act(Action::Advance, None, 1))
            .await
            .unwrap();
        assert_eq!(a.step.as_deref(), Some("tetapkan"));
        assert!(a.step_due_on.is_some());

        // A new release without `tetapkan`.
        let shorter = release(&[
            ("periksa", "front_office", "guard = \"ada_nik\""),
            ("serahkan", "front_office", ""),
        ]);
        let shorter_id = shorter.id.clone();
        active.set(shorter);
        let held = apps.get(&fo, &a.id).await.unwrap();
        assert!(held.step_removed);
        assert_eq!(held.step_due_on, None);
        assert_eq!(held.step.as_deref(), Some("tetapkan"));
        let shown = serde_json::to_value(&held).unwrap();
        assert_eq!(shown["step_removed"], true);

        let err = apps
            .transition(&kd, &a.id, act(Action::Advance, None, 2))
            .await
            .unwrap_err();
        assert!(matches!(err, ApplicationError::StepRemoved(_)), "{err:?}");
        let err = apps
            .transition(&fo, &a.id, act(Action::Return, Some("periksa"), 2))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ApplicationError::Forbidden(m) if m.contains("`admin`")),
            "{err:?}"
        );
        let admin = who("root", &["admin"]);
        let moved = apps
            .transition(&admin, &a.id, act(Action::Return, Some("serahkan"), 2))
            .await
            .unwrap();
        assert_eq!(moved.step.as_deref(), Some("serahkan"));
        assert!(!moved.step_removed);
        assert_eq!(moved.release, shorter_id);
        assert_eq!(moved.history.last().unwrap().release, shorter_id);
        // Shown without the flag once it is back in the flow.
        let shown = serde_json::to_value(&moved).unwrap();
        assert!(shown.get("step_removed").is_none(), "{shown}");
    }

    #[tokio::test]
    async fn drafts_check_present_fields_only_and_submit_validates_in_full() {
        let dir = tempfile::tempdir().unwrap();
        let (apps, _) = service(dir.path(), release(FULL));
        let fo = who("fo", &["front_office"]);
        let mut req = new_app(None, AppKind::Baru);
        req.draft = true;
        req.data = json!({});
        let d = apps.create(&fo, req.clone()).await.unwrap();
        assert_eq!(d.status, Status::Draft);
        assert_eq!(d.registration_number, None);
        req.data = json!({ "x": "banyak" });
        let err = apps.create(&fo, req).await.unwrap_err();
        assert!(
            matches!(&err, ApplicationError::Invalid { errors, .. } if errors[0].field == "x"),
            "{err:?}"
        );
        let err = apps
            .submit(&fo, &d.id, SubmitRequest::default())
            .await
            .unwrap_err();
        assert!(matches!(err, ApplicationError::Invalid { .. }), "{err:?}");
        let changed = apps
            .change_data(
                &fo,
                &d.id,
                DataChange {
                    data: json!({ "x": "3" }),
                    applicant: None,
                    version: None,
                    note: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(changed.version, 2);
        let s = apps
            .submit(&fo, &d.id, SubmitRequest { version: Some(2) })
            .await
            .unwrap();
        assert_eq!(s.status, Status::InProgress);
        assert_eq!(s.submitted_on, Some(apps.today()));
        assert!(s.registration_number.is_some());
        // A paper application dated tomorrow is refused.
        let mut future = new_app(None, AppKind::Baru);
        future.submitted_on = apps.today().succ_opt();
        let err = apps.create(&fo, future).await.unwrap_err();
        assert!(
            matches!(&err, ApplicationError::BadInput(m) if m.contains("submitted_on")),
            "{err:?}"
        );
        // Out of scope.
        let mut sip_only = who("x", &["front_office"]);
        sip_only.permits = PermitScope::Only(["sip".to_owned()].into_iter().collect());
        let err = apps.get(&sip_only, &d.id).await.unwrap_err();
        assert!(
            matches!(&err, ApplicationError::Forbidden(m) if m == "no access to permit type `uji`"),
            "{err:?}"
        );
        let list = apps.list(&sip_only, ListParams::default()).await.unwrap();
        assert!(list.applications.is_empty());
    }
}
