//! Deliveries of outbox events to connectors, and each connector's durable cursor.
//!
//! The outbox (`events`) is written by application changes. For each connector the store keeps
//! the last outbox sequence it has *scheduled* (`delivery_cursors`); scheduling reads the events
//! after it, inserts a delivery for each event type the connector wants and advances the cursor,
//! all in one transaction, so an event is scheduled exactly once whatever crashes. A delivery is
//! `pending` until an attempt succeeds (`delivered`) or it gives up (`dead`); the outcome of each
//! attempt is one more write. A delivery whose outcome was never written (a crash during the
//! call) is still pending and is sent again, with the same idempotency key: at least once.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::applications::EventRecord;
use super::{
    decode, encode, guarded, Page, PageBuilder, StoreError, DELIVERIES, DELIVERIES_BY_STATE,
    DELIVERY_CURSORS, EVENTS,
};

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its (next) attempt.
    Pending,
    /// The connector answered `ok`.
    Delivered,
    /// Given up: the connector answered `failed`, or `max_attempts` were used. An admin may
    /// send it again (`POST /admin/outbox/{id}/retry`).
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// One outbox event for one connector, as `GET /admin/outbox` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryRecord {
    #[serde(default)]
    pub id: u64,
    pub connector: String,
    /// The event's sequence in the outbox.
    pub seq: u64,
    /// The event's type, e.g. `application.advanced`.
    pub event: String,
    /// The application the event is about.
    pub application: String,
    pub state: DeliveryState,
    /// Attempts made whose outcome was recorded.
    pub attempts: u32,
    /// When a pending delivery is due; `null` once it is delivered or dead.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// `<connector>:<seq>`: the same on every attempt.
    pub idempotency_key: String,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The release whose connector made the last attempt.
    pub release: Option<String>,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Delivered {
        at: DateTime<Utc>,
    },
    /// Pending again, due at `next_at`.
    Retry {
        error: String,
        next_at: DateTime<Utc>,
    },
    Dead {
        error: String,
    },
}

/// A change to deliveries or cursors, applied in the writer's transaction.
#[derive(Debug, Clone)]
pub enum DeliveryOp {
    /// Reads at most `limit` events after `connector`'s cursor, inserts a pending delivery for
    /// each whose type is in `events`, and advances the cursor past them. A connector without a
    /// cursor starts at the current end of the outbox (it gets events from now on). Answers the
    /// number of events read (`limit` means there may be more).
    Schedule {
        connector: String,
        events: BTreeSet<String>,
        limit: usize,
        now: DateTime<Utc>,
    },
    /// Records the outcome of one attempt of a pending delivery (attempts + 1). A delivery
    /// that is no longer pending is left alone.
    Attempted {
        id: u64,
        release: String,
        attempt: Attempt,
    },
    /// A dead letter becomes pending again, due now, with its attempts reset.
    Revive { id: u64, now: DateTime<Utc> },
    /// Each of `connectors` without a cursor starts at the current end of the outbox. Written
    /// with the activation of a release that brings them, so that every event committed once
    /// they serve is after their cursor, however late their first scheduling comes. Answers
    /// the number of cursors placed.
    Start { connectors: Vec<String> },
}

/// Why [`DeliveryOp::Revive`] changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryRefusal {
    #[error("no delivery `{0}`")]
    NotFound(u64),
    #[error("delivery `{id}` is {state}, not dead: only a dead letter can be retried")]
    NotDead { id: u64, state: &'static str },
}

/// What a [`DeliveryOp`] produced.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    /// Events read by a schedule step, or 1/0 for an attempt recorded or ignored.
    Count(u64),
    Revived(Result<DeliveryRecord, DeliveryRefusal>),
}

