//! The running service: the active release, candidate builds and swaps, evaluations and what
//! they record. HTTP lives in `api`; this is what the handlers call.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwapOption;
use chrono::Utc;
use serde_json::Value as Json;

use crate::config::Config;
use crate::diagnostic::Diagnostic;
use crate::metrics::Metrics;
use crate::release::{self, BuildReport, Release, SourceTree};
use crate::scripts::{ScriptError, ScriptErrorKind};
use crate::store::records::{
    ActivationRecord, AuditRecord, DecisionRecord, PinRecord, ReleaseRecord, ReloadRecord,
};
use crate::store::{Op, Store, StoreError};

/// What a request may evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Validate,
    Levy,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Validate => "validate",
            Kind::Levy => "levy",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("no release is active yet")]
    NoRelease,
    #[error("unknown permit type `{0}`")]
    UnknownPermit(String),
    #[error("rule failed: {0}")]
    Script(ScriptError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("permit type `{0}` has no levy")]
    NoLevy(String),
    #[error("evaluation was interrupted")]
    Interrupted,
}

/// The result of an evaluation, as the API returns it.
pub enum Evaluation {
    Valid {
        output: Json,
    },
    /// Levy requested on data that fails validation.
    Invalid {
        errors: Json,
        release: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("unknown release `{0}`")]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("build was interrupted")]
    Interrupted,
}

/// The change to the admin's pin (see [`PinRecord`]) written with an activation.
#[derive(Debug, Clone)]
enum PinChange {
    /// An admin chose this release: keep it while the folder stays as it is.
    Set(PinRecord),
    /// Leave any pin as it is (start-up restores).
    Keep,
    /// The folder's own release replaces any pin.
    Clear,
}

/// What happened to a candidate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadOutcome {
    pub accepted: bool,
    /// The candidate matched the active release; nothing was rebuilt.
    pub unchanged: bool,
    pub release: String,
    pub active: Option<String>,
    pub report: BuildReport,
}

pub struct App {
    pub config: Config,
    pub store: Store,
    pub metrics: Metrics,
    active: ArcSwapOption<Release>,
    /// One candidate at a time: builds are whole-tree and the last writer must win.
    reload_lock: tokio::sync::Mutex<Option<String>>,
    /// Bounds the blocking threads scripts occupy under load.
    evaluations: tokio::sync::Semaphore,
}

impl App {
    pub fn new(config: Config, store: Store) -> Self {
        let evaluations =
            tokio::sync::Semaphore::new(config.limits.max_concurrent_evaluations.max(1));
        Self {
            config,
            store,
            metrics: Metrics::default(),
            active: ArcSwapOption::empty(),
            reload_lock: tokio::sync::Mutex::new(None),
            evaluations,
        }
    }

    /// The release serving requests now; a request keeps its `Arc` to the end, so a swap never
    /// changes the rules under a running evaluation.
    pub fn current(&self) -> Option<Arc<Release>> {
        self.active.load_full()
    }

    /// Builds the rules folder and activates it if everything passes. At start-up a broken
    /// folder falls back to the last good release in the store.
    pub async fn start(&self) -> Result<ReloadOutcome, StoreError> {
        if let Some(pin) = self.store.pin()? {
            if self.folder_id().await.as_deref() == Some(pin.folder.as_str()) {
                match self
                    .activate_stored(
                        &pin.release,
                        "startup",
                        "kept: an admin reactivated it",
                        false,
                    )
                    .await
                {
                    Ok(o) if o.accepted => {
                        tracing::info!(
                            "serving release {} that an admin reactivated; the rules folder is unchanged since",
                            pin.release
                        );
                        return Ok(o);
                    }
                    Ok(_) | Err(_) => {
                        tracing::warn!("cannot restore pinned release {}", pin.release)
                    }
                }
            }
        }
        let outcome = self.reload_from_folder("startup", false).await?;
        if outcome.accepted {
            return Ok(outcome);
        }
        for d in &outcome.report.diagnostics {
            tracing::warn!("{d}");
        }
        match self.store.active_release()? {
            Some(id) => match self
                .activate_stored(&id, "startup", "rules folder does not build", false)
                .await
            {
                Ok(o) if o.accepted => {
                    tracing::warn!(
                        "rules folder does not build; serving the last good release {id} from the store"
                    );
                }
                Ok(o) => tracing::error!("stored release {id} does not build either: {}", o.report.summary()),
                Err(e) => tracing::error!("cannot restore release {id}: {e}"),
            },
            None => tracing::error!("rules folder does not build and no earlier release is stored; serving nothing until it is fixed"),
        }
        Ok(outcome)
    }

    /// The content id of the rules folder as it is now, if it reads.
    async fn folder_id(&self) -> Option<String> {
        let dir = self.config.rules_dir.clone();
        let limits = self.config.limits.clone();
        tokio::task::spawn_blocking(move || SourceTree::read_dir(&dir, &limits).ok())
            .await
            .ok()
            .flatten()
            .map(|t| t.id().to_owned())
    }

