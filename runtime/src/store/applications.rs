//! Applications, their list indexes, the numbering counters and the event outbox.
//!
//! Every change to an application is one [`ApplicationWrite`]: a conditional operation that the
//! writer applies inside the shared group-commit transaction. It checks everything first (the
//! record exists, its version is the one the change was computed from) and only then writes:
//! the counters it needs, the record, its index entries and its events. A refused write changes
//! nothing and does not fail the other writes of its batch; a committed one has its numbers and
//! its events in the same transaction, so numbers are gap-free and every change has its event,
//! whatever crashes.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use redb::{ReadableDatabase, ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{
    decode, encode, guarded, StoreError, APPLICATIONS, APPLICATION_INDEX, CONNECTOR_DRAFTS,
    COUNTERS, EVENTS, MAX_PAGE_BYTES,
};
use crate::domain::application::{app_id, app_seq, Application};
pub use crate::domain::numbering::NumberKind;

/// Turns a counter value into the number's text (the permit type's numbering format, rendered
/// on the assignment date). Kept opaque so the store needs no knowledge of formats.
#[derive(Clone)]
pub struct Render(pub Arc<dyn Fn(u64) -> String + Send + Sync>);

impl fmt::Debug for Render {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Render(..)")
    }
}

/// A number the write assigns: the next value of its counter, rendered.
#[derive(Debug, Clone)]
pub struct NumberAssignment {
    pub kind: NumberKind,
    pub permit: String,
    /// `default`, or the application kind whose own format was used.
    pub format: String,
    /// Year of the assignment date: counters restart every year.
    pub year: i32,
    pub render: Render,
}

/// An event to append with the change. `registration_number` and `permit_number` are filled in
/// from the written record (numbers are only known inside the transaction).
#[derive(Debug, Clone)]
pub struct EventDraft {
    pub kind: String,
    pub data: Json,
}

/// What a change expects to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A new application: the store gives it the next id.
    New,
    /// A new application created by `connector` under its idempotency `key`, unless one was
    /// created under that key before (then nothing is written: [`Refusal::Exists`]). The key is
    /// recorded in `connector_drafts` in the same transaction as the application.
    Once { connector: String, key: String },
    /// The application with this id at exactly this version.
    Version { seq: u64, version: u64 },
}

/// One conditional change of one application.
#[derive(Debug, Clone)]
pub struct ApplicationWrite {
    pub expect: Expect,
    /// The application after the change (its `id` is set by the store for a new one).
    pub record: Application,
    pub numbers: Vec<NumberAssignment>,
    pub events: Vec<EventDraft>,
}

/// Why a conditional change was refused; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no application `{0}`")]
    NotFound(String),
    #[error("application `{id}` is at version {current}, not {expected}")]
    Conflict {
        id: String,
        expected: u64,
        current: u64,
    },
    /// An [`Expect::Once`] whose key was used before: the application it created.
    #[error("connector `{connector}` created application `{id}` with key `{key}` already")]
    Exists {
        connector: String,
        key: String,
        id: String,
    },
}

/// The outcome of an [`ApplicationWrite`]: the stored application, or why nothing was written.
pub type WriteOutcome = Result<Application, Refusal>;

/// One event of the outbox as `GET /admin/events` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventRecord {
    #[serde(default)]
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub application: String,
    pub at: DateTime<Utc>,
    pub data: Json,
}

// Index facets: each application has one entry per facet, keyed
// (facet, value, list date, sequence), so that a filtered, newest-first page is one range read.
const ALL: &str = "all";
const BY_PERMIT: &str = "permit";
const BY_STATUS: &str = "status";
const BY_STEP: &str = "step";
const BY_KIND: &str = "kind";

type IndexKey = (String, String, String, u64);