/// Index keys of a delivery: (connector, state), (connector, any state), (any connector,
/// state), each with the id. `""` stands for "any": connector names are `[a-z0-9-]+`.
fn index_keys(d: &DeliveryRecord) -> [(String, &'static str, u64); 3] {
    let state = d.state.as_str();
    [
        (d.connector.clone(), state, d.id),
        (d.connector.clone(), "", d.id),
        (String::new(), state, d.id),
    ]
}

fn put(
    txn: &WriteTransaction,
    old: Option<&DeliveryRecord>,
    d: &DeliveryRecord,
) -> Result<(), StoreError> {
    txn.open_table(DELIVERIES)?
        .insert(d.id, encode(d)?.as_slice())?;
    let mut index = txn.open_table(DELIVERIES_BY_STATE)?;
    if let Some(old) = old {
        for (c, s, id) in index_keys(old) {
            index.remove((c.as_str(), s, id))?;
        }
    }
    for (c, s, id) in index_keys(d) {
        index.insert((c.as_str(), s, id), ())?;
    }
    Ok(())
}

fn get(txn: &WriteTransaction, id: u64) -> Result<Option<DeliveryRecord>, StoreError> {
    let table = txn.open_table(DELIVERIES)?;
    let value = table.get(id)?;
    value
        .map(|v| {
            decode::<DeliveryRecord>("deliveries", v.value()).map(|mut d| {
                d.id = id;
                d
            })
        })
        .transpose()
}

pub(super) fn apply(
    txn: &WriteTransaction,
    op: &DeliveryOp,
) -> Result<DeliveryOutcome, StoreError> {
    match op {
        DeliveryOp::Schedule {
            connector,
            events: wanted,
            limit,
            now,
        } => schedule(txn, connector, wanted, *limit, *now).map(DeliveryOutcome::Count),
        DeliveryOp::Attempted {
            id,
            release,
            attempt,
        } => {
            let Some(old) = get(txn, *id)? else {
                return Ok(DeliveryOutcome::Count(0));
            };
            if old.state != DeliveryState::Pending {
                return Ok(DeliveryOutcome::Count(0));
            }
            let mut d = old.clone();
            d.attempts = d.attempts.saturating_add(1);
            d.release = Some(release.clone());
            match attempt {
                Attempt::Delivered { at } => {
                    d.state = DeliveryState::Delivered;
                    d.delivered_at = Some(*at);
                    d.next_attempt_at = None;
                }
                Attempt::Retry { error, next_at } => {
                    d.last_error = Some(error.clone());
                    d.next_attempt_at = Some(*next_at);
                }
                Attempt::Dead { error } => {
                    d.state = DeliveryState::Dead;
                    d.last_error = Some(error.clone());
                    d.next_attempt_at = None;
                }
            }
            put(txn, Some(&old), &d)?;
            Ok(DeliveryOutcome::Count(1))
        }
        DeliveryOp::Start { connectors } => start(txn, connectors).map(DeliveryOutcome::Count),
        DeliveryOp::Revive { id, now } => {
            let Some(old) = get(txn, *id)? else {
                return Ok(DeliveryOutcome::Revived(Err(DeliveryRefusal::NotFound(
                    *id,
                ))));
            };
            if old.state != DeliveryState::Dead {
                return Ok(DeliveryOutcome::Revived(Err(DeliveryRefusal::NotDead {
                    id: *id,
                    state: old.state.as_str(),
                })));
            }
            let mut d = old.clone();
            d.state = DeliveryState::Pending;
            d.attempts = 0;
            d.next_attempt_at = Some(*now);
            put(txn, Some(&old), &d)?;
            Ok(DeliveryOutcome::Revived(Ok(d)))
        }
    }
}

fn start(txn: &WriteTransaction, connectors: &[String]) -> Result<u64, StoreError> {
    let end = txn
        .open_table(EVENTS)?
        .last()?
        .map_or(0, |(k, _)| k.value());
    let mut cursors = txn.open_table(DELIVERY_CURSORS)?;
    let mut placed = 0;
    for connector in connectors {
        if cursors.get(connector.as_str())?.is_none() {
            cursors.insert(connector.as_str(), end)?;
            placed += 1;
        }
    }
    Ok(placed)
}

fn schedule(
    txn: &WriteTransaction,
    connector: &str,
    wanted: &BTreeSet<String>,
    limit: usize,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let events = txn.open_table(EVENTS)?;
    let mut cursors = txn.open_table(DELIVERY_CURSORS)?;
    let stored = cursors.get(connector)?.map(|v| v.value());
    let Some(after) = stored else {
        // INVARIANT: a connector's first cursor is the outbox's end when it is first scheduled:
        // it gets the events from its activation on, not the office's whole history.
        let end = events.last()?.map_or(0, |(k, _)| k.value());
        cursors.insert(connector, end)?;
        return Ok(0);
    };
    let mut next_id = txn
        .open_table(DELIVERIES)?
        .last()?
        .map_or(1, |(k, _)| k.value() + 1);
    let mut read = 0u64;
    let mut last = after;
    let mut new = Vec::new();
    for entry in events.range(after.saturating_add(1)..)? {
        if read >= limit as u64 {
            break;
        }
        let (k, v) = entry?;
        let seq = k.value();
        read += 1;
        last = seq;
        let event: EventRecord = match decode("events", v.value()) {
            Ok(e) => e,
            Err(e) => {
                // An unreadable event cannot be delivered; it must not stop every later one.
                tracing::error!(
                    "outbox event {seq} is unreadable, not delivered to `{connector}`: {e}"
                );
                continue;
            }
        };
        if !wanted.contains(&event.kind) {
            continue;
        }
        new.push(DeliveryRecord {
            id: next_id,
            connector: connector.to_owned(),
            seq,
            event: event.kind,
            application: event.application,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: Some(now),
            last_error: None,
            idempotency_key: format!("{connector}:{seq}"),
            delivered_at: None,
            release: None,
        });
        next_id += 1;
    }
    drop(events);
    for d in &new {
        put(txn, None, d)?;
    }
    if last != after {
        cursors.insert(connector, last)?;
    }
    Ok(read)
}

impl super::Store {
    /// The last outbox sequence scheduled for `connector`; `None` before its first scheduling.
    pub fn delivery_cursor(&self, connector: &str) -> Result<Option<u64>, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let t = txn.open_table(DELIVERY_CURSORS)?;
            let v = t.get(connector)?;
            Ok(v.map(|v| v.value()))
        })
    }

    pub fn delivery(&self, id: u64) -> Result<Option<DeliveryRecord>, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let t = txn.open_table(DELIVERIES)?;
            let v = t.get(id)?;
            v.map(|v| {
                decode::<DeliveryRecord>("deliveries", v.value()).map(|mut d| {
                    d.id = id;
                    d
                })
            })
            .transpose()
        })
    }

    /// The outbox event at `seq`.
    pub fn event(&self, seq: u64) -> Result<Option<EventRecord>, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let t = txn.open_table(EVENTS)?;
            let v = t.get(seq)?;
            v.map(|v| {
                decode::<EventRecord>("events", v.value()).map(|mut e| {
                    e.seq = seq;
                    e
                })
            })
            .transpose()
        })
    }

    /// The oldest `max` pending deliveries of `connector`, in outbox order. An unreadable one
    /// is skipped with a log line (it stays pending; an admin sees it listed).
    pub fn pending_deliveries(
        &self,
        connector: &str,
        max: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let index = txn.open_table(DELIVERIES_BY_STATE)?;
            let table = txn.open_table(DELIVERIES)?;
            let pending = DeliveryState::Pending.as_str();
            let mut out = Vec::new();
            for entry in index
                .range((connector, pending, 0)..=(connector, pending, u64::MAX))?
                .take(max)
            {
                let (k, _) = entry?;
                let id = k.value().2;
                let Some(v) = table.get(id)? else { continue };
                match decode::<DeliveryRecord>("deliveries", v.value()) {
                    Ok(mut d) => {
                        d.id = id;
                        out.push(d);
                    }
                    Err(e) => tracing::error!("delivery {id} is unreadable: {e}"),
                }
            }
            Ok(out)
        })
    }

    /// Deliveries newest first, optionally of one connector and/or in one state, below id
    /// `before`; at most `limit` and [`super::MAX_PAGE_BYTES`].
    pub fn deliveries(
        &self,
        connector: Option<&str>,
        state: Option<DeliveryState>,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Page<DeliveryRecord>, StoreError> {
        let set_id = |d: &mut DeliveryRecord, id| d.id = id;
        let before = before.unwrap_or(u64::MAX);
        if connector.is_none() && state.is_none() {
            return self.page(DELIVERIES, "deliveries", limit, Some(before), set_id);
        }
        let c = connector.unwrap_or("");
        let s = state.map_or("", DeliveryState::as_str);
        guarded(|| {
            let db = self.shared.db()?;
            let txn = db.begin_read()?;
            let index = txn.open_table(DELIVERIES_BY_STATE)?;
            let table = txn.open_table(DELIVERIES)?;
            let mut page = PageBuilder::new(limit);
            for entry in index.range((c, s, 0)..(c, s, before))?.rev() {
                let (k, _) = entry?;
                let id = k.value().2;
                if let Some(v) = table.get(id)? {
                    if !page.push("deliveries", id, v.value(), &set_id) {
                        break;
                    }
                }
            }
            Ok(page.finish())
        })
    }
}