    /// Reads the folder, builds a candidate and swaps it in if it passes. Unless `force`d (an
    /// admin's explicit reload), a folder unchanged since an admin reactivated another release
    /// leaves that release serving.
    pub async fn reload_from_folder(
        &self,
        trigger: &str,
        force: bool,
    ) -> Result<ReloadOutcome, StoreError> {
        let mut last_rejected = self.reload_lock.lock().await;
        let dir = self.config.rules_dir.clone();
        let limits = self.config.limits.clone();
        let tree = tokio::task::spawn_blocking(move || SourceTree::read_dir(&dir, &limits))
            .await
            .map_err(|e| StoreError::Storage(e.to_string()))?;
        let tree = match tree {
            Ok(t) => t,
            Err(diagnostics) => {
                let report = BuildReport {
                    release: String::new(),
                    diagnostics,
                    ..BuildReport::default()
                };
                return self.reject(trigger, report).await;
            }
        };
        let active = self.current().map(|r| r.id.clone());
        let pinned_folder = match self.store.pin()? {
            Some(pin) if !force && active.as_deref() == Some(pin.release.as_str()) => {
                Some(pin.folder)
            }
            _ => None,
        };
        if pinned_folder.as_deref() == Some(tree.id()) {
            return Ok(ReloadOutcome {
                accepted: true,
                unchanged: true,
                release: tree.id().to_owned(),
                active: active.clone(),
                report: BuildReport {
                    release: tree.id().to_owned(),
                    ..BuildReport::default()
                },
            });
        }
        if active.as_deref() == Some(tree.id()) || last_rejected.as_deref() == Some(tree.id()) {
            // Editors and `touch` produce events without changes; nothing to do.
            let accepted = active.as_deref() == Some(tree.id());
            return Ok(ReloadOutcome {
                accepted,
                unchanged: true,
                release: tree.id().to_owned(),
                active,
                report: BuildReport {
                    release: tree.id().to_owned(),
                    ..BuildReport::default()
                },
            });
        }
        let outcome = self
            .build_and_activate(tree, trigger, "rules folder changed", PinChange::Clear)
            .await?;
        *last_rejected = (!outcome.accepted).then(|| outcome.release.clone());
        Ok(outcome)
    }

    /// Rebuilds a stored release from its sources and makes it the active one. With `pin`
    /// (an admin's choice) it stays active while the rules folder stays as it is now.
    pub async fn activate_stored(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        pin: bool,
    ) -> Result<ReloadOutcome, ReleaseError> {
        let pin = if pin {
            PinChange::Set(PinRecord {
                release: id.to_owned(),
                folder: self.folder_id().await.unwrap_or_default(),
            })
        } else {
            PinChange::Keep
        };
        let _guard = self.reload_lock.lock().await;
        let sources = self
            .store
            .release_sources(id)?
            .ok_or_else(|| ReleaseError::Unknown(id.to_owned()))?;
        let tree = SourceTree::from_files(sources);
        Ok(self.build_and_activate(tree, by, reason, pin).await?)
    }

    async fn build_and_activate(
        &self,
        tree: SourceTree,
        by: &str,
        reason: &str,
        pin: PinChange,
    ) -> Result<ReloadOutcome, StoreError> {
        let limits = self.config.limits.clone();
        let built = tokio::task::spawn_blocking(move || release::build(tree, &limits))
            .await
            .map_err(|e| StoreError::Storage(format!("candidate build crashed: {e}")))?;
        let release = match built {
            Ok(r) => r,
            Err(report) => return self.reject(by, report).await,
        };
        let report = release.report.clone();
        let now = Utc::now();
        let mut ops = Vec::new();
        if self.store.release(&release.id)?.is_none() {
            ops.push(Op::Release {
                record: ReleaseRecord {
                    id: release.id.clone(),
                    created_at: now,
                    created_by: by.to_owned(),
                    permits: release.permits.keys().cloned().collect(),
                    fixtures: report.fixtures_passed,
                    files: release.sources.files().len(),
                },
                sources: release.sources.files().clone(),
            });
        }
        ops.push(Op::Activate(ActivationRecord {
            release: release.id.clone(),
            at: now,
            by: by.to_owned(),
            reason: reason.to_owned(),
        }));
        ops.push(Op::Reload(reload_record(by, &report, true)));
        match pin {
            PinChange::Keep => {}
            PinChange::Clear => ops.push(Op::Pin(None)),
            PinChange::Set(p) => ops.push(Op::Pin(Some(p))),
        }
        // INVARIANT: the release is durable before it serves, so a restart can always return to it.
        self.store.write(ops).await?;
        let id = release.id.clone();
        let permit_ids: Vec<String> = release.permits.keys().cloned().collect();
        self.active.store(Some(Arc::new(release)));
        self.metrics.reload(true);
        self.metrics.set_active_release(&id);
        tracing::info!(
            "activated {} — permit types: {}",
            report.summary(),
            permit_ids.join(", ")
        );
        Ok(ReloadOutcome {
            accepted: true,
            unchanged: false,
            release: id.clone(),
            active: Some(id),
            report,
        })
    }

