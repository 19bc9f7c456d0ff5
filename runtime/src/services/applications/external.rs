//! Changes that outside systems ask for through connectors: a draft created once per connector
//! and idempotency key, references merged into `external[<connector>]`, notes in the history.
//! They follow the same rules as staff changes (the active release's field rules, one
//! conditional write with its events); the actor in the history is `connector:<name>`.

use chrono::Utc;
use serde_json::{Map, Value as Json};

use super::{event_data_by, permit_of, seq_of, ApplicationError, Applications, Result, RETRIES};
use crate::connectors::Draft;
use crate::domain::application::{event, AppKind, Applicant, Application, HistoryEntry};
use crate::release::Release;
use crate::store::applications::{ApplicationWrite, EventDraft, Expect, Refusal};

/// Longest idempotency key a connector may give a draft, in bytes.
pub const MAX_DRAFT_KEY_BYTES: usize = 256;
/// Longest note a connector may add, in bytes.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;

/// The history's actor for a connector.
pub fn connector_actor(connector: &str) -> String {
    format!("connector:{connector}")
}

/// What a connector's draft becomes before it is written.
#[derive(Debug, Clone)]
pub struct DraftPlan {
    pub key: String,
    pub record: Application,
}

impl Applications {
    /// Checks a draft as `POST /v1/applications` with `"draft": true` checks one (the permit
    /// type exists; present fields pass the field rules of `release`), and returns the record to
    /// write. The error names what is wrong.
    pub(crate) fn plan_draft(
        &self,
        release: &Release,
        connector: &str,
        draft: &Draft,
    ) -> std::result::Result<DraftPlan, String> {
        let Draft {
            key,
            permit,
            kind,
            applicant,
            data,
            external,
        } = draft;
        if key.is_empty() || key.len() > MAX_DRAFT_KEY_BYTES {
            return Err(format!(
                "`key` must be 1 to {MAX_DRAFT_KEY_BYTES} bytes, not {}",
                key.len()
            ));
        }
        let permit = permit_of(release, permit).map_err(|_| {
            format!(
                "no permit type `{permit}` in release {} (`permit`)",
                release.id
            )
        })?;
        let kind = match kind.as_deref() {
            None => AppKind::Baru,
            Some(k) => serde_json::from_value(Json::String(k.to_owned()))
                .map_err(|_| format!("`kind` `{k}` is not one of baru, perubahan, perpanjangan"))?,
        };
        let applicant: Applicant = serde_json::from_str(applicant)
            .map_err(|e| format!("`applicant` is not an applicant object: {e}"))?;
        if applicant.name.trim().is_empty() {
            return Err("`applicant.name` is required".into());
        }
        let data: Json =
            serde_json::from_str(data).map_err(|e| format!("`data` is not JSON: {e}"))?;
        match self.check_draft(release, &permit, &data) {
            Ok(()) => {}
            Err(ApplicationError::Invalid { errors, .. }) => {
                let listed: Vec<String> = errors
                    .iter()
                    .map(|e| format!("`{}`: {}", e.field, e.message))
                    .collect();
                return Err(format!("`data` is invalid: {}", listed.join("; ")));
            }
            Err(e) => return Err(format!("`data`: {e}")),
        }
        let external = json_object(external, "external")?;
        let now = Utc::now();
        let today = self.today();
        let mut record = Application::draft(
            permit.id.clone(),
            kind,
            applicant,
            data,
            release.id.clone(),
            now,
            today,
        );
        record
            .external
            .insert(connector.to_owned(), Json::Object(external));
        record.created_by(connector_actor(connector));
        Ok(DraftPlan {
            key: key.to_owned(),
            record,
        })
    }

    /// Writes a planned draft unless `connector` created one with its key before; returns the
    /// application's id and whether it was created now. The key is recorded in the same
    /// transaction as the application.
    pub(crate) async fn create_draft_once(
        &self,
        connector: &str,
        plan: DraftPlan,
    ) -> Result<(String, bool)> {
        let write = ApplicationWrite {
            expect: Expect::Once {
                connector: connector.to_owned(),
                key: plan.key,
            },
            record: plan.record,
            numbers: Vec::new(),
            events: Vec::new(),
        };
        match self.store.write_application(write).await? {
            Ok(app) => Ok((app.id, true)),
            Err(Refusal::Exists { id, .. }) => Ok((id, false)),
            Err(Refusal::NotFound(id)) => Err(ApplicationError::NotFound(id)),
            Err(r @ Refusal::Conflict { .. }) => Err(ApplicationError::Conflict(r.to_string())),
        }
    }