fn index_keys(seq: u64, app: &Application) -> Vec<IndexKey> {
    let date = app.list_date().to_string();
    let mut keys = vec![
        (ALL.to_owned(), String::new(), date.clone(), seq),
        (BY_PERMIT.to_owned(), app.permit.clone(), date.clone(), seq),
        (
            BY_STATUS.to_owned(),
            app.status.as_str().to_owned(),
            date.clone(),
            seq,
        ),
        (
            BY_KIND.to_owned(),
            app.kind.as_str().to_owned(),
            date.clone(),
            seq,
        ),
    ];
    if let Some(step) = &app.step {
        keys.push((BY_STEP.to_owned(), step.clone(), date, seq));
    }
    keys
}

type CounterTable<'t> = Table<'t, (&'static str, &'static str, &'static str, i32), u64>;

fn counter_value(counters: &CounterTable<'_>, n: &NumberAssignment) -> Result<u64, StoreError> {
    Ok(counters
        .get((
            n.kind.as_str(),
            n.permit.as_str(),
            n.format.as_str(),
            n.year,
        ))?
        .map_or(0, |v| v.value()))
}

/// Applies one conditional change inside the writer's transaction. Every check comes before
/// the first write, so a refusal leaves the transaction as it found it.
pub(super) fn apply(
    txn: &WriteTransaction,
    w: &ApplicationWrite,
) -> Result<WriteOutcome, StoreError> {
    let mut apps = txn.open_table(APPLICATIONS)?;
    // Checks.
    let (seq, old) = match &w.expect {
        Expect::New => (apps.last()?.map_or(1, |(k, _)| k.value() + 1), None),
        Expect::Once { connector, key } => {
            let drafts = txn.open_table(CONNECTOR_DRAFTS)?;
            if let Some(seq) = drafts.get((connector.as_str(), key.as_str()))? {
                return Ok(Err(Refusal::Exists {
                    connector: connector.clone(),
                    key: key.clone(),
                    id: app_id(seq.value()),
                }));
            }
            (apps.last()?.map_or(1, |(k, _)| k.value() + 1), None)
        }
        &Expect::Version { seq, version } => {
            let Some(bytes) = apps.get(seq)? else {
                return Ok(Err(Refusal::NotFound(app_id(seq))));
            };
            let old: Application = decode("applications", bytes.value())?;
            if old.version != version {
                return Ok(Err(Refusal::Conflict {
                    id: old.id,
                    expected: version,
                    current: old.version,
                }));
            }
            (seq, Some(old))
        }
    };
    // Writes.
    let mut record = w.record.clone();
    record.id = app_id(seq);
    if let Expect::Once { connector, key } = &w.expect {
        txn.open_table(CONNECTOR_DRAFTS)?
            .insert((connector.as_str(), key.as_str()), seq)?;
    }
    {
        let mut counters = txn.open_table(COUNTERS)?;
        for n in &w.numbers {
            let next = counter_value(&counters, n)? + 1;
            counters.insert(
                (
                    n.kind.as_str(),
                    n.permit.as_str(),
                    n.format.as_str(),
                    n.year,
                ),
                next,
            )?;
            let text = (n.render.0)(next);
            match n.kind {
                NumberKind::Registration => record.registration_number = Some(text),
                NumberKind::Permit => record.permit_number = Some(text),
            }
        }
    }
    apps.insert(seq, encode(&record)?.as_slice())?;
    {
        let mut index = txn.open_table(APPLICATION_INDEX)?;
        if let Some(old) = &old {
            for (f, v, d, s) in index_keys(seq, old) {
                index.remove((f.as_str(), v.as_str(), d.as_str(), s))?;
            }
        }
        for (f, v, d, s) in index_keys(seq, &record) {
            index.insert((f.as_str(), v.as_str(), d.as_str(), s), ())?;
        }
    }
    if !w.events.is_empty() {
        let mut events = txn.open_table(EVENTS)?;
        let at = record.history.last().map_or_else(Utc::now, |h| h.at);
        let first = events.last()?.map_or(1, |(k, _)| k.value() + 1);
        for (next, e) in (first..).zip(&w.events) {
            let mut data = e.data.clone();
            if let Json::Object(map) = &mut data {
                for (key, value) in [
                    ("registration_number", &record.registration_number),
                    ("permit_number", &record.permit_number),
                ] {
                    if let Some(v) = value {
                        map.insert(key.to_owned(), Json::String(v.clone()));
                    }
                }
            }
            let event = EventRecord {
                seq: next,
                kind: e.kind.clone(),
                application: record.id.clone(),
                at,
                data,
            };
            events.insert(next, encode(&event)?.as_slice())?;
        }
    }
    Ok(Ok(record))
}

/// What a list asks for. Every filter is optional; `scope` limits the permit types (the
/// caller's access), `None` meaning all.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub permit: Option<String>,
    pub status: Option<String>,
    pub step: Option<String>,
    pub kind: Option<String>,
    pub submitted_from: Option<NaiveDate>,
    pub submitted_to: Option<NaiveDate>,
    /// Case-insensitive text searched in registration number, permit number and applicant name.
    pub q: Option<String>,
    pub scope: Option<BTreeSet<String>>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

/// Where a page ended: the list date and sequence of the last entry looked at. Shown to clients
/// as `<YYYY-MM-DD>.<n>`; they pass it back unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub date: NaiveDate,
    pub seq: u64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.date, self.seq)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`cursor` `{s}` is not a cursor this server gave out");
        let (date, seq) = s.split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            date: NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// One page of applications, newest first.
