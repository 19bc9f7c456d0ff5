//! Delivery of outbox events to connectors, and their periodic `sync`.
//!
//! One background task (started by `api::serve`, stopped on shutdown) runs rounds:
//! 1. **schedule**: for each connector of the serving release, the store reads the outbox after
//!    the connector's durable cursor and queues a delivery for each event type its manifest
//!    wants, advancing the cursor in the same transaction (`store::deliveries`);
//! 2. **deliver**: a connector's pending deliveries are read in outbox order; for each
//!    application only the oldest pending one is eligible (a later event of an application waits
//!    while an earlier one is pending), and it is sent when due, up to `concurrency` calls at
//!    once across applications. Each call runs on the blocking pool. `ok` → delivered (its
//!    actions applied); `retry-later` or a failed call → attempt recorded and the next one
//!    after exponential backoff with jitter; `failed`, or `max_attempts` used → dead letter;
//! 3. **sync**: connectors with `sync_every` are called on that period (first when they start
//!    serving), their actions applied; a failure is logged and counted in the connector's stats.
//!
//! Then it sleeps until an application change commits outbox events, a call finishes, a retry
//! comes due, a sync is due or `poll_interval_ms` passes, whichever is first.
//!
//! At least once, never skipped: the outcome of an attempt is written after the call; a crash
//! in between leaves the delivery pending, and it is sent again with the same idempotency key
//! (and the same attempt number).
//!
//! A dead letter does not block the application's later events: it can never succeed without
//! an admin (its connector said so, or it failed `max_attempts` times), and holding every later
//! event of the application behind it would stop all reporting about that application to the
//! outside system until someone noticed. The admin sees it in `GET /admin/outbox?state=dead`
//! and may send it again (`POST /admin/outbox/{id}/retry`), after the later ones.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::config;
use crate::connectors::{Action, CallEnv, Connector, Event, EventOutcome, EventReply, PendingKv};
use crate::domain::application::Application;
use crate::store::deliveries::{
    Attempt, DeliveryOp, DeliveryOutcome, DeliveryRecord, DeliveryRefusal, DeliveryState,
};
use crate::store::{Page, Store, StoreError};

/// A boxed future (the [`Source`] trait's async method).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One connector's calls, as the dispatcher makes them. All are synchronous: the dispatcher
/// runs them on the blocking pool. An `Err` is a failed call (trap, timeout, ...), named.
///
/// A call's kv writes are held in `pending` and stored by [`Outlet::keep`] only once its
/// actions are applied: a connector that notes "sent" or "imported" in kv must not find the
/// note when the host could not apply what it asked for (the next attempt or sync then does it
/// again).
pub trait Outlet: Send + Sync {
    fn handle_event(&self, event: Event, pending: &PendingKv) -> Result<EventReply, String>;
    fn sync(&self, pending: &PendingKv) -> Result<Vec<Action>, String>;
    /// Stores the held kv writes of a call, durably when it returns `Ok`.
    fn keep(&self, pending: PendingKv) -> Result<(), String> {
        drop(pending);
        Ok(())
    }
}

/// A connector loaded by the host, called with the environment of its release.
pub struct ConnectorOutlet {
    pub connector: Connector,
    pub env: Arc<CallEnv>,
}

impl ConnectorOutlet {
    /// The release's environment, with this call's kv writes held in `pending`.
    fn env(&self, pending: &PendingKv) -> CallEnv {
        CallEnv {
            pending_kv: Some(pending.clone()),
            ..(*self.env).clone()
        }
    }
}

impl Outlet for ConnectorOutlet {
    fn handle_event(&self, event: Event, pending: &PendingKv) -> Result<EventReply, String> {
        self.connector
            .handle_event(&self.env(pending), event)
            .map_err(|e| e.to_string())
    }

    fn sync(&self, pending: &PendingKv) -> Result<Vec<Action>, String> {
        self.connector
            .sync(&self.env(pending))
            .map_err(|e| e.to_string())
    }

    fn keep(&self, pending: PendingKv) -> Result<(), String> {
        pending.commit(&*self.env.kv, self.connector.name())
    }
}

/// A connector of the serving release.
#[derive(Clone)]
pub struct Target {
    pub name: String,
    /// Its version (named in errors about its actions).
    pub version: String,
    /// The release it belongs to (recorded with each attempt).
    pub release: String,
    /// Outbox event types it wants (its manifest's `events`).
    pub events: BTreeSet<String>,
    pub sync_every: Option<Duration>,
    pub outlet: Arc<dyn Outlet>,
}