impl super::Store {
    /// Applies one delivery change durably (sharing a commit with concurrent writes).
    pub async fn write_delivery(&self, op: DeliveryOp) -> Result<DeliveryOutcome, StoreError> {
        let rx = self.writer.submit(vec![super::Op::Delivery(op)])?;
        outcome_of(rx.await.map_err(|_| StoreError::Closed)??)
    }

    /// Blocking variant of [`Self::write_delivery`] (tests, tools).
    pub fn write_delivery_blocking(&self, op: DeliveryOp) -> Result<DeliveryOutcome, StoreError> {
        let rx = self.writer.submit(vec![super::Op::Delivery(op)])?;
        outcome_of(rx.blocking_recv().map_err(|_| StoreError::Closed)??)
    }
}

fn outcome_of(outcomes: Vec<super::writer::Outcome>) -> Result<DeliveryOutcome, StoreError> {
    match outcomes.into_iter().next() {
        Some(super::writer::Outcome::Delivery(o)) => Ok(o),
        _ => Err(StoreError::Corrupt {
            table: "deliveries",
            message: "the writer gave no outcome for a delivery write".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::application::{AppKind, Applicant, Application};
    use crate::store::applications::{ApplicationWrite, EventDraft, Expect};
    use crate::store::Store;

    fn app_event(store: &Store, kinds: &[&str]) -> String {
        let at = Utc::now();
        let on = at.date_naive();
        let record = Application::draft(
            "pbg".into(),
            AppKind::Baru,
            Applicant {
                name: "Ani".into(),
                ..Applicant::default()
            },
            serde_json::json!({}),
            "r1".into(),
            at,
            on,
        );
        store
            .write_application_blocking(ApplicationWrite {
                expect: Expect::New,
                record,
                numbers: vec![],
                events: kinds
                    .iter()
                    .map(|k| EventDraft {
                        kind: (*k).into(),
                        data: serde_json::json!({}),
                    })
                    .collect(),
            })
            .unwrap()
            .unwrap()
            .id
    }

    fn run(store: &Store, op: DeliveryOp) -> DeliveryOutcome {
        store.write_delivery_blocking(op).unwrap()
    }

    fn schedule(store: &Store, connector: &str, wanted: &[&str], limit: usize) -> u64 {
        match run(
            store,
            DeliveryOp::Schedule {
                connector: connector.into(),
                events: wanted.iter().map(|s| (*s).to_owned()).collect(),
                limit,
                now: Utc::now(),
            },
        ) {
            DeliveryOutcome::Count(n) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_new_connector_starts_at_the_end_and_then_gets_each_wanted_event_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        app_event(&store, &["application.submitted"]);
        // First sight: the cursor is put at the end; the old event is not scheduled.
        assert_eq!(schedule(&store, "echo", &["application.submitted"], 100), 0);
        assert_eq!(store.delivery_cursor("echo").unwrap(), Some(1));
        assert!(store.pending_deliveries("echo", 100).unwrap().is_empty());
        let a = app_event(
            &store,
            &["application.submitted", "application.data_changed"],
        );
        let b = app_event(&store, &["application.submitted"]);
        // Read in steps of two: both steps advance the cursor, only wanted types are queued.
        assert_eq!(schedule(&store, "echo", &["application.submitted"], 2), 2);
        assert_eq!(store.delivery_cursor("echo").unwrap(), Some(3));
        assert_eq!(schedule(&store, "echo", &["application.submitted"], 2), 1);
        assert_eq!(schedule(&store, "echo", &["application.submitted"], 2), 0);
        let queue = store.pending_deliveries("echo", 100).unwrap();
        let seen: Vec<(u64, &str, &str)> = queue
            .iter()
            .map(|d| (d.seq, d.application.as_str(), d.idempotency_key.as_str()))
            .collect();
        assert_eq!(seen, [(2, a.as_str(), "echo:2"), (4, b.as_str(), "echo:4")]);
        assert!(queue
            .iter()
            .all(|d| d.state == DeliveryState::Pending && d.attempts == 0));
        // The cursor and the deliveries survive a restart; nothing is scheduled twice.
        store.close();
        drop(store);
        let store = Store::open(dir.path(), 64).unwrap();
        assert_eq!(schedule(&store, "echo", &["application.submitted"], 100), 0);
        assert_eq!(store.pending_deliveries("echo", 100).unwrap().len(), 2);
        // Another connector has its own cursor.
        assert_eq!(
            schedule(&store, "oss-rba", &["application.submitted"], 100),
            0
        );
        assert_eq!(store.delivery_cursor("oss-rba").unwrap(), Some(4));
    }

    #[test]
    fn a_connector_started_with_its_release_gets_the_events_before_its_first_scheduling() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        app_event(&store, &["application.submitted"]);
        schedule(&store, "oss-rba", &["application.submitted"], 100);
        // The release bringing echo is activated: its cursor is placed at the outbox's end, an
        // existing cursor is left alone.
        let start = DeliveryOp::Start {
            connectors: vec!["echo".into(), "oss-rba".into()],
        };
        assert_eq!(run(&store, start.clone()), DeliveryOutcome::Count(1));
        assert_eq!(store.delivery_cursor("echo").unwrap(), Some(1));
        // An application changes before the dispatcher first schedules echo: it is delivered.
        let a = app_event(&store, &["application.submitted"]);
        assert_eq!(schedule(&store, "echo", &["application.submitted"], 100), 1);
        let queue = store.pending_deliveries("echo", 100).unwrap();
        assert_eq!(queue.len(), 1, "{queue:?}");
        assert_eq!(
            (queue[0].seq, queue[0].application.as_str()),
            (2, a.as_str())
        );
        // Activating it again (a restart, a reactivation) moves no cursor.
        assert_eq!(run(&store, start), DeliveryOutcome::Count(0));
        assert_eq!(store.delivery_cursor("echo").unwrap(), Some(2));
        assert_eq!(store.delivery_cursor("oss-rba").unwrap(), Some(1));
    }

    #[test]
    fn attempts_move_a_delivery_to_delivered_or_dead_and_a_dead_one_can_be_revived() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        schedule(&store, "echo", &["x"], 10);
        app_event(&store, &["x", "x", "x"]);
        schedule(&store, "echo", &["x"], 10);
        let ids: Vec<u64> = store
            .pending_deliveries("echo", 100)
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, [1, 2, 3]);
        let later = Utc::now() + chrono::Duration::seconds(5);
        let attempted = |id, attempt| {
            run(
                &store,
                DeliveryOp::Attempted {
                    id,
                    release: "r1".into(),
                    attempt,
                },
            )
        };
        attempted(
            1,
            Attempt::Retry {
                error: "502 from the outside system".into(),
                next_at: later,
            },
        );
        let d = store.delivery(1).unwrap().unwrap();
        assert_eq!((d.state, d.attempts), (DeliveryState::Pending, 1));
        assert_eq!(d.next_attempt_at, Some(later));
        assert_eq!(d.release.as_deref(), Some("r1"));
        attempted(1, Attempt::Delivered { at: Utc::now() });
        attempted(
            2,
            Attempt::Dead {
                error: "refused".into(),
            },
        );
        // A recorded outcome is final: a late duplicate changes nothing.
        assert_eq!(
            attempted(
                1,
                Attempt::Dead {
                    error: "late".into()
                }
            ),
            DeliveryOutcome::Count(0)
        );
        let d = store.delivery(1).unwrap().unwrap();
        assert_eq!((d.state, d.attempts), (DeliveryState::Delivered, 2));
        assert!(d.delivered_at.is_some() && d.next_attempt_at.is_none());

        let ids_of = |page: Page<DeliveryRecord>| -> Vec<u64> {
            page.items.iter().map(|d| d.record().unwrap().id).collect()
        };
        assert_eq!(
            ids_of(store.deliveries(None, None, 10, None).unwrap()),
            [3, 2, 1]
        );
        assert_eq!(
            ids_of(
                store
                    .deliveries(None, Some(DeliveryState::Dead), 10, None)
                    .unwrap()
            ),
            [2]
        );
        assert_eq!(
            ids_of(
                store
                    .deliveries(Some("echo"), Some(DeliveryState::Pending), 10, None)
                    .unwrap()
            ),
            [3]
        );
        assert_eq!(
            ids_of(store.deliveries(Some("echo"), None, 2, None).unwrap()),
            [3, 2]
        );
        let page = store.deliveries(Some("echo"), None, 2, None).unwrap();
        assert_eq!(page.next_before, Some(2));
        assert_eq!(
            ids_of(store.deliveries(Some("echo"), None, 2, Some(2)).unwrap()),
            [1]
        );
        assert!(store
            .deliveries(Some("other"), None, 10, None)
            .unwrap()
            .items
            .is_empty());

        let revive = |id| match run(
            &store,
            DeliveryOp::Revive {
                id,
                now: Utc::now(),
            },
        ) {
            DeliveryOutcome::Revived(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            revive(1),
            Err(DeliveryRefusal::NotDead {
                id: 1,
                state: "delivered"
            })
        );
        assert_eq!(revive(9), Err(DeliveryRefusal::NotFound(9)));
        let d = revive(2).unwrap();
        assert_eq!((d.state, d.attempts), (DeliveryState::Pending, 0));
        assert_eq!(d.last_error.as_deref(), Some("refused"));
        let pending: Vec<u64> = store
            .pending_deliveries("echo", 100)
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(pending, [2, 3], "back in the queue, in outbox order");
        assert!(store
            .deliveries(None, Some(DeliveryState::Dead), 10, None)
            .unwrap()
            .items
            .is_empty());
    }
}