#[derive(Debug, Clone)]
pub struct AppPage {
    pub items: Vec<Application>,
    pub next_cursor: Option<Cursor>,
}

/// Most index entries one page looks at. Filters beyond the one served by the index (and `q`)
/// are checked on the records, so a page over a sparse match may stop here with fewer items and
/// a cursor to go on from.
pub const MAX_SCAN: usize = 10_000;

impl super::Store {
    /// The application with this id, if any.
    pub fn application(&self, id: &str) -> Result<Option<Application>, StoreError> {
        let Some(seq) = app_seq(id) else {
            return Ok(None);
        };
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let apps = txn.open_table(APPLICATIONS)?;
            let value = apps.get(seq)?;
            value.map(|v| decode("applications", v.value())).transpose()
        })
    }

    /// The id of the application `connector` created under its idempotency `key`, if any.
    pub fn connector_draft(
        &self,
        connector: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let drafts = txn.open_table(CONNECTOR_DRAFTS)?;
            let seq = drafts.get((connector, key))?.map(|v| v.value());
            Ok(seq.map(app_id))
        })
    }

    /// Applies one conditional change durably (sharing a commit with concurrent writes).
    pub async fn write_application(
        &self,
        write: ApplicationWrite,
    ) -> Result<WriteOutcome, StoreError> {
        let outcome = self
            .writer
            .submit(vec![super::Op::Application(Box::new(write))])?;
        outcome_of(outcome.await.map_err(|_| StoreError::Closed)??)
    }

    /// Blocking variant of [`Self::write_application`] (tests, tools).
    pub fn write_application_blocking(
        &self,
        write: ApplicationWrite,
    ) -> Result<WriteOutcome, StoreError> {
        let outcome = self
            .writer
            .submit(vec![super::Op::Application(Box::new(write))])?;
        outcome_of(outcome.blocking_recv().map_err(|_| StoreError::Closed)??)
    }

    /// A page of applications matching `query`, newest first (by list date, then creation).
    pub fn applications(&self, query: &ListQuery) -> Result<AppPage, StoreError> {
        // The most selective filter the index serves; the others are checked on the records.
        let (facet, value) = if let Some(step) = &query.step {
            (BY_STEP, step.as_str())
        } else if let Some(permit) = &query.permit {
            (BY_PERMIT, permit.as_str())
        } else if let Some(status) = &query.status {
            (BY_STATUS, status.as_str())
        } else if let Some(kind) = &query.kind {
            (BY_KIND, kind.as_str())
        } else {
            (ALL, "")
        };
        let from = query
            .submitted_from
            .map(|d| d.to_string())
            .unwrap_or_default();
        let mut to = query
            .submitted_to
            .map_or_else(|| "9999-12-31".to_owned(), |d| d.to_string());
        let mut below = u64::MAX;
        if let Some(c) = query.cursor {
            let date = c.date.to_string();
            if date <= to {
                to = date;
                below = c.seq;
            }
        }
        let needle = query.q.as_ref().map(|q| q.to_lowercase());
        if (from.as_str(), 0) >= (to.as_str(), below) {
            return Ok(AppPage {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let index = txn.open_table(APPLICATION_INDEX)?;
            let apps = txn.open_table(APPLICATIONS)?;
            let mut items = Vec::new();
            let mut bytes = 0usize;
            let mut last: Option<(String, u64)> = None;
            let mut full = false;
            let range = index
                .range((facet, value, from.as_str(), 0)..(facet, value, to.as_str(), below))?;
            for (scanned, entry) in range.rev().enumerate() {
                let (k, _) = entry?;
                let (_, _, date, seq) = k.value();
                if items.len() >= query.limit.max(1)
                    || scanned >= MAX_SCAN
                    || bytes >= MAX_PAGE_BYTES
                {
                    full = true;
                    break;
                }
                last = Some((date.to_owned(), seq));
                let Some(v) = apps.get(seq)? else { continue };
                let raw = v.value();
                let app: Application = decode("applications", raw)?;
                if matches(&app, query, needle.as_deref()) {
                    bytes += raw.len();
                    items.push(app);
                }
            }
            let next_cursor = match (full, last) {
                (true, Some((date, seq))) => Some(Cursor {
                    date: NaiveDate::parse_from_str(&date, "%Y-%m-%d").map_err(|e| {
                        StoreError::Corrupt {
                            table: "application_index",
                            message: format!("date `{date}`: {e}"),
                        }
                    })?,
                    seq,
                }),
                _ => None,
            };
            Ok(AppPage { items, next_cursor })
        })
    }

    /// Events after sequence `after`, oldest first, at most `limit`.
    pub fn events(&self, after: u64, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let t = txn.open_table(EVENTS)?;
            let mut out = Vec::new();
            let mut bytes = 0usize;
            for entry in t.range(after.saturating_add(1)..)? {
                if out.len() >= limit || bytes >= MAX_PAGE_BYTES {
                    break;
                }
                let (k, v) = entry?;
                bytes += v.value().len();
                let mut e: EventRecord = decode("events", v.value())?;
                e.seq = k.value();
                out.push(e);
            }
            Ok(out)
        })
    }

    /// How many applications of `permit` are in progress at step `step` (one range read of the
    /// step's index; the records are read to tell permit types apart).
    pub fn waiting_at(&self, permit: &str, step: &str) -> Result<usize, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let index = txn.open_table(APPLICATION_INDEX)?;
            let apps = txn.open_table(APPLICATIONS)?;
            let mut n = 0;
            for entry in
                index.range((BY_STEP, step, "", 0)..(BY_STEP, step, "9999-12-31", u64::MAX))?
            {
                let (k, _) = entry?;
                let Some(v) = apps.get(k.value().3)? else {
                    continue;
                };
                let app: Application = decode("applications", v.value())?;
                if app.permit == permit
                    && app.status == crate::domain::application::Status::InProgress
                {
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    /// The current value of a numbering counter (the last number handed out; 0 if none).
    pub fn counter(
        &self,
        kind: NumberKind,
        permit: &str,
        format: &str,
        year: i32,
    ) -> Result<u64, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let t = txn.open_table(COUNTERS)?;
            let v = t.get((kind.as_str(), permit, format, year))?;
            Ok(v.map_or(0, |v| v.value()))
        })
    }
}