/// What the dispatcher needs from the rest of Pintu: the connectors serving now, an
/// application's JSON view, and applying a connector's actions.
pub trait Source: Send + Sync + 'static {
    fn targets(&self) -> Vec<Target>;
    /// The application as `GET /v1/applications/{id}` shows it, as JSON text.
    fn snapshot(&self, app: Application) -> String;
    fn apply<'a>(
        &'a self,
        target: &'a Target,
        actions: Vec<Action>,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Why an outbox request was refused.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("no delivery `{0}`")]
    NotFound(u64),
    #[error("{0}")]
    NotDead(String),
    #[error("{0}")]
    BadQuery(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Events read from the outbox per schedule step (one transaction each).
const SCHEDULE_STEP: usize = 1_000;
/// Pending deliveries of one connector looked at per round. The oldest pending delivery of each
/// application is eligible; a round that finds all of these blocked (in flight, or waiting for
/// a retry) does not look further. Only a connector with more than this many deliveries queued
/// behind blocked applications waits longer than it must, until those progress. Each round
/// reads them again (after every finished call), so a larger scan costs throughput under a
/// backlog: 2,000 gave 236 events/s, 256 gave 393 events/s with 2,000 queued.
const QUEUE_SCAN: usize = 256;
/// After a stop signal, how long calls in flight may take to record their outcome. One still
/// running after it is sent again after the restart (same idempotency key).
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The ± spread of a retry's wait, in per mille of the wait.
const JITTER_PER_MILLE: i64 = 200;

/// The wait before the attempt after `attempts` failed ones (`attempts` ≥ 1): `initial` ·
/// 2^(attempts-1), at most `max`, spread by `jitter` per mille (−200..=200) and still at most
/// `max`.
pub fn backoff(settings: &config::Connectors, attempts: u32, jitter: i64) -> Duration {
    let doublings = attempts.saturating_sub(1).min(40);
    let base = settings
        .backoff_initial_ms
        .saturating_mul(1u64 << doublings)
        .min(settings.backoff_max_ms);
    let jitter = jitter.clamp(-JITTER_PER_MILLE, JITTER_PER_MILLE);
    let spread = i128::from(base) * i128::from(1_000 + jitter) / 1_000;
    let ms = u64::try_from(spread.max(1)).unwrap_or(u64::MAX);
    Duration::from_millis(ms.min(settings.backoff_max_ms))
}

fn random_jitter() -> i64 {
    let mut bytes = [0u8; 2];
    // Without randomness the wait is the plain doubling: correct, only less spread.
    let _ = getrandom::fill(&mut bytes);
    i64::from(u16::from_le_bytes(bytes)) % (2 * JITTER_PER_MILLE + 1) - JITTER_PER_MILLE
}

/// The outcome to record for attempt number `attempt` that did not succeed.
fn retry_or_dead(settings: &config::Connectors, attempt: u32, error: String) -> Attempt {
    if attempt >= settings.max_attempts {
        Attempt::Dead {
            error: format!("{error} (gave up after {attempt} attempts)"),
        }
    } else {
        let wait = backoff(settings, attempt, random_jitter());
        Attempt::Retry {
            error,
            next_at: Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default(),
        }
    }
}

/// The outbox as admins see it: deliveries listed, dead letters sent again.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
    /// Wakes the dispatcher after an admin's retry, so it is sent at once.
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            wake: Arc::new(Notify::new()),
        }
    }

    /// A page of deliveries, newest first (`GET /admin/outbox`).
    pub async fn list(
        &self,
        connector: Option<String>,
        state: Option<String>,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Page<DeliveryRecord>, OutboxError> {
        let state = match state.as_deref() {
            None => None,
            Some(s) => Some(DeliveryState::parse(s).ok_or_else(|| {
                OutboxError::BadQuery(format!(
                    "`state` `{s}` is not one of `pending`, `delivered`, `dead`"
                ))
            })?),
        };
        self.store
            .blocking(move |s| {
                s.deliveries(connector.as_deref(), state, limit, before)
                    .map_err(OutboxError::Store)
            })
            .await
    }

    /// Sends a dead letter again: pending, due now, attempts reset.
    pub async fn retry(&self, id: u64) -> Result<DeliveryRecord, OutboxError> {
        let outcome = self
            .store
            .write_delivery(DeliveryOp::Revive {
                id,
                now: Utc::now(),
            })
            .await?;
        match outcome {
            DeliveryOutcome::Revived(Ok(d)) => {
                self.wake.notify_one();
                Ok(d)
            }
            DeliveryOutcome::Revived(Err(DeliveryRefusal::NotFound(id))) => {
                Err(OutboxError::NotFound(id))
            }
            DeliveryOutcome::Revived(Err(r)) => Err(OutboxError::NotDead(r.to_string())),
            DeliveryOutcome::Count(_) => Err(OutboxError::Store(StoreError::Corrupt {
                table: "deliveries",
                message: "the writer answered a retry with a count".into(),
            })),
        }
    }
}

/// Delivers outbox events to the serving connectors and runs their syncs.
pub struct Dispatcher {
    store: Store,
    settings: config::Connectors,
    source: Arc<dyn Source>,
    /// Signalled by an admin's retry ([`Outbox::retry`]), so it is sent at once.
    wake: Arc<Notify>,
}

