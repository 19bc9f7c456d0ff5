//! The running service: the active release, candidate builds and swaps, evaluations and what
//! they record. HTTP lives in `api`; this is what the handlers call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use chrono::Utc;
use serde_json::Value as Json;

use crate::config::{Config, Language};
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
    /// Every evaluation slot stayed taken for the whole queue wait.
    #[error(
        "the server is busy: all {slots} evaluation slots stayed taken for {waited_ms} ms; retry shortly"
    )]
    Overloaded {
        slots: usize,
        waited_ms: u64,
        /// What `Retry-After` says: a slot frees up at the latest when a running script
        /// reaches its wall-clock limit.
        retry_after_secs: u64,
    },
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
    /// Nothing was built: the candidate is the active release already (or, for file events, a
    /// failure already recorded as it is).
    pub unchanged: bool,
    pub release: String,
    pub active: Option<String>,
    pub report: BuildReport,
}

/// What the reload lock guards besides the order of candidates.
#[derive(Default)]
struct ReloadState {
    /// The folder's last failure (its content id, or what made it unreadable): file events that
    /// leave it as it is are not built or recorded again. An admin's reload always rebuilds.
    last_failure: Option<String>,
}

pub struct App {
    pub config: Config,
    pub store: Store,
    pub metrics: Metrics,
    active: ArcSwapOption<Release>,
    /// One candidate at a time: builds are whole-tree and the last writer must win.
    reload_lock: tokio::sync::Mutex<ReloadState>,
    /// Why what serves is not the rules folder, while the folder does not build.
    folder_problem: ArcSwapOption<String>,
    /// Bounds the blocking threads scripts occupy under load.
    evaluations: Arc<tokio::sync::Semaphore>,
}

impl App {
    pub fn new(config: Config, store: Store) -> Self {
        let evaluations = Arc::new(tokio::sync::Semaphore::new(
            config.limits.max_concurrent_evaluations.max(1),
        ));
        Self {
            config,
            store,
            metrics: Metrics::default(),
            active: ArcSwapOption::empty(),
            reload_lock: tokio::sync::Mutex::new(ReloadState::default()),
            folder_problem: ArcSwapOption::empty(),
            evaluations,
        }
    }

    /// The release serving requests now; a request keeps its `Arc` to the end, so a swap never
    /// changes the rules under a running evaluation.
    pub fn current(&self) -> Option<Arc<Release>> {
        self.active.load_full()
    }

