//! The decision and audit recorder: what the office can later prove it decided and who changed
//! what, written durably, read back a page at a time, and pruned by the retention settings.

use chrono::Utc;
use serde_json::Value as Json;

use crate::config::Retention;
use crate::store::records::{AuditRecord, DecisionRecord};
use crate::store::{Op, Page, Store, StoreError};

/// Who did something: recorded as `actor` of an audit entry and `by` of an activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The holder of the role token with this public id.
    Token(String),
    /// A user (by username), whichever of its tokens it used.
    User(String),
    /// The command line (`pintu token create`, `pintu user ...`).
    Cli,
}

impl From<&crate::auth::Principal> for Actor {
    fn from(p: &crate::auth::Principal) -> Self {
        match &p.user {
            Some(user) => Actor::User(user.clone()),
            None => Actor::Token(p.token_id.clone()),
        }
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Token(id) => write!(f, "token:{id}"),
            Actor::User(name) => f.write_str(name),
            Actor::Cli => f.write_str("cli"),
        }
    }
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Reload,
    Activate,
    CreateToken,
    RevokeToken,
    UserCreated,
    UserUpdated,
    UserTokenCreated,
    /// A dead letter of the outbox sent again.
    RetryDelivery,
}

impl AuditAction {
    /// The name stored in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Reload => "reload",
            AuditAction::Activate => "activate",
            AuditAction::CreateToken => "create_token",
            AuditAction::RevokeToken => "revoke_token",
            AuditAction::UserCreated => "user_created",
            AuditAction::UserUpdated => "user_updated",
            AuditAction::UserTokenCreated => "user_token_created",
            AuditAction::RetryDelivery => "retry_delivery",
        }
    }
}

/// The audit entry `actor` did `action` with `detail`, ready to write.
pub fn audit_op(actor: &Actor, action: AuditAction, detail: Json) -> Op {
    Op::Audit(AuditRecord {
        seq: 0,
        at: Utc::now(),
        actor: actor.to_string(),
        action: action.as_str().to_owned(),
        detail,
    })
}

pub struct Recorder {
    store: Store,
    retention: Retention,
}

impl Recorder {
    pub(crate) fn new(store: Store, retention: Retention) -> Self {
        Self { store, retention }
    }

    /// Why decisions cannot be recorded now (disk full, I/O error), if they cannot.
    pub fn fault(&self) -> Option<String> {
        self.store.fault()
    }

    /// Writes a decision; returns once it is durable.
    pub async fn decision(&self, record: DecisionRecord) -> Result<(), StoreError> {
        self.store
            .write(vec![Op::Decision(record)])
            .await
            .map(|_| ())
    }

    /// Writes an audit entry; returns once it is durable.
    pub async fn audit(
        &self,
        actor: &Actor,
        action: AuditAction,
        detail: Json,
    ) -> Result<(), StoreError> {
        self.store
            .write(vec![audit_op(actor, action, detail)])
            .await
            .map(|_| ())
    }

    /// One page of the decision log, newest first, optionally of one permit type.
    pub async fn decisions(
        &self,
        permit: Option<String>,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Page<DecisionRecord>, StoreError> {
        self.store
            .blocking(move |s| s.decisions(permit.as_deref(), limit, before))
            .await
    }

    /// One page of the audit log, newest first.
    pub async fn audit_log(
        &self,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Page<AuditRecord>, StoreError> {
        self.store.blocking(move |s| s.audit(limit, before)).await
    }

    /// Prunes by the retention settings until nothing more is due; returns records removed.
    pub async fn prune_now(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let plan = self.retention.plan(Utc::now());
            let removed = self.store.prune(plan).await?;
            total += removed;
            if removed == 0 {
                return Ok(total);
            }
            // Let queued evaluations through between steps.
            tokio::task::yield_now().await;
        }
    }

    /// Starts the background pruner: one run shortly after start, then every
    /// `prune_interval_secs`; each run takes bounded steps until nothing is left to remove.
    pub fn spawn_retention(self: &std::sync::Arc<Self>) -> tokio::task::JoinHandle<()> {
        let recorder = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(recorder.retention.prune_interval());
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match recorder.prune_now().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("retention: pruned {n} records"),
                    Err(StoreError::Closed) => return,
                    Err(e) => tracing::warn!("retention: pruning stopped: {e}"),
                }
            }
        })
    }
}
