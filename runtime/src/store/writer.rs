//! The single writer thread behind group commit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::oneshot;

use super::applications::{ApplicationWrite, WriteOutcome};
use super::deliveries::{DeliveryOp, DeliveryOutcome};
use super::records::{
    ActivationRecord, AuditRecord, DecisionRecord, PassRecord, PinRecord, ReleaseRecord,
    ReloadRecord, TokenRecord, UserRecord,
};
use super::retention::{self, PrunePlan};
use super::{
    encode, Shared, StoreError, StoredFolders, ACTIVATIONS, AUDIT, CONNECTOR_KV, DECISIONS,
    DECISIONS_BY_PERMIT, META, META_ACTIVE, META_PIN, RELEASES, RELOADS, TOKENS, USERS,
};

/// One change to the database. Changes submitted together land in the same transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Store a release and its sources (idempotent: the id is the content hash).
    Release {
        record: ReleaseRecord,
        sources: BTreeMap<String, std::sync::Arc<str>>,
    },
    /// Store the connector files of a release (`{"<name>/<file>": bytes}`), in the same list
    /// as its `Release`.
    ReleasePlugins {
        release: String,
        files: BTreeMap<String, Vec<u8>>,
    },
    /// Record that a release passed all its fixtures (replacing what was recorded before).
    Passed(PassRecord),
    /// Make a stored release the active one and log the activation.
    Activate(ActivationRecord),
    Reload(ReloadRecord),
    Decision(DecisionRecord),
    Token {
        hash: String,
        record: TokenRecord,
    },
    /// Create or replace a user (by username).
    User(UserRecord),
    /// Forget a token (by the hash it is stored under); a no-op if it is already gone.
    RevokeToken {
        hash: String,
    },
    Audit(AuditRecord),
    /// Set or clear the admin's pin.
    Pin(Option<PinRecord>),
    /// One bounded retention step; its result is the number of records removed (in place of a
    /// sequence number).
    Prune(PrunePlan),
    /// A conditional change of one application; it may be refused without failing the batch.
    Application(Box<ApplicationWrite>),
    /// Set (`Some`) or delete (`None`) one key of a connector's key-value space.
    ConnectorKv {
        connector: String,
        key: String,
        value: Option<Vec<u8>>,
    },
    /// Scheduling deliveries to a connector, or recording an attempt (`store::deliveries`).
    Delivery(DeliveryOp),
}

/// What one operation produced.
#[derive(Debug)]
pub enum Outcome {
    /// The sequence number of an appended record (or a prune step's count).
    Seq(u64),
    /// An application change: written, or refused with nothing written.
    Application(Box<WriteOutcome>),
    Delivery(DeliveryOutcome),
}

/// The sequence numbers among `outcomes`, in order (what plain writes answer).
pub(super) fn seqs(outcomes: Vec<Outcome>) -> Vec<u64> {
    outcomes
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Seq(s) => Some(s),
            Outcome::Application(_) | Outcome::Delivery(_) => None,
        })
        .collect()
}

/// First wait before reopening the database after a storage fault; doubled up to the maximum.
const RECOVERY_FIRST_WAIT: Duration = Duration::from_millis(100);
const RECOVERY_MAX_WAIT: Duration = Duration::from_secs(5);

struct Job {
    ops: Vec<Op>,
    done: oneshot::Sender<Result<Vec<Outcome>, StoreError>>,
}

pub struct Writer {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    commits: Arc<AtomicU64>,
    /// Signalled after each commit that appended outbox events, so that the dispatcher wakes at
    /// once instead of polling.
    outbox: Arc<tokio::sync::Notify>,
}