    /// Set while the rules folder does not build: what is wrong and what serves instead.
    pub fn folder_problem(&self) -> Option<Arc<String>> {
        self.folder_problem.load_full()
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
        let mut state = self.reload_lock.lock().await;
        let stored = self.store.active_release()?;
        let (report, key) = match self.read_folder().await {
            Ok(tree) => {
                let reason = match stored.as_deref() {
                    None => "first start",
                    Some(id) if id == tree.id() => "start-up: the rules folder is unchanged",
                    Some(_) => "start-up: the rules folder changed since the last run",
                };
                let key = tree_key(tree.id());
                match self.build(tree).await? {
                    Ok(release) => {
                        return self
                            .activate(release, "startup", reason, PinChange::Clear, reason)
                            .await
                    }
                    Err(report) => (report, key),
                }
            }
            Err(diagnostics) => {
                let key = read_key(&diagnostics);
                (read_report(diagnostics), key)
            }
        };
        for d in &report.diagnostics {
            tracing::warn!("{d}");
        }
        // The last good release is restored first, so that the newest reload entry is the
        // folder's failure and names what serves instead.
        match stored {
            Some(id) => match self
                .restore(
                    &id,
                    "startup",
                    "rules folder does not build",
                    PinChange::Keep,
                    "fallback: the rules folder does not build; serving the last good release from the store",
                )
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
        state.last_failure = Some(key);
        self.folder_failed("startup", report).await
    }

    /// Reads the rules folder within `rules_read_timeout_ms`. Every caller holds the reload lock
    /// or is about to take it: a read that hangs (a file on a stalled share) keeps its blocking
    /// thread but not the lock, and becomes a diagnostic.
    async fn read_folder(&self) -> Result<SourceTree, Vec<Diagnostic>> {
        self.metrics.folder_read();
        let dir = self.config.rules_dir.clone();
        let shown = dir.display().to_string();
        let limits = self.config.limits.clone();
        let deadline = limits.rules_read_timeout();
        read_within(shown, deadline, move || SourceTree::read_dir(&dir, &limits)).await
    }

    /// The content id of the rules folder as it is now, if it reads.
    async fn folder_id(&self) -> Option<String> {
        self.read_folder().await.ok().map(|t| t.id().to_owned())
    }

    /// Reads the folder, builds a candidate and swaps it in if it passes. Unless `force`d (an
    /// admin's explicit reload), a folder unchanged since an admin reactivated another release
    /// leaves that release serving, and a folder that fails exactly as it did last time is
    /// neither rebuilt nor recorded again.
    pub async fn reload_from_folder(
        &self,
        trigger: &str,
        force: bool,
    ) -> Result<ReloadOutcome, StoreError> {
        let mut state = self.reload_lock.lock().await;
        let active = self.current().map(|r| r.id.clone());
        let tree = match self.read_folder().await {
            Ok(t) => t,
            Err(diagnostics) => {
                let key = read_key(&diagnostics);
                if !force && state.last_failure.as_deref() == Some(key.as_str()) {
                    return Ok(nothing_built(String::new(), false, active));
                }
                state.last_failure = Some(key);
                return self.folder_failed(trigger, read_report(diagnostics)).await;
            }
        };
        let id = tree.id().to_owned();
        let pin = self.store.pin()?;
        if let Some(p) = &pin {
            if !force && active.as_deref() == Some(p.release.as_str()) && p.folder == id {
                return Ok(nothing_built(id, true, active));
            }
        }
        if active.as_deref() == Some(id.as_str()) {
            let was_failing = state.last_failure.take().is_some();
            self.folder_problem.store(None);
            if !was_failing && !force {
                // Saving a file unchanged: nothing to build, nothing to say.
                return Ok(nothing_built(id, true, active));
            }
            let note = if was_failing {
                "the rules folder equals the active release again"
            } else {
                "the rules folder equals the active release; nothing to build"
            };
            let mut record = reload_record(
                trigger,
                &BuildReport {
                    release: id.clone(),
                    ..BuildReport::default()
                },
                true,
                active.clone(),
                note,
            );
            record.unchanged = true;
            let mut ops = vec![Op::Reload(record)];
            if force && pin.is_some() {
                ops.push(Op::Pin(None));
            }
            self.store.write(ops).await?;
            tracing::info!("{note} ({id})");
            return Ok(nothing_built(id, true, active));
        }
        let key = tree_key(&id);
        if !force && state.last_failure.as_deref() == Some(key.as_str()) {
            return Ok(nothing_built(id, false, active));
        }
        match self.build(tree).await? {
            Ok(release) => {
                state.last_failure = None;
                self.folder_problem.store(None);
                self.activate(
                    release,
                    trigger,
                    "rules folder changed",
                    PinChange::Clear,
                    "",
                )
                .await
            }
            Err(report) => {
                state.last_failure = Some(key);
                self.folder_failed(trigger, report).await
            }
        }
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
        if let Some(current) = self.current().filter(|r| r.id == id) {
            // Already serving: nothing to build or swap, but the admin's choice still stands.
            if let PinChange::Set(p) = pin {
                self.store.write(vec![Op::Pin(Some(p))]).await?;
            }
            let mut report = current.report.clone();
            report.duration = Duration::ZERO;
            return Ok(ReloadOutcome {
                accepted: true,
                unchanged: true,
                release: current.id.clone(),
                active: Some(current.id.clone()),
                report,
            });
        }
        self.restore(id, by, reason, pin, "").await
    }

    /// Builds a stored release; the caller holds the reload lock (or runs before serving).
    async fn restore(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        pin: PinChange,
        note: &str,
    ) -> Result<ReloadOutcome, ReleaseError> {
        let sources = self
            .store
            .release_sources(id)?
            .ok_or_else(|| ReleaseError::Unknown(id.to_owned()))?;
        let tree = SourceTree::from_files(sources);
        Ok(match self.build(tree).await? {
            Ok(release) => self.activate(release, by, reason, pin, note).await?,
            Err(report) => {
                self.reject(by, report, &format!("stored release {id} does not build"))
                    .await?
            }
        })
    }

    async fn build(&self, tree: SourceTree) -> Result<Result<Release, BuildReport>, StoreError> {
        let limits = self.config.limits.clone();
        tokio::task::spawn_blocking(move || release::build(tree, &limits))
            .await
            .map_err(|e| StoreError::Storage(format!("candidate build crashed: {e}")))
    }

    async fn activate(
        &self,
        release: Release,
        by: &str,
        reason: &str,
        pin: PinChange,
        note: &str,
    ) -> Result<ReloadOutcome, StoreError> {
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
        ops.push(Op::Reload(reload_record(
            by,
            &report,
            true,
            Some(release.id.clone()),
            note,
        )));
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

    /// The folder's candidate failed: health says so while an older release serves.
    async fn folder_failed(
        &self,
        trigger: &str,
        report: BuildReport,
    ) -> Result<ReloadOutcome, StoreError> {
        let active = self.current().map(|r| r.id.clone());
        let serving = match &active {
            Some(id) => format!("still serving {id}"),
            None => "serving nothing".to_owned(),
        };
        // The release serving is not named here: an admin may reactivate another meanwhile, and
        // `/health` names the one serving next to this reason.
        self.folder_problem.store(Some(Arc::new(format!(
            "the rules folder does not build: {}",
            first_problem(&report.diagnostics)
        ))));
        let note = format!("the rules folder does not build; {serving}");
        self.reject(trigger, report, &note).await
    }

    async fn reject(
        &self,
        trigger: &str,
        report: BuildReport,
        note: &str,
    ) -> Result<ReloadOutcome, StoreError> {
        tracing::warn!("rejected {}", report.summary());
        for d in report.diagnostics.iter().take(20) {
            tracing::warn!("  {d}");
        }
        let active = self.current().map(|r| r.id.clone());
        self.store
            .write(vec![Op::Reload(reload_record(
                trigger,
                &report,
                false,
                active.clone(),
                note,
            ))])
            .await?;
        self.metrics.reload(false);
        Ok(ReloadOutcome {
            accepted: false,
            unchanged: false,
            release: report.release.clone(),
            active,
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
        // Every answer waits for its record: while the database refuses writes, say so at once
        // instead of running the rules for nothing.
        if let Some(reason) = self.store.fault() {
            return Err(EvalError::Store(StoreError::Unavailable(reason)));
        }
        let permit_name = permit_id.to_owned();
        let today = Utc::now()
            .with_timezone(&self.config.utc_offset)
            .date_naive();
        let rel = release.clone();
        let language = self.config.language;
        let slot = self.evaluation_slot().await?;
        let in_flight = self.metrics.evaluation_started();
        // Scripts are CPU work bounded by their limits; keep them off the async workers. The
        // input moves into that task and only its bounded record comes back. The slot and the
        // in-flight mark live inside the blocking task: a client that hangs up does not end
        // its script, so the slot must stay taken until the script itself ends.
        let max = self.config.limits.max_recorded_json_bytes;
        let (result, elapsed, record) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = crate::scripts::with_today(Some(today), || {
                run(&rel, &permit_name, kind, &data, language)
            });
            let elapsed = started.elapsed();
            // The slot bounds script work only; waiting for the durable write must not hold
            // it, or it would also cap how many decisions share one group commit.
            drop(in_flight);
            drop(slot);
            // INVARIANT: what one evaluation stores is bounded, whatever the request held:
            // input and output are each kept whole only up to `max_recorded_json_bytes`.
            // Bounding is CPU work too, so it happens here rather than on an async worker.
            let record = recorded(&result).map(|(output, outcome)| {
                (
                    crate::store::bound::excerpt(data, max),
                    crate::store::bound::excerpt(output, max),
                    outcome,
                )
            });
            (result, elapsed, record)
        })
        .await
        .map_err(|_| EvalError::Interrupted)?;
        // Nothing was evaluated (unknown permit type, no levy): nothing to record.
        let Some((input, output, outcome)) = record else {
            return result;
        };
        self.metrics.evaluation(permit_id, kind.as_str(), outcome);
        self.store
            .write(vec![Op::Decision(DecisionRecord {
                seq: 0,
                at: Utc::now(),
                permit: permit_id.to_owned(),
                kind: kind.as_str().to_owned(),
                release: release.id.clone(),
                input,
                output,
                duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            })])
            .await?;
        result
    }

    /// One of the `max_concurrent_evaluations` slots, waiting at most
    /// `evaluation_queue_timeout_ms` for it.
    async fn evaluation_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, EvalError> {
        let limits = &self.config.limits;
        let overloaded = || EvalError::Overloaded {
            slots: limits.max_concurrent_evaluations,
            waited_ms: limits.evaluation_queue_timeout_ms,
            retry_after_secs: limits.script_timeout_ms.div_ceil(1000).max(1),
        };
        let wait = Arc::clone(&self.evaluations).acquire_owned();
        match tokio::time::timeout(limits.evaluation_queue_timeout(), wait).await {
            Ok(Ok(slot)) => Ok(slot),
            Ok(Err(_closed)) => Err(EvalError::Interrupted),
            Err(_elapsed) => Err(overloaded()),
        }
    }

    /// Starts the background pruner: one run shortly after start, then every
    /// `prune_interval_secs`; each run takes bounded steps until nothing is left to remove.
    pub fn spawn_retention(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let app = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(app.config.retention.prune_interval());
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match app.prune_now().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("retention: pruned {n} records"),
                    Err(StoreError::Closed) => return,
                    Err(e) => tracing::warn!("retention: pruning stopped: {e}"),
                }
            }
        })
    }

    /// Prunes by the retention settings until nothing more is due; returns records removed.
    pub async fn prune_now(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let plan = self.config.retention.plan(Utc::now());
            let removed = self.store.prune(plan).await?;
            total += removed;
            if removed == 0 {
                return Ok(total);
            }
            // Let queued evaluations through between steps.
            tokio::task::yield_now().await;
        }
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