    async fn reject(
        &self,
        trigger: &str,
        report: BuildReport,
    ) -> Result<ReloadOutcome, StoreError> {
        tracing::warn!("rejected {}", report.summary());
        for d in report.diagnostics.iter().take(20) {
            tracing::warn!("  {d}");
        }
        self.store
            .write(vec![Op::Reload(reload_record(trigger, &report, false))])
            .await?;
        self.metrics.reload(false);
        Ok(ReloadOutcome {
            accepted: false,
            unchanged: false,
            release: report.release.clone(),
            active: self.current().map(|r| r.id.clone()),
            report,
        })
    }

    /// Validates (and for `Levy`, assesses) `data` against permit `permit_id` of the active
    /// release, and records the decision durably before returning.
    pub async fn evaluate(
        &self,
        permit_id: &str,
        kind: Kind,
        data: Json,
    ) -> Result<Evaluation, EvalError> {
        let release = self.current().ok_or(EvalError::NoRelease)?;
        let permit_name = permit_id.to_owned();
        let today = Utc::now()
            .with_timezone(&self.config.utc_offset)
            .date_naive();
        let rel = release.clone();
        let slot = self
            .evaluations
            .acquire()
            .await
            .map_err(|_| EvalError::Interrupted)?;
        // Scripts are CPU work bounded by their limits; keep them off the async workers. The
        // input comes back for the decision record instead of being copied.
        let (result, elapsed, data) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result =
                crate::scripts::with_today(Some(today), || run(&rel, &permit_name, kind, &data));
            (result, started.elapsed(), data)
        })
        .await
        .map_err(|_| EvalError::Interrupted)?;
        // The slot bounds script work only; waiting for the durable write must not hold it, or
        // it would also cap how many decisions share one group commit.
        drop(slot);

        let (output, outcome) = match &result {
            Ok(Evaluation::Valid { output }) => (output.clone(), "ok"),
            Ok(Evaluation::Invalid { errors, .. }) => (
                serde_json::json!({ "valid": false, "errors": errors }),
                "invalid",
            ),
            Err(EvalError::Script(e)) => (
                serde_json::json!({ "error": e.to_string() }),
                if e.kind == ScriptErrorKind::Limit {
                    "limit"
                } else {
                    "script_error"
                },
            ),
            // Nothing was evaluated (unknown permit type, no levy): nothing to record.
            Err(_) => return result,
        };
        self.metrics.evaluation(permit_id, kind.as_str(), outcome);
        self.store
            .write(vec![Op::Decision(DecisionRecord {
                seq: 0,
                at: Utc::now(),
                permit: permit_id.to_owned(),
                kind: kind.as_str().to_owned(),
                release: release.id.clone(),
                input: data,
                output,
                duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            })])
            .await?;
        result
    }

    pub async fn audit(&self, actor: &str, action: &str, detail: Json) -> Result<(), StoreError> {
        self.store
            .write(vec![Op::Audit(AuditRecord {
                seq: 0,
                at: Utc::now(),
                actor: actor.to_owned(),
                action: action.to_owned(),
                detail,
            })])
            .await
            .map(|_| ())
    }
}

/// The evaluation itself, synchronous and pure apart from the script sandbox.
pub fn run(
    release: &Release,
    permit_id: &str,
    kind: Kind,
    data: &Json,
) -> Result<Evaluation, EvalError> {
    let permit = release
        .permits
        .get(permit_id)
        .ok_or_else(|| EvalError::UnknownPermit(permit_id.to_owned()))?;
    if kind == Kind::Levy && permit.levy.is_none() {
        return Err(EvalError::NoLevy(permit_id.to_owned()));
    }
    let checked = permit
        .check(&release.host, data, &permit.params)
        .map_err(EvalError::Script)?;
    let errors = serde_json::to_value(&checked.errors).unwrap_or(Json::Null);
    let valid = checked.errors.is_empty();
    match kind {
        Kind::Validate => Ok(Evaluation::Valid {
            output: serde_json::json!({ "valid": valid, "errors": errors, "release": release.id }),
        }),
        Kind::Levy if !valid => Ok(Evaluation::Invalid {
            errors,
            release: release.id.clone(),
        }),
        Kind::Levy => {
            let assessment = permit
                .assess(&release.host, checked.data, &permit.params)
                .map_err(EvalError::Script)?;
            let mut output = assessment
                .map(|a| a.to_json())
                .ok_or_else(|| EvalError::NoLevy(permit_id.to_owned()))?;
            if let Some(obj) = output.as_object_mut() {
                obj.insert("release".into(), Json::String(release.id.clone()));
            }
            Ok(Evaluation::Valid { output })
        }
    }
}

fn reload_record(trigger: &str, report: &BuildReport, accepted: bool) -> ReloadRecord {
    ReloadRecord {
        seq: 0,
        at: Utc::now(),
        trigger: trigger.to_owned(),
        release: report.release.clone(),
        accepted,
        permits: report.permits,
        fixtures_passed: report.fixtures_passed,
        fixtures_failed: report.fixtures_failed,
        duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        diagnostics: report.diagnostics.clone(),
    }
}

/// A diagnostic list as one line, for error messages.
pub fn first_problem(diags: &[Diagnostic]) -> String {
    match diags {
        [] => "no details".to_owned(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}