    /// The id of the application `connector` created with `key`, if any.
    pub(crate) async fn draft_by_key(&self, connector: &str, key: &str) -> Result<Option<String>> {
        let (connector, key) = (connector.to_owned(), key.to_owned());
        self.store
            .blocking(move |s| {
                s.connector_draft(&connector, &key)
                    .map_err(ApplicationError::Store)
            })
            .await
    }

    /// Application `id` whatever its permit type (connectors act for the office, not a user).
    pub(crate) async fn read_any(&self, id: &str) -> Result<Application> {
        self.read(id).await
    }

    /// Whether application `id` exists.
    pub(crate) async fn exists(&self, id: &str) -> Result<bool> {
        match self.read(id).await {
            Ok(_) => Ok(true),
            Err(ApplicationError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Merges `value` into `external[<connector>]` of application `id` (its keys replace the
    /// same keys there), with an `application.external_changed` event.
    pub(crate) async fn attach_external(
        &self,
        connector: &str,
        id: &str,
        value: Map<String, Json>,
    ) -> Result<()> {
        self.change_by_connector(
            id,
            |app| {
                let mut merged = match app.external.remove(connector) {
                    Some(Json::Object(old)) => old,
                    _ => Map::new(),
                };
                merged.extend(value.clone());
                app.external
                    .insert(connector.to_owned(), Json::Object(merged));
                ("external_changed", None, event::EXTERNAL_CHANGED)
            },
            connector,
        )
        .await
    }

    /// Adds `text` to the history of application `id`, with an `application.note_added` event.
    pub(crate) async fn add_note(&self, connector: &str, id: &str, text: &str) -> Result<()> {
        self.change_by_connector(
            id,
            |_| ("note", Some(text.to_owned()), event::NOTE_ADDED),
            connector,
        )
        .await
    }

    /// Applies `change` to the newest version of application `id` and writes it over that
    /// version, recomputing it when another change got there first. `change` returns the
    /// history action, its note and the event type.
    async fn change_by_connector(
        &self,
        id: &str,
        change: impl Fn(&mut Application) -> (&'static str, Option<String>, &'static str),
        connector: &str,
    ) -> Result<()> {
        let by = connector_actor(connector);
        for attempt in 0..RETRIES {
            let app = self.read(id).await?;
            let release = self.release()?;
            let read_version = app.version;
            let mut next = app;
            next.version += 1;
            let (action, note, kind) = change(&mut next);
            next.history.push(HistoryEntry {
                at: Utc::now(),
                by: by.clone(),
                action: action.into(),
                from: next.step.clone(),
                to: next.step.clone(),
                note: note.clone(),
                release: release.id.clone(),
            });
            let step = next.step.clone();
            let mut data = event_data_by(&next, &by, step.as_deref(), step.as_deref());
            if let Json::Object(map) = &mut data {
                map.insert("connector".into(), Json::String(connector.to_owned()));
                if let Some(note) = note {
                    map.insert("note".into(), Json::String(note));
                }
            }
            let events = vec![EventDraft {
                kind: kind.into(),
                data,
            }];
            let write = ApplicationWrite {
                expect: Expect::Version {
                    seq: seq_of(id)?,
                    version: read_version,
                },
                record: next,
                numbers: Vec::new(),
                events,
            };
            match self.store.write_application(write).await? {
                Ok(_) => return Ok(()),
                Err(Refusal::Conflict { .. }) if attempt + 1 < RETRIES => continue,
                Err(Refusal::NotFound(id)) => return Err(ApplicationError::NotFound(id)),
                Err(r) => return Err(ApplicationError::Conflict(r.to_string())),
            }
        }
        Err(ApplicationError::Conflict(format!(
            "application `{id}` kept changing; retry"
        )))
    }
}

/// `text` as a JSON object, or what is wrong with it (naming `what`).
pub fn json_object(text: &str, what: &str) -> std::result::Result<Map<String, Json>, String> {
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "`{what}` must be a JSON object, not {}",
            match other {
                Json::Null => "null",
                Json::Bool(_) => "a boolean",
                Json::Number(_) => "a number",
                Json::String(_) => "a string",
                Json::Array(_) => "an array",
                Json::Object(_) => "an object",
            }
        )),
        Err(e) => Err(format!("`{what}` is not JSON: {e}")),
    }
}