/// What the decision log keeps of an evaluation's result, and its metrics outcome; `None` when
/// nothing was evaluated (unknown permit type, no levy).
fn recorded(result: &Result<Evaluation, EvalError>) -> Option<(Json, &'static str)> {
    Some(match result {
        // `/validate` answers invalid data with 200 and `valid: false`: count it as invalid, as
        // `/levy` does.
        Ok(Evaluation::Valid { output }) if output["valid"] == false => (output.clone(), "invalid"),
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
        Err(_) => return None,
    })
}

/// The evaluation itself, synchronous and pure apart from the script sandbox. The runtime's own
/// messages are in `language`.
pub fn run(
    release: &Release,
    permit_id: &str,
    kind: Kind,
    data: &Json,
    language: Language,
) -> Result<Evaluation, EvalError> {
    let permit = release
        .permits
        .get(permit_id)
        .ok_or_else(|| EvalError::UnknownPermit(permit_id.to_owned()))?;
    if kind == Kind::Levy && permit.levy.is_none() {
        return Err(EvalError::NoLevy(permit_id.to_owned()));
    }
    let checked = permit
        .check(&release.host, data, &permit.params, language)
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

fn reload_record(
    trigger: &str,
    report: &BuildReport,
    accepted: bool,
    active: Option<String>,
    note: &str,
) -> ReloadRecord {
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
        unchanged: false,
        active,
        note: note.to_owned(),
    }
}