/// A running dispatcher; [`Running::stop`] ends it.
pub struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops picking new work, lets calls in flight record their outcome (bounded), and ends.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!("the outbox dispatcher ended abnormally: {e}");
        }
    }
}

/// State shared by the loop and its delivery tasks.
struct Flight {
    /// (connector, application) of deliveries being attempted now.
    deliveries: Mutex<HashSet<(String, String)>>,
    /// Connectors whose sync is running now.
    syncs: Mutex<HashSet<String>>,
    /// A task finished: its slot and its application are free again.
    done: Notify,
}

impl Dispatcher {
    pub fn new(outbox: &Outbox, settings: config::Connectors, source: Arc<dyn Source>) -> Self {
        Self {
            store: outbox.store.clone(),
            settings,
            source,
            wake: outbox.wake.clone(),
        }
    }

    /// Starts the background task.
    pub fn spawn(self: &Arc<Self>) -> Running {
        let (stop, stopped) = watch::channel(false);
        let this = self.clone();
        let task = tokio::spawn(async move { this.run(stopped).await });
        Running { stop, task }
    }

    async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let flight = Arc::new(Flight {
            deliveries: Mutex::new(HashSet::new()),
            syncs: Mutex::new(HashSet::new()),
            done: Notify::new(),
        });
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let outbox = self.store.outbox_written();
        let mut tasks = JoinSet::new();
        // When each connector's next sync is due, by name (absent: never synced by this process).
        let mut next_sync: BTreeMap<String, Instant> = BTreeMap::new();
        loop {
            if *stopped.borrow() {
                break;
            }
            let targets = self.source.targets();
            let mut wait = self.settings.poll_interval();
            for target in &targets {
                if !target.events.is_empty() {
                    self.schedule(target).await;
                }
            }
            for target in &targets {
                if target.events.is_empty() {
                    continue;
                }
                if let Some(due_in) = self.deliver_due(target, &flight, &slots, &mut tasks).await {
                    wait = wait.min(due_in);
                }
            }
            let now = Instant::now();
            next_sync.retain(|name, _| targets.iter().any(|t| &t.name == name));
            for target in &targets {
                let Some(every) = target.sync_every else {
                    continue;
                };
                let due = *next_sync.entry(target.name.clone()).or_insert(now);
                if due <= now && self.start_sync(target, &flight, &mut tasks) {
                    next_sync.insert(target.name.clone(), now + every);
                }
                if let Some(due) = next_sync.get(&target.name) {
                    wait = wait.min(due.saturating_duration_since(now));
                }
            }
            // Reap finished tasks so the set does not grow.
            while let Some(joined) = tasks.try_join_next() {
                if let Err(e) = joined {
                    tracing::error!("an outbox delivery task ended abnormally: {e}");
                }
            }
            tokio::select! {
                () = outbox.notified() => {}
                () = flight.done.notified() => {}
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
                _ = stopped.changed() => {}
            }
        }
        // Let calls in flight record their outcome; what is cut off is sent again after the
        // restart.
        let drained = tokio::time::timeout(STOP_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "{} connector calls were still running at shutdown; their events will be delivered again",
                tasks.len()
            );
            tasks.abort_all();
        }
    }

    /// Queues every new wanted event of `target`'s connector.
    async fn schedule(&self, target: &Target) {
        loop {
            let step = DeliveryOp::Schedule {
                connector: target.name.clone(),
                events: target.events.clone(),
                limit: SCHEDULE_STEP,
                now: Utc::now(),
            };
            match self.store.write_delivery(step).await {
                Ok(DeliveryOutcome::Count(n)) if n as usize >= SCHEDULE_STEP => continue,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!("cannot schedule outbox events for `{}`: {e}", target.name);
                    return;
                }
            }
        }
    }

    /// Starts the due deliveries of `target` that may go now; returns how soon the next one of
    /// its waiting retries is due, if any.
    async fn deliver_due(
        self: &Arc<Self>,
        target: &Target,
        flight: &Arc<Flight>,
        slots: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
    ) -> Option<Duration> {
        let name = target.name.clone();
        let queue = match self
            .store
            .blocking(move |s| s.pending_deliveries(&name, QUEUE_SCAN))
            .await
        {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!("cannot read the outbox queue of `{}`: {e}", target.name);
                return None;
            }
        };
        let now = Utc::now();
        let mut next_due: Option<DateTime<Utc>> = None;
        let mut seen = HashSet::new();
        for d in queue {
            // INVARIANT: only the oldest pending delivery of an application may go: its later
            // events wait for it.
            if !seen.insert(d.application.clone()) {
                continue;
            }
            let key = (d.connector.clone(), d.application.clone());
            let busy = flight
                .deliveries
                .lock()
                .map(|f| f.contains(&key))
                .unwrap_or(true);
            if busy {
                continue;
            }
            if let Some(at) = d.next_attempt_at.filter(|at| *at > now) {
                next_due = Some(next_due.map_or(at, |n| n.min(at)));
                continue;
            }
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                // Every slot is taken; a finishing call wakes the loop.
                break;
            };
            if let Ok(mut f) = flight.deliveries.lock() {
                f.insert(key.clone());
            }
            let (this, target, flight) = (self.clone(), target.clone(), flight.clone());
            tasks.spawn(async move {
                this.attempt(&target, d).await;
                if let Ok(mut f) = flight.deliveries.lock() {
                    f.remove(&key);
                }
                drop(slot);
                flight.done.notify_one();
            });
        }
        next_due.map(|at| (at - now).to_std().unwrap_or_default())
    }

    /// One attempt of one delivery, its outcome recorded.
    async fn attempt(&self, target: &Target, d: DeliveryRecord) {
        // The round read its queue before the previous attempt of this application (maybe of
        // this very delivery) recorded its outcome: go on only if the delivery is still as read.
        // INVARIANT: the caller holds the (connector, application) slot, so nothing else
        // attempts this application until this one has recorded its outcome.
        let id = d.id;
        match self.store.blocking(move |s| s.delivery(id)).await {
            Ok(Some(now)) if now.state == DeliveryState::Pending && now.attempts == d.attempts => {}
            Ok(_) => return,
            Err(e) => {
                tracing::warn!("cannot read delivery {id}: {e}");
                return;
            }
        }
        let attempt = self.outcome(target, &d).await;
        if let Attempt::Dead { error } = &attempt {
            tracing::warn!(
                "delivery {} of event {} to `{}` is a dead letter: {error}",
                d.id,
                d.seq,
                target.name
            );
        }
        let record = DeliveryOp::Attempted {
            id: d.id,
            release: target.release.clone(),
            attempt,
        };
        if let Err(e) = self.store.write_delivery(record).await {
            // Left pending: it is sent again (same idempotency key).
            tracing::warn!("cannot record the attempt of delivery {}: {e}", d.id);
        }
    }

    /// Calls the connector with delivery `d` and applies what it answered: what the attempt
    /// comes to.
    async fn outcome(&self, target: &Target, d: &DeliveryRecord) -> Attempt {
        let number = d.attempts.saturating_add(1);
        let pending = PendingKv::default();
        let reply = match self.call(target, d, number, &pending).await {
            Ok(reply) => reply,
            Err(e) => return retry_or_dead(&self.settings, number, e),
        };
        match reply.outcome {
            EventOutcome::Ok => {
                // Its kv writes are dropped with its actions: the retry makes both again.
                if let Err(e) = self.apply(target, reply.actions).await {
                    let error = format!("its actions were not applied: {e}");
                    return retry_or_dead(&self.settings, number, error);
                }
                match self.keep(target, pending).await {
                    Ok(()) => Attempt::Delivered { at: Utc::now() },
                    Err(e) => {
                        let error = format!("its kv writes were not stored: {e}");
                        retry_or_dead(&self.settings, number, error)
                    }
                }
            }
            // Its actions are not applied (the retry will produce them again); its kv writes
            // (a renewed login, say) are its own state and are kept.
            EventOutcome::RetryLater(reason) => {
                self.keep_or_warn(target, pending).await;
                retry_or_dead(&self.settings, number, format!("retry later: {reason}"))
            }
            // Final: its actions (e.g. a note saying why) are applied.
            EventOutcome::Failed(reason) => {
                match self.apply(target, reply.actions).await {
                    Ok(()) => self.keep_or_warn(target, pending).await,
                    Err(e) => tracing::warn!(
                        "actions of `{}` for delivery {} were not applied: {e}",
                        target.name,
                        d.id
                    ),
                }
                Attempt::Dead {
                    error: format!("failed: {reason}"),
                }
            }
        }
    }

    /// [`Self::keep`] for an attempt whose outcome does not depend on it.
    async fn keep_or_warn(&self, target: &Target, pending: PendingKv) {
        if let Err(e) = self.keep(target, pending).await {
            tracing::warn!("kv writes of `{}` were not stored: {e}", target.name);
        }
    }

    async fn apply(&self, target: &Target, actions: Vec<Action>) -> Result<(), String> {
        if actions.is_empty() {
            return Ok(());
        }
        self.source.apply(target, actions).await
    }

    /// Stores the held kv writes of a call whose actions were applied.
    async fn keep(&self, target: &Target, pending: PendingKv) -> Result<(), String> {
        let outlet = target.outlet.clone();
        tokio::task::spawn_blocking(move || outlet.keep(pending))
            .await
            .map_err(|e| format!("storing them ended abnormally: {e}"))?
    }

    /// Builds the event (with the application's current view) and calls the connector.
    async fn call(
        &self,
        target: &Target,
        d: &DeliveryRecord,
        attempt: u32,
        pending: &PendingKv,
    ) -> Result<EventReply, String> {
        let (seq, app_id) = (d.seq, d.application.clone());
        let (event, app) = self
            .store
            .blocking(move |s| Ok::<_, StoreError>((s.event(seq)?, s.application(&app_id)?)))
            .await
            .map_err(|e| format!("cannot read the event: {e}"))?;
        let event = event.ok_or_else(|| format!("outbox event {seq} is missing"))?;
        let snapshot = match app {
            Some(app) => self.source.snapshot(app),
            None => "null".to_owned(),
        };
        let event = Event {
            seq,
            kind: event.kind,
            application: event.application,
            at: event.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            data: event.data.to_string(),
            snapshot,
            idempotency_key: d.idempotency_key.clone(),
            attempt,
        };
        let (outlet, pending) = (target.outlet.clone(), pending.clone());
        tokio::task::spawn_blocking(move || outlet.handle_event(event, &pending))
            .await
            .map_err(|e| format!("the call ended abnormally: {e}"))?
    }

    /// Starts `target`'s sync unless one is running; false if one is.
    fn start_sync(
        self: &Arc<Self>,
        target: &Target,
        flight: &Arc<Flight>,
        tasks: &mut JoinSet<()>,
    ) -> bool {
        let started = flight
            .syncs
            .lock()
            .map(|mut s| s.insert(target.name.clone()))
            .unwrap_or(false);
        if !started {
            return false;
        }
        let (this, target, flight) = (self.clone(), target.clone(), flight.clone());
        tasks.spawn(async move {
            let (outlet, pending) = (target.outlet.clone(), PendingKv::default());
            let held = pending.clone();
            let result = tokio::task::spawn_blocking(move || outlet.sync(&held))
                .await
                .map_err(|e| format!("the call ended abnormally: {e}"))
                .and_then(|r| r);
            match result {
                Ok(actions) => {
                    let n = actions.len();
                    let applied = match this.apply(&target, actions).await {
                        Ok(()) => this
                            .keep(&target, pending)
                            .await
                            .map_err(|e| format!("its kv writes were not stored: {e}")),
                        // Its kv writes are dropped: the next sync sees what it saw now.
                        Err(e) => Err(format!("its actions were not applied: {e}")),
                    };
                    match applied {
                        Ok(()) => tracing::info!("sync of `{}`: {n} actions applied", target.name),
                        Err(e) => tracing::warn!("sync of `{}`: {e}", target.name),
                    }
                }
                Err(e) => tracing::warn!("sync of `{}` failed: {e}", target.name),
            }
            if let Ok(mut s) = flight.syncs.lock() {
                s.remove(&target.name);
            }
            flight.done.notify_one();
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::application::{AppKind, Applicant};
    use crate::store::applications::{ApplicationWrite, EventDraft, Expect};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn settings() -> config::Connectors {
        config::Connectors {
            max_attempts: 3,
            backoff_initial_ms: 10,
            backoff_max_ms: 40,
            poll_interval_ms: 20,
            concurrency: 4,
            ..config::Connectors::default()
        }
    }

    #[test]
    fn backoff_doubles_from_the_initial_wait_up_to_the_cap_with_a_bounded_spread() {
        let s = config::Connectors {
            backoff_initial_ms: 1_000,
            backoff_max_ms: 300_000,
            ..config::Connectors::default()
        };
        let ms = |attempts, jitter| backoff(&s, attempts, jitter).as_millis();
        assert_eq!(ms(1, 0), 1_000);
        assert_eq!(ms(2, 0), 2_000);
        assert_eq!(ms(4, 0), 8_000);
        assert_eq!(ms(9, 0), 256_000);
        assert_eq!(ms(10, 0), 300_000, "capped");
        assert_eq!(ms(u32::MAX, 0), 300_000, "no overflow");
        assert_eq!(ms(3, 200), 4_800);
        assert_eq!(ms(3, -200), 3_200);
        assert_eq!(ms(3, 999), 4_800, "the spread is at most 20 %");
        assert_eq!(ms(10, 200), 300_000, "never above the cap");
        for _ in 0..200 {
            let j = random_jitter();
            assert!((-200..=200).contains(&j), "{j}");
        }
    }

    #[test]
    fn the_last_allowed_attempt_makes_a_dead_letter() {
        let s = settings();
        assert!(matches!(
            retry_or_dead(&s, 2, "down".into()),
            Attempt::Retry { .. }
        ));
        match retry_or_dead(&s, 3, "down".into()) {
            Attempt::Dead { error } => assert_eq!(error, "down (gave up after 3 attempts)"),
            other => panic!("{other:?}"),
        }
    }

    /// A connector that records what it receives and answers from a script of outcomes.
    struct Recorder {
        seen: Mutex<Vec<Event>>,
        /// Application ids whose next attempts answer `retry-later` (count per application).
        flaky: Mutex<BTreeMap<String, u32>>,
        refuse: Mutex<BTreeSet<String>>,
        running: AtomicUsize,
        most_running: AtomicUsize,
    }

    impl Outlet for Recorder {
        fn handle_event(&self, event: Event, _: &PendingKv) -> Result<EventReply, String> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_running.fetch_max(now, Ordering::SeqCst);
            std::thread::yield_now();
            self.seen.lock().unwrap().push(event.clone());
            self.running.fetch_sub(1, Ordering::SeqCst);
            if self.refuse.lock().unwrap().contains(&event.application) {
                return Ok(EventReply {
                    outcome: EventOutcome::Failed("refused".into()),
                    actions: vec![],
                });
            }
            let mut flaky = self.flaky.lock().unwrap();
            if let Some(left) = flaky.get_mut(&event.application) {
                if *left > 0 {
                    *left -= 1;
                    return Ok(EventReply {
                        outcome: EventOutcome::RetryLater("down".into()),
                        actions: vec![],
                    });
                }
            }
            Ok(EventReply {
                outcome: EventOutcome::Ok,
                actions: vec![Action::Note(crate::connectors::AppNote {
                    application: crate::connectors::AppRef::Id(event.application),
                    text: "sent".into(),
                })],
            })
        }

        fn sync(&self, _: &PendingKv) -> Result<Vec<Action>, String> {
            Ok(vec![])
        }
    }

    struct Fixed(Target, Arc<AtomicUsize>);

    impl Source for Fixed {
        fn targets(&self) -> Vec<Target> {
            vec![self.0.clone()]
        }
        fn snapshot(&self, app: Application) -> String {
            serde_json::json!({ "id": app.id, "version": app.version }).to_string()
        }
        fn apply<'a>(&'a self, _: &'a Target, _: Vec<Action>) -> BoxFuture<'a, Result<(), String>> {
            self.1.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(()) })
        }
    }

    async fn new_app(store: &Store, n: usize) -> String {
        let at = Utc::now();
        store
            .write_application(ApplicationWrite {
                expect: Expect::New,
                record: Application::draft(
                    "pbg".into(),
                    AppKind::Baru,
                    Applicant {
                        name: format!("Pemohon {n}"),
                        ..Applicant::default()
                    },
                    serde_json::json!({}),
                    "r1".into(),
                    at,
                    at.date_naive(),
                ),
                numbers: vec![],
                events: vec![EventDraft {
                    kind: "application.created".into(),
                    data: serde_json::json!({ "n": 0 }),
                }],
            })
            .await
            .unwrap()
            .unwrap()
            .id
    }

    /// Appends `n` more events about `app` (as changes of it would).
    async fn more_events(store: &Store, app: &str, n: usize) {
        let current = store.application(app).unwrap().unwrap();
        let mut next = current.clone();
        next.version += 1;
        store
            .write_application(ApplicationWrite {
                expect: Expect::Version {
                    seq: crate::domain::application::app_seq(app).unwrap(),
                    version: current.version,
                },
                record: next,
                numbers: vec![],
                events: (1..=n)
                    .map(|i| EventDraft {
                        kind: "application.created".into(),
                        data: serde_json::json!({ "n": i }),
                    })
                    .collect(),
            })
            .await
            .unwrap()
            .unwrap();
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_are_delivered_in_order_per_application_retried_and_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        let recorder = Arc::new(Recorder {
            seen: Mutex::new(vec![]),
            flaky: Mutex::new(BTreeMap::new()),
            refuse: Mutex::new(BTreeSet::new()),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
        });
        let applied = Arc::new(AtomicUsize::new(0));
        let target = Target {
            name: "echo".into(),
            version: "0.1.0".into(),
            release: "r1".into(),
            events: BTreeSet::from(["application.created".to_owned()]),
            sync_every: None,
            outlet: recorder.clone(),
        };
        // An event written before the connector serves is not delivered to it.
        new_app(&store, 0).await;
        let outbox = Outbox::new(store.clone());
        let dispatcher = Arc::new(Dispatcher::new(
            &outbox,
            settings(),
            Arc::new(Fixed(target, applied.clone())),
        ));
        let running = dispatcher.spawn();
        until("the cursor is placed", || {
            store.delivery_cursor("echo").unwrap().is_some()
        })
        .await;

        // The ids the store will give the next applications (APP-1 exists).
        let (flaky, dead) = ("APP-3".to_owned(), "APP-4".to_owned());
        recorder.flaky.lock().unwrap().insert(flaky.clone(), 2);
        recorder.refuse.lock().unwrap().insert(dead.clone());
        let mut apps = Vec::new();
        for n in 1..=6 {
            apps.push(new_app(&store, n).await);
        }
        assert_eq!((&apps[1], &apps[2]), (&flaky, &dead));
        for app in &apps {
            more_events(&store, app, 3).await;
        }
        // 6 applications × 4 events; the refused one's 4 become dead letters one by one.
        let delivered = || {
            store
                .deliveries(Some("echo"), Some(DeliveryState::Delivered), 1000, None)
                .unwrap()
                .items
                .len()
        };
        let dead_count = || {
            store
                .deliveries(Some("echo"), Some(DeliveryState::Dead), 1000, None)
                .unwrap()
                .items
                .len()
        };
        until("every event is delivered or dead", || {
            delivered() == 20 && dead_count() == 4
        })
        .await;

        let seen = recorder.seen.lock().unwrap().clone();
        assert!(seen
            .iter()
            .all(|e| !apps.is_empty() && e.application != "APP-1"));
        for app in &apps {
            let mine: Vec<&Event> = seen.iter().filter(|e| &e.application == app).collect();
            let seqs: Vec<u64> = mine.iter().map(|e| e.seq).collect();
            let mut sorted = seqs.clone();
            sorted.sort_unstable();
            assert_eq!(seqs, sorted, "{app}: in outbox order");
            if app == &flaky {
                // The first event three times (two retry-later, then ok), same key each time.
                assert_eq!(mine.len(), 6, "{app}");
                assert_eq!(mine[0].idempotency_key, mine[2].idempotency_key);
                let attempts: Vec<u32> = mine.iter().take(3).map(|e| e.attempt).collect();
                assert_eq!(attempts, [1, 2, 3]);
            } else {
                assert_eq!(mine.len(), 4, "{app}: each event once");
                let data: Vec<String> = mine.iter().map(|e| e.data.clone()).collect();
                assert_eq!(
                    data,
                    [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]
                );
            }
            assert!(mine.iter().all(|e| e.snapshot.contains(app.as_str())));
        }
        let flaky_first = store
            .deliveries(Some("echo"), Some(DeliveryState::Delivered), 1000, None)
            .unwrap()
            .items
            .iter()
            .filter_map(|d| d.record())
            .find(|d| d.application == flaky && d.attempts == 3)
            .cloned()
            .expect("the flaky application's first delivery took three attempts");
        assert_eq!(flaky_first.last_error.as_deref(), Some("retry later: down"));
        assert_eq!(flaky_first.release.as_deref(), Some("r1"));
        assert!(
            recorder.most_running.load(Ordering::SeqCst) <= 4,
            "at most `concurrency` calls at once"
        );
        assert_eq!(applied.load(Ordering::SeqCst), 20, "actions applied per ok");

        // An admin's retry sends a dead letter again.
        recorder.refuse.lock().unwrap().clear();
        let dead_one = store
            .deliveries(Some("echo"), Some(DeliveryState::Dead), 1, None)
            .unwrap()
            .items[0]
            .record()
            .unwrap()
            .id;
        let err = outbox.retry(flaky_first.id).await.unwrap_err();
        assert!(matches!(err, OutboxError::NotDead(_)), "{err}");
        assert!(matches!(
            outbox.retry(999_999).await.unwrap_err(),
            OutboxError::NotFound(999_999)
        ));
        outbox.retry(dead_one).await.unwrap();
        until("the retried one is delivered", || {
            store.delivery(dead_one).unwrap().unwrap().state == DeliveryState::Delivered
        })
        .await;
        assert_eq!(store.delivery(dead_one).unwrap().unwrap().attempts, 1);
        running.stop().await;
    }

    /// The `echo` fixture as the host loads it, delivering through a store on disk.
    fn echo_target(store: &Store, name: &str) -> Target {
        echo_target_with(store, name, "")
    }

    /// The `echo` fixture with `config` (TOML lines) added to its manifest's `[config]`.
    fn echo_target_with(store: &Store, name: &str, config: &str) -> Target {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/fixtures/echo");
        let manifest = std::fs::read_to_string(dir.join("connector.toml"))
            .unwrap()
            .replace("[config]\n", &format!("[config]\n{config}\n"))
            .into_bytes();
        let files = BTreeMap::from([
            ("connector.toml".to_owned(), manifest),
            (
                "echo.wasm".to_owned(),
                std::fs::read(dir.join("echo.wasm")).unwrap(),
            ),
        ]);
        let host = crate::connectors::ConnectorHost::new(None).unwrap();
        let connector = host.load("echo", &files, None).unwrap();
        let env = CallEnv {
            kv: Arc::new(store.clone()),
            ..CallEnv::detached()
        };
        Target {
            name: name.to_owned(),
            version: connector.version().to_owned(),
            release: "r1".into(),
            events: BTreeSet::from(["application.created".to_owned()]),
            sync_every: None,
            outlet: Arc::new(ConnectorOutlet {
                connector,
                env: Arc::new(env),
            }),
        }
    }

    /// Delivery through the outbox end to end with the real `echo` component (which stores
    /// each event in its kv space, a durable write): `n` events of `n` applications written
    /// while the dispatcher is stopped, then the time until all are delivered. Printed, never
    /// asserted: `cargo test -p pintu --lib -- --ignored delivery_throughput --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement; run it on purpose"]
    async fn delivery_throughput_with_echo() {
        let n: usize = std::env::var("PINTU_BENCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 512).unwrap();
        let target = echo_target(&store, "echo");
        let outbox = Outbox::new(store.clone());
        let settings = config::Connectors::default();
        let concurrency = settings.concurrency;
        let dispatcher = Arc::new(Dispatcher::new(
            &outbox,
            settings,
            Arc::new(Fixed(target, Arc::new(AtomicUsize::new(0)))),
        ));
        let running = dispatcher.spawn();
        until("the cursor is placed", || {
            store.delivery_cursor("echo").unwrap().is_some()
        })
        .await;
        running.stop().await;
        // Written concurrently, as many clients would: they share commits.
        let mut writers = JoinSet::new();
        for w in 0..16 {
            let store = store.clone();
            writers.spawn(async move {
                for i in (w..n).step_by(16) {
                    new_app(&store, i).await;
                }
            });
        }
        while writers.join_next().await.is_some() {}
        let started = Instant::now();
        let running = dispatcher.spawn();
        let delivered = || {
            store
                .deliveries(Some("echo"), Some(DeliveryState::Delivered), n, None)
                .unwrap()
                .items
                .len()
        };
        until("every event is delivered", || delivered() == n).await;
        let took = started.elapsed();
        running.stop().await;
        println!(
            "delivery through the outbox, echo component (kv write per event), {n} events of {n} applications, concurrency {concurrency}: {:.0} events/s ({:.2} s)",
            n as f64 / took.as_secs_f64(),
            took.as_secs_f64()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_echo_component_receives_each_event_once_with_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        let target = echo_target(&store, "echo");
        let outbox = Outbox::new(store.clone());
        let dispatcher = Arc::new(Dispatcher::new(
            &outbox,
            settings(),
            Arc::new(Fixed(target, Arc::new(AtomicUsize::new(0)))),
        ));
        let running = dispatcher.spawn();
        until("the cursor is placed", || {
            store.delivery_cursor("echo").unwrap().is_some()
        })
        .await;
        let app = new_app(&store, 1).await;
        more_events(&store, &app, 2).await;
        until("three deliveries are delivered", || {
            store
                .deliveries(Some("echo"), Some(DeliveryState::Delivered), 10, None)
                .unwrap()
                .items
                .len()
                == 3
        })
        .await;
        running.stop().await;
        // Echo keeps what it handled in its kv space, in the store.
        let kv = crate::connectors::KvSpace::get(&store, "echo", "events")
            .unwrap()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        for key in ["echo:1", "echo:2", "echo:3"] {
            assert_eq!(kv.matches(key).count(), 1, "{key} once in {kv}");
        }
    }

    /// Applies nothing while `fails` is above zero (counting down), then everything.
    struct ApplyFails(Target, AtomicUsize);

    impl Source for ApplyFails {
        fn targets(&self) -> Vec<Target> {
            vec![self.0.clone()]
        }
        fn snapshot(&self, app: Application) -> String {
            serde_json::json!({ "id": app.id }).to_string()
        }
        fn apply<'a>(&'a self, _: &'a Target, _: Vec<Action>) -> BoxFuture<'a, Result<(), String>> {
            let failed = self
                .1
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            Box::pin(async move {
                if failed {
                    Err("the store is unavailable".into())
                } else {
                    Ok(())
                }
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kv_writes_of_an_attempt_whose_actions_fail_are_dropped_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        // Echo notes each event in kv and asks for a note action on the application.
        let target = echo_target_with(&store, "echo", "note_events = true");
        let outbox = Outbox::new(store.clone());
        let dispatcher = Arc::new(Dispatcher::new(
            &outbox,
            settings(),
            Arc::new(ApplyFails(target, AtomicUsize::new(1))),
        ));
        let running = dispatcher.spawn();
        until("the cursor is placed", || {
            store.delivery_cursor("echo").unwrap().is_some()
        })
        .await;
        new_app(&store, 1).await;
        let delivered = || {
            store
                .deliveries(Some("echo"), Some(DeliveryState::Delivered), 10, None)
                .unwrap()
                .items
        };
        until("the event is delivered", || !delivered().is_empty()).await;
        running.stop().await;
        assert_eq!(delivered()[0].record().unwrap().attempts, 2);
        // The first attempt's kv write went with its failed actions: echo's record shows the
        // event once, from the attempt that was applied.
        let kv = crate::connectors::KvSpace::get(&store, "echo", "events")
            .unwrap()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        assert_eq!(kv.matches("echo:1").count(), 1, "{kv}");
        assert!(kv.contains(r#""attempt":2"#), "{kv}");
    }
}