fn outcome_of(outcomes: Vec<super::writer::Outcome>) -> Result<WriteOutcome, StoreError> {
    match outcomes.into_iter().next() {
        Some(super::writer::Outcome::Application(o)) => Ok(*o),
        _ => Err(StoreError::Corrupt {
            table: "applications",
            message: "the writer gave no outcome for an application write".into(),
        }),
    }
}

fn matches(app: &Application, q: &ListQuery, needle: Option<&str>) -> bool {
    let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    eq(&q.permit, &app.permit)
        && eq(&q.status, app.status.as_str())
        && eq(&q.kind, app.kind.as_str())
        && q.step
            .as_deref()
            .is_none_or(|s| app.step.as_deref() == Some(s))
        && q.scope.as_ref().is_none_or(|s| s.contains(&app.permit))
        && needle.is_none_or(|n| {
            [
                app.registration_number.as_deref(),
                app.permit_number.as_deref(),
                Some(app.applicant.name.as_str()),
            ]
            .into_iter()
            .flatten()
            .any(|text| text.to_lowercase().contains(n))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::application::{AppKind, Applicant, HistoryEntry, Status};
    use crate::store::writer::Outcome;
    use crate::store::{Op, Store};

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn app(permit: &str, name: &str, on: &str) -> Application {
        let at = Utc::now();
        Application {
            id: String::new(),
            permit: permit.into(),
            kind: AppKind::Baru,
            registration_number: None,
            submitted_on: Some(day(on)),
            status: Status::InProgress,
            step: Some("pendaftaran".into()),
            step_entered_on: Some(day(on)),
            version: 1,
            applicant: Applicant {
                name: name.into(),
                ..Applicant::default()
            },
            data: serde_json::json!({}),
            permit_number: None,
            release: "r1".into(),
            external: Default::default(),
            history: vec![HistoryEntry {
                at,
                by: "fo".into(),
                action: "submitted".into(),
                from: None,
                to: Some("pendaftaran".into()),
                note: None,
                release: "r1".into(),
            }],
            created_at: at,
            created_on: day(on),
        }
    }

    fn registration(permit: &str) -> NumberAssignment {
        let prefix = format!("REG/{}/2026/", permit.to_uppercase());
        NumberAssignment {
            kind: NumberKind::Registration,
            permit: permit.into(),
            format: "default".into(),
            year: 2026,
            render: Render(Arc::new(move |n| format!("{prefix}{n:05}"))),
        }
    }

    fn create(a: Application) -> ApplicationWrite {
        let permit = a.permit.clone();
        ApplicationWrite {
            expect: Expect::New,
            record: a,
            numbers: vec![registration(&permit)],
            events: vec![EventDraft {
                kind: "application.submitted".into(),
                data: serde_json::json!({ "permit": permit }),
            }],
        }
    }

    fn advance(current: &Application, to: &str) -> ApplicationWrite {
        let mut next = current.clone();
        next.step = Some(to.into());
        next.version += 1;
        ApplicationWrite {
            expect: Expect::Version {
                seq: app_seq(&current.id).unwrap(),
                version: current.version,
            },
            record: next,
            numbers: vec![],
            events: vec![EventDraft {
                kind: "application.advanced".into(),
                data: serde_json::json!({ "to": to }),
            }],
        }
    }

    fn written(store: &Store, w: ApplicationWrite) -> Application {
        store.write_application_blocking(w).unwrap().unwrap()
    }

    #[test]
    fn a_connector_s_draft_key_creates_one_application_even_within_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        let once = |connector: &str, key: &str, name: &str| {
            let mut draft = app("pbg", name, "2026-03-02");
            draft.status = Status::Draft;
            draft.step = None;
            ApplicationWrite {
                expect: Expect::Once {
                    connector: connector.into(),
                    key: key.into(),
                },
                record: draft,
                numbers: vec![],
                events: vec![],
            }
        };
        // The same key twice in one commit: the second sees the first's key in the transaction.
        let rx = store
            .writer
            .submit(vec![
                Op::Application(Box::new(once("oss-rba", "I-1", "Ani"))),
                Op::Application(Box::new(once("oss-rba", "I-1", "Ani lagi"))),
                Op::Application(Box::new(once("simbg", "I-1", "Budi"))),
            ])
            .unwrap();
        let outcomes: Vec<WriteOutcome> = rx
            .blocking_recv()
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|o| match o {
                Outcome::Application(o) => *o,
                _ => panic!("not an application outcome"),
            })
            .collect();
        assert_eq!(outcomes[0].as_ref().unwrap().id, "APP-1");
        assert_eq!(
            outcomes[1],
            Err(Refusal::Exists {
                connector: "oss-rba".into(),
                key: "I-1".into(),
                id: "APP-1".into()
            })
        );
        // Keys are per connector.
        assert_eq!(outcomes[2].as_ref().unwrap().id, "APP-2");
        store.close();
        drop(store);
        let store = Store::open(dir.path(), 64).unwrap();
        assert_eq!(
            store
                .write_application_blocking(once("oss-rba", "I-1", "x"))
                .unwrap(),
            Err(Refusal::Exists {
                connector: "oss-rba".into(),
                key: "I-1".into(),
                id: "APP-1".into()
            })
        );
        assert_eq!(
            store.connector_draft("oss-rba", "I-1").unwrap().as_deref(),
            Some("APP-1")
        );
        assert_eq!(store.connector_draft("oss-rba", "I-2").unwrap(), None);
        assert_eq!(
            store.application("APP-1").unwrap().unwrap().applicant.name,
            "Ani"
        );
        assert!(store.application("APP-3").unwrap().is_none());
    }

    #[test]
    fn a_stale_change_is_refused_without_harming_its_batch_mates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        let a = written(&store, create(app("pbg", "Ani", "2026-03-02")));
        assert_eq!(a.id, "APP-1");
        assert_eq!(a.registration_number.as_deref(), Some("REG/PBG/2026/00001"));
        // One batch: two changes computed from the same version, then a new application. The
        // second change is stale once the first is applied; the others land.
        let rx = store
            .writer
            .submit(vec![
                Op::Application(Box::new(advance(&a, "entri_data"))),
                Op::Application(Box::new(advance(&a, "konsultasi_teknis"))),
                Op::Application(Box::new(create(app("pbg", "Budi", "2026-03-02")))),
            ])
            .unwrap();
        let outcomes = rx.blocking_recv().unwrap().unwrap();
        let outcomes: Vec<WriteOutcome> = outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Application(o) => *o,
                Outcome::Seq(_) | Outcome::Delivery(_) => panic!("not an application outcome"),
            })
            .collect();
        assert_eq!(outcomes[0].as_ref().unwrap().version, 2);
        assert_eq!(
            outcomes[1],
            Err(Refusal::Conflict {
                id: "APP-1".into(),
                expected: 1,
                current: 2
            })
        );
        let b = outcomes[2].as_ref().unwrap();
        assert_eq!(b.registration_number.as_deref(), Some("REG/PBG/2026/00002"));
        let stored = store.application("APP-1").unwrap().unwrap();
        assert_eq!(stored.step.as_deref(), Some("entri_data"));
        // Three events: the refused change left none.
        let events = store.events(0, 100).unwrap();
        let kinds: Vec<(u64, &str, &str)> = events
            .iter()
            .map(|e| (e.seq, e.kind.as_str(), e.application.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (1, "application.submitted", "APP-1"),
                (2, "application.advanced", "APP-1"),
                (3, "application.submitted", "APP-2"),
            ]
        );
        assert_eq!(events[2].data["registration_number"], "REG/PBG/2026/00002");
        // A missing application is refused too.
        let mut ghost = advance(&stored, "x");
        ghost.expect = Expect::Version {
            seq: 99,
            version: 1,
        };
        assert_eq!(
            store.write_application_blocking(ghost).unwrap(),
            Err(Refusal::NotFound("APP-99".into()))
        );
        assert_eq!(store.events(0, 100).unwrap().len(), 3);
        // The index follows the step.
        let q = |step: &str| ListQuery {
            step: Some(step.into()),
            limit: 10,
            ..ListQuery::default()
        };
        assert_eq!(store.applications(&q("entri_data")).unwrap().items.len(), 1);
        assert_eq!(
            store.applications(&q("pendaftaran")).unwrap().items[0].id,
            "APP-2"
        );
    }

    #[test]
    fn numbers_are_unique_and_gap_free_under_concurrent_writers_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 64).unwrap();
            std::thread::scope(|s| {
                for t in 0..16 {
                    let store = store.clone();
                    s.spawn(move || {
                        for i in 0..10 {
                            let permit = if i % 2 == 0 { "pbg" } else { "sip" };
                            let name = format!("p{t}-{i}");
                            written(&store, create(app(permit, &name, "2026-03-02")));
                        }
                    });
                }
            });
            assert!(store.writer.commits() < 160, "no batching happened");
            store.close();
        }
        let store = Store::open(dir.path(), 64).unwrap();
        for permit in ["pbg", "sip"] {
            let page = store
                .applications(&ListQuery {
                    permit: Some(permit.into()),
                    limit: 1000,
                    ..ListQuery::default()
                })
                .unwrap();
            let mut numbers: Vec<String> = page
                .items
                .iter()
                .map(|a| a.registration_number.clone().unwrap())
                .collect();
            numbers.sort();
            let expected: Vec<String> = (1..=80)
                .map(|n| format!("REG/{}/2026/{n:05}", permit.to_uppercase()))
                .collect();
            assert_eq!(numbers, expected);
            assert_eq!(
                store
                    .counter(NumberKind::Registration, permit, "default", 2026)
                    .unwrap(),
                80
            );
        }
        // One event per write, gap-free.
        let seqs: Vec<u64> = store
            .events(0, 1000)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, (1..=160).collect::<Vec<u64>>());
        assert_eq!(store.events(150, 5).unwrap()[0].seq, 151);
        assert_eq!(store.events(150, 5).unwrap().len(), 5);
    }

    #[test]
    fn pages_are_newest_first_filtered_and_stable_under_inserts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        for (i, on) in ["2026-03-02", "2026-03-01", "2026-03-03", "2026-03-02"]
            .iter()
            .enumerate()
        {
            let permit = if i == 1 { "sip" } else { "pbg" };
            written(&store, create(app(permit, &format!("Nama {i}"), on)));
        }
        let all = |cursor| ListQuery {
            limit: 2,
            cursor,
            ..ListQuery::default()
        };
        let ids = |p: &AppPage| p.items.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
        let first = store.applications(&all(None)).unwrap();
        // By list date, then by creation: 03-03 (3), 03-02 (4, 1), 03-01 (2).
        assert_eq!(ids(&first), ["APP-3", "APP-4"]);
        let cursor = first.next_cursor.unwrap();
        assert_eq!(cursor.to_string(), "2026-03-02.4");
        assert_eq!(cursor.to_string().parse::<Cursor>().unwrap(), cursor);
        // Inserts between pages land before the cursor: the rest of the walk is unchanged.
        written(&store, create(app("pbg", "Baru", "2026-03-03")));
        let second = store.applications(&all(Some(cursor))).unwrap();
        assert_eq!(ids(&second), ["APP-1", "APP-2"]);
        assert_eq!(second.next_cursor, None, "that was the oldest");

        let query = ListQuery {
            permit: Some("pbg".into()),
            submitted_from: Some(day("2026-03-02")),
            submitted_to: Some(day("2026-03-02")),
            limit: 10,
            ..ListQuery::default()
        };
        let page = store.applications(&query).unwrap();
        assert_eq!(ids(&page), ["APP-4", "APP-1"]);
        assert!(page.next_cursor.is_none());
        let search = ListQuery {
            q: Some("nama 3".into()),
            limit: 10,
            ..ListQuery::default()
        };
        assert_eq!(ids(&store.applications(&search).unwrap()), ["APP-4"]);
        let by_number = ListQuery {
            q: Some("reg/sip".into()),
            limit: 10,
            ..ListQuery::default()
        };
        assert_eq!(ids(&store.applications(&by_number).unwrap()), ["APP-2"]);
        let scoped = ListQuery {
            scope: Some(BTreeSet::from(["sip".to_owned()])),
            limit: 10,
            ..ListQuery::default()
        };
        assert_eq!(ids(&store.applications(&scoped).unwrap()), ["APP-2"]);
        let empty = ListQuery {
            submitted_from: Some(day("2026-04-01")),
            submitted_to: Some(day("2026-03-01")),
            limit: 10,
            ..ListQuery::default()
        };
        assert!(store.applications(&empty).unwrap().items.is_empty());
        assert!("nope".parse::<Cursor>().is_err());
    }
}