/// Runs `read` on the blocking pool for at most `deadline`. A read still running then keeps its
/// thread, but its caller goes on with a diagnostic naming the folder and the limit.
async fn read_within(
    shown: String,
    deadline: Duration,
    read: impl FnOnce() -> Result<SourceTree, Vec<Diagnostic>> + Send + 'static,
) -> Result<SourceTree, Vec<Diagnostic>> {
    match tokio::time::timeout(deadline, tokio::task::spawn_blocking(read)).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(vec![Diagnostic::file(
            shown,
            format!("reading the rules folder failed: {e}"),
        )]),
        Err(_) => Err(vec![Diagnostic::file(
            shown,
            format!(
                "reading the rules folder took longer than {} ms (limit `rules_read_timeout_ms`); \
                 is a file on a stalled disk or network share?",
                deadline.as_millis()
            ),
        )]),
    }
}

/// An outcome for which nothing was built or recorded.
fn nothing_built(release: String, accepted: bool, active: Option<String>) -> ReloadOutcome {
    ReloadOutcome {
        accepted,
        unchanged: true,
        report: BuildReport {
            release: release.clone(),
            ..BuildReport::default()
        },
        release,
        active,
    }
}

/// What identifies a failure of the folder, to recognise it when it happens again.
fn tree_key(id: &str) -> String {
    format!("tree:{id}")
}

fn read_key(diagnostics: &[Diagnostic]) -> String {
    let mut key = "read:".to_owned();
    for d in diagnostics {
        key.push_str(&d.to_string());
        key.push('\n');
    }
    key
}

fn read_report(diagnostics: Vec<Diagnostic>) -> BuildReport {
    BuildReport {
        diagnostics,
        ..BuildReport::default()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_that_never_ends_becomes_a_diagnostic_at_the_deadline() {
        // A stalled share cannot be made in a test; a read blocked on a channel stands in for it.
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let stuck = move || {
            let _ = blocked.recv();
            Err(Vec::new())
        };
        let err = read_within("rules".into(), Duration::from_millis(50), stuck)
            .await
            .unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].file, "rules");
        assert!(
            err[0]
                .message
                .contains("longer than 50 ms (limit `rules_read_timeout_ms`)"),
            "{}",
            err[0]
        );
        drop(release);
    }
}