impl Writer {
    pub fn start(db: Arc<Shared>, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        let outbox = Arc::new(tokio::sync::Notify::new());
        let signal = outbox.clone();
        let thread = std::thread::Builder::new()
            .name("pintu-store-writer".into())
            .spawn(move || run(&db, &rx, max_batch.max(1), &counter, &signal))
            .ok();
        Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(thread),
            commits,
            outbox,
        }
    }

    /// Notified (one stored permit) after every commit that may have appended outbox events.
    pub fn outbox(&self) -> Arc<tokio::sync::Notify> {
        self.outbox.clone()
    }

    pub fn submit(
        &self,
        ops: Vec<Op>,
    ) -> Result<oneshot::Receiver<Result<Vec<Outcome>, StoreError>>, StoreError> {
        let (done, rx) = oneshot::channel();
        let guard = self.tx.lock().map_err(|_| StoreError::Closed)?;
        let tx = guard.as_ref().ok_or(StoreError::Closed)?;
        tx.send(Job { ops, done }).map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// Durable commits made so far (one per batch).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

fn run(
    db: &Shared,
    rx: &mpsc::Receiver<Job>,
    max_batch: usize,
    commits: &AtomicU64,
    outbox: &tokio::sync::Notify,
) {
    let mut wait = RECOVERY_FIRST_WAIT;
    let mut next_attempt = Instant::now();
    let mut folders = StoredFolders::default();
    loop {
        // While faulted, wake up on a timer too: recovery must not depend on traffic.
        let first = if db.fault().is_some() {
            match rx.recv_timeout(next_attempt.saturating_duration_since(Instant::now())) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            }
        };
        if let Some(reason) = db.fault() {
            if Instant::now() >= next_attempt {
                match recover(db) {
                    Ok(()) => {
                        tracing::info!("storage recovered: writes are accepted again");
                        db.set_fault(None);
                        wait = RECOVERY_FIRST_WAIT;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "storage still unavailable ({reason}): {e}; retrying in {wait:?}"
                        );
                        next_attempt = Instant::now() + wait;
                        wait = (wait * 2).min(RECOVERY_MAX_WAIT);
                    }
                }
            }
            if let Some(reason) = db.fault() {
                // Answer at once: a caller must not wait out the backoff.
                if let Some(job) = first {
                    let _ = job.done.send(Err(StoreError::Unavailable(reason)));
                }
                continue;
            }
        }
        let Some(first) = first else { continue };
        let mut batch = vec![first];
        let mut ops = batch.iter().map(|j| j.ops.len()).sum::<usize>();
        while ops < max_batch {
            match rx.try_recv() {
                Ok(job) => {
                    ops += job.ops.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        match commit(db, &batch, &mut folders) {
            Ok(seqs) => {
                commits.fetch_add(1, Ordering::Relaxed);
                let appended_events = batch
                    .iter()
                    .flat_map(|j| &j.ops)
                    .any(|op| matches!(op, Op::Application(w) if !w.events.is_empty()));
                if appended_events {
                    outbox.notify_one();
                }
                for (job, seqs) in batch.into_iter().zip(seqs) {
                    let _ = job.done.send(Ok(seqs));
                }
            }
            Err(e) => {
                tracing::error!("store commit failed: {e}");
                if let StoreError::Unavailable(reason) = &e {
                    // redb refuses every later write after an I/O error until the database is
                    // reopened; from now on the writer reopens it with backoff.
                    db.set_fault(Some(reason.clone()));
                }
                let shared = match e {
                    StoreError::Unavailable(reason) => Err(reason),
                    other => Ok(std::sync::Arc::new(other)),
                };
                for job in batch {
                    let _ = job.done.send(Err(match &shared {
                        Err(reason) => StoreError::Unavailable(reason.clone()),
                        Ok(e) => StoreError::Batch(e.clone()),
                    }));
                }
            }
        }
    }
}

/// Size of the record written to prove the database takes writes again. An empty commit is not
/// proof: it can succeed on a full disk by rewriting pages the file already has.
const PROBE_BYTES: usize = 1024 * 1024;
const META_PROBE: &str = "write_probe";

/// Reopens the database and proves with durable commits that it takes writes again: a 1 MiB
/// record written, then removed.
fn recover(db: &Shared) -> Result<(), StoreError> {
    db.reopen()?;
    let handle = db.db()?;
    let probe = encode(&"0".repeat(PROBE_BYTES))?;
    for write in [true, false] {
        let mut txn = handle.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Storage(e.into()))?;
        {
            let mut meta = txn.open_table(META)?;
            if write {
                meta.insert(META_PROBE, probe.as_slice())?;
            } else {
                meta.remove(META_PROBE)?;
            }
        }
        txn.commit()?;
    }
    Ok(())
}

fn commit(
    db: &Shared,
    batch: &[Job],
    folders: &mut StoredFolders,
) -> Result<Vec<Vec<Outcome>>, StoreError> {
    let db = db.db()?;
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| StoreError::Storage(e.into()))?;
    let mut all = Vec::with_capacity(batch.len());
    for job in batch {
        let mut outcomes = Vec::new();
        for op in &job.ops {
            if let Op::Application(write) = op {
                // A refusal is an answer for this op alone; only a storage error fails the batch.
                let outcome = super::applications::apply(&txn, write)?;
                outcomes.push(Outcome::Application(Box::new(outcome)));
            } else if let Op::Delivery(d) = op {
                outcomes.push(Outcome::Delivery(super::deliveries::apply(&txn, d)?));
            } else if let Some(seq) = apply(&txn, op, folders)? {
                outcomes.push(Outcome::Seq(seq));
            }
        }
        all.push(outcomes);
    }
    txn.commit()?;
    Ok(all)
}

fn append(table: &mut Table<'_, u64, &[u8]>, bytes: &[u8]) -> Result<u64, StoreError> {
    let next = table.last()?.map_or(1, |(k, _)| k.value() + 1);
    table.insert(next, bytes)?;
    Ok(next)
}

fn apply(
    txn: &WriteTransaction,
    op: &Op,
    folders: &mut StoredFolders,
) -> Result<Option<u64>, StoreError> {
    Ok(match op {
        Op::Release { record, sources } => {
            txn.open_table(RELEASES)?
                .insert(record.id.as_str(), encode(record)?.as_slice())?;
            folders.put(txn, &record.id, sources)?;
            None
        }
        Op::ReleasePlugins { release, files } => {
            super::plugins::put_plugins(txn, release, files)?;
            None
        }
        Op::Passed(pass) => {
            txn.open_table(super::RELEASE_PASSES)?
                .insert(pass.release.as_str(), encode(pass)?.as_slice())?;
            None
        }
        Op::Activate(activation) => {
            txn.open_table(META)?
                .insert(META_ACTIVE, encode(&activation.release)?.as_slice())?;
            Some(append(
                &mut txn.open_table(ACTIVATIONS)?,
                &encode(activation)?,
            )?)
        }
        Op::Reload(r) => Some(append(&mut txn.open_table(RELOADS)?, &encode(r)?)?),
        Op::Decision(d) => {
            let bytes = encode(d)?;
            let seq = append(&mut txn.open_table(DECISIONS)?, &bytes)?;
            txn.open_table(DECISIONS_BY_PERMIT)?
                .insert((d.permit.as_str(), seq), ())?;
            let total = retention::decision_bytes(txn)?;
            retention::set_decision_bytes(txn, total.saturating_add(bytes.len() as u64))?;
            Some(seq)
        }
        Op::Token { hash, record } => {
            txn.open_table(TOKENS)?
                .insert(hash.as_str(), encode(record)?.as_slice())?;
            None
        }
        Op::User(user) => {
            txn.open_table(USERS)?
                .insert(user.username.as_str(), encode(user)?.as_slice())?;
            None
        }
        Op::RevokeToken { hash } => {
            txn.open_table(TOKENS)?.remove(hash.as_str())?;
            None
        }
        Op::Audit(a) => Some(append(&mut txn.open_table(AUDIT)?, &encode(a)?)?),
        Op::ConnectorKv {
            connector,
            key,
            value,
        } => {
            let mut kv = txn.open_table(CONNECTOR_KV)?;
            match value {
                Some(v) => {
                    kv.insert((connector.as_str(), key.as_str()), v.as_slice())?;
                }
                None => {
                    kv.remove((connector.as_str(), key.as_str()))?;
                }
            }
            None
        }
        Op::Pin(pin) => {
            let mut meta = txn.open_table(META)?;
            match pin {
                Some(p) => {
                    meta.insert(META_PIN, encode(p)?.as_slice())?;
                }
                None => {
                    meta.remove(META_PIN)?;
                }
            }
            None
        }
        Op::Prune(plan) => Some(retention::prune(txn, plan)?),
        // Applied by `commit` with their own outcomes.
        Op::Application(_) | Op::Delivery(_) => None,
    })
}
