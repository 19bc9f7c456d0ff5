//! The release manager: which release serves, and how candidates become it. Builds run one at a
//! time under the reload lock, which also remembers the folder's last failure; an admin's pin
//! keeps a reactivated release while the folder stays as it was; at start-up a folder that does
//! not build falls back to the last good release in the store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use chrono::Utc;

use super::recorder::Actor;
use crate::auth::Roles;
use crate::config::Limits;
use crate::diagnostic::Diagnostic;
use crate::metrics::Metrics;
use crate::release::changes::FolderChanges;
use crate::release::source::ReadCache;
use crate::release::{
    self, BuildReport, ConnectorSetup, PluginFiles, Release, SourceTree, TestConditions,
};
use crate::store::deliveries::DeliveryOp;
use crate::store::records::{ActivationRecord, PassRecord, PinRecord, ReleaseRecord, ReloadRecord};
use crate::store::{Op, Page, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("unknown release `{0}`")]
    Unknown(String),
    /// The build task ended without a report: a bug in the build, not in the rules or storage.
    #[error("the candidate build crashed: {0}")]
    BuildCrashed(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What started a reload; recorded as `trigger` (and as `by` of an activation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// `pintu serve` starting.
    Startup,
    /// A change in the rules folder.
    Watch,
    /// An admin's request.
    Admin(Actor),
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Startup => f.write_str("startup"),
            Trigger::Watch => f.write_str("watch"),
            Trigger::Admin(actor) => actor.fmt(f),
        }
    }
}

/// The release serving requests, shared by the release manager (which swaps it) and the
/// evaluator (which reads it).
#[derive(Clone, Default)]
pub struct Active(Arc<ArcSwapOption<Release>>);

impl Active {
    /// The release serving now; a request keeps its `Arc` to the end, so a swap never changes
    /// the rules under a running evaluation.
    pub fn current(&self) -> Option<Arc<Release>> {
        self.0.load_full()
    }

    fn id(&self) -> Option<String> {
        self.0.load().as_ref().map(|r| r.id.clone())
    }

    pub(crate) fn set(&self, release: Release) {
        self.0.store(Some(Arc::new(release)));
    }
}

/// What became of a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Built, tested and now serving.
    Activated,
    /// Built (or read) and refused; what served before still serves.
    Rejected,
    /// Nothing was built: the candidate is the release serving already.
    AlreadyActive,
    /// Nothing was built or recorded: the folder fails exactly as it did last time.
    FailingAsBefore,
}

/// What happened to a candidate. On the wire (admin answers):
/// `{"accepted", "unchanged", "release", "active", "report"}`.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    verdict: Verdict,
    /// The release serving once the attempt was over.
    active: Option<String>,
    /// The candidate's build; its `release` is the candidate's id.
    report: BuildReport,
}

impl ReloadOutcome {
    fn new(verdict: Verdict, report: BuildReport, active: Option<String>) -> Self {
        Self {
            verdict,
            active,
            report,
        }
    }

    /// The candidate serves (now or already).
    pub fn accepted(&self) -> bool {
        matches!(self.verdict, Verdict::Activated | Verdict::AlreadyActive)
    }

    /// Nothing was built: the candidate is the active release already (or, for file events, a
    /// failure already recorded as it is).
    pub fn unchanged(&self) -> bool {
        matches!(
            self.verdict,
            Verdict::AlreadyActive | Verdict::FailingAsBefore
        )
    }

    /// The release serving once the attempt was over.
    pub fn active(&self) -> Option<&str> {
        self.active.as_deref()
    }

    /// What building the candidate found (empty when nothing was built).
    pub fn report(&self) -> &BuildReport {
        &self.report
    }

    pub fn into_report(self) -> BuildReport {
        self.report
    }

    /// The candidate's release id; `None` when the folder could not even be read.
    pub fn release(&self) -> Option<&str> {
        Some(self.report.release.as_str()).filter(|id| !id.is_empty())
    }
}

impl serde::Serialize for ReloadOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Shown<'a> {
            accepted: bool,
            unchanged: bool,
            /// `""` when the folder could not be read, as it always was.
            release: &'a str,
            active: Option<&'a str>,
            report: &'a BuildReport,
        }
        Shown {
            accepted: self.accepted(),
            unchanged: self.unchanged(),
            release: self.release().unwrap_or_default(),
            active: self.active.as_deref(),
            report: &self.report,
        }
        .serialize(s)
    }
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

/// What identifies a failure of the folder, to recognise it when it happens again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FailureKey {
    /// The folder read as this tree, which does not build.
    Tree(String),
    /// The folder could not be read; these are the problems.
    Read(Vec<String>),
}

impl FailureKey {
    fn read(diagnostics: &[Diagnostic]) -> Self {
        Self::Read(diagnostics.iter().map(ToString::to_string).collect())
    }
}

/// What the reload lock guards besides the order of candidates.
#[derive(Default)]
struct ReloadState {
    /// The folder's last failure: file events that leave it as it is are not built or recorded
    /// again. An admin's reload always rebuilds.
    last_failure: Option<FailureKey>,
}

/// The changes noted so far; a note interrupted by a panic leaves at worst one path or flag
/// unset, and the next whole read covers it.
fn lock_changes(
    changes: &std::sync::Mutex<FolderChanges>,
) -> std::sync::MutexGuard<'_, FolderChanges> {
    changes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub struct ReleaseManager {
    rules_dir: PathBuf,
    /// Connectors released with the rules (`--plugins`); a missing folder means none.
    plugins_dir: PathBuf,
    connectors: ConnectorSetup,
    limits: Limits,
    /// The office's roles: flows may name only these.
    roles: Roles,
    store: Store,
    metrics: Arc<Metrics>,
    active: Active,
    /// One candidate at a time: builds are whole-tree and the last writer must win.
    reload_lock: tokio::sync::Mutex<ReloadState>,
    /// Why what serves is not the rules folder, while the folder does not build.
    folder_problem: ArcSwapOption<String>,
    /// What the last read of the rules folder saw, so the next opens only what changed.
    read_cache: Arc<std::sync::Mutex<ReadCache>>,
    /// What the watcher saw change since the last read; taken with the read cache's lock held,
    /// so that the two always go together.
    changes: Arc<std::sync::Mutex<FolderChanges>>,
    /// This process's engine and settings, recorded with each release that passes its
    /// fixtures; `None` when they cannot be told (then fixtures always run).
    conditions: Option<TestConditions>,
}

impl ReleaseManager {
    #[allow(
        clippy::too_many_arguments,
        reason = "the composition root passes each part once"
    )]
    pub(crate) fn new(
        rules_dir: PathBuf,
        plugins_dir: PathBuf,
        connectors: ConnectorSetup,
        limits: Limits,
        roles: Roles,
        store: Store,
        metrics: Arc<Metrics>,
        active: Active,
    ) -> Self {
        let conditions = TestConditions::of_this_process(&limits, &roles, &connectors.overrides);
        Self {
            conditions,
            rules_dir,
            plugins_dir,
            connectors,
            limits,
            roles,
            store,
            metrics,
            active,
            reload_lock: tokio::sync::Mutex::new(ReloadState::default()),
            folder_problem: ArcSwapOption::empty(),
            read_cache: Arc::default(),
            changes: Arc::default(),
        }
    }

    /// The release serving requests now.
    pub fn current(&self) -> Option<Arc<Release>> {
        self.active.current()
    }

    /// Where the watcher notes what changes in the rules folder.
    pub fn folder_changes(&self) -> std::sync::MutexGuard<'_, FolderChanges> {
        lock_changes(&self.changes)
    }

    /// Set while the rules folder does not build: what is wrong and what serves instead.
    pub fn folder_problem(&self) -> Option<Arc<String>> {
        self.folder_problem.load_full()
    }

    /// Stored releases, newest first, at most `limit`, and one page of the activation log.
    pub async fn list(
        &self,
        limit: usize,
        before: Option<u64>,
    ) -> Result<(Vec<ReleaseRecord>, Page<ActivationRecord>), StoreError> {
        self.store
            .blocking(move |store| {
                let mut releases = store.releases()?;
                releases.truncate(limit);
                Ok((releases, store.activations(limit, before)?))
            })
            .await
    }

    /// One page of the reload log, newest first.
    pub async fn reloads(
        &self,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Page<ReloadRecord>, StoreError> {
        self.store
            .blocking(move |store| store.reloads(limit, before))
            .await
    }

    /// Builds the rules folder and activates it if everything passes. At start-up a broken
    /// folder falls back to the last good release in the store.
    pub async fn start(&self) -> Result<ReloadOutcome, ReleaseError> {
        // Read once: at a big office's size a read of the folder is most of a reload's I/O, and
        // both the pin check and the build need it. Nothing else reloads before start returns.
        let read = self.read_folder(false).await;
        if let Ok(tree) = &read {
            // At a big office's size the build takes seconds more; say where the start is.
            tracing::info!(
                "start-up: read the rules folder ({} files) as release {}",
                tree.files().len(),
                tree.id()
            );
        }
        // The folder's former id costs one more hash of the whole folder: taken only when an id
        // differs, and once for both the pin and the activation's reason.
        let mut former = None;
        if let Some(pin) = self.store.blocking(|s| s.pin()).await? {
            let folder = read.as_ref().ok().map(SourceTree::id);
            // A pin set by a version whose ids were one hash over the whole folder names the
            // folder by that id: it still stands while the folder is as it was.
            let named_formerly = folder != Some(pin.folder.as_str())
                && read
                    .as_ref()
                    .is_ok_and(|tree| former_id(&mut former, tree) == pin.folder);
            if folder == Some(pin.folder.as_str()) || named_formerly {
                match self
                    .activate_stored(
                        &pin.release,
                        Trigger::Startup,
                        "kept: an admin reactivated it",
                        false,
                    )
                    .await
                {
                    Ok(o) if o.accepted() => {
                        if let (true, Some(folder)) = (named_formerly, folder) {
                            // Named by today's id, so that reloads see the folder unchanged.
                            let renamed = PinRecord {
                                release: pin.release.clone(),
                                folder: folder.to_owned(),
                            };
                            self.store.write(vec![Op::Pin(Some(renamed))]).await?;
                        }
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
        let trigger = Trigger::Startup;
        let mut state = self.reload_lock.lock().await;
        let stored = self.store.blocking(|s| s.active_release()).await?;
        let (report, key) = match read {
            Ok(tree) => {
                let reason = match stored.as_deref() {
                    None => "first start",
                    Some(id) if id == tree.id() => "start-up: the rules folder is unchanged",
                    Some(id) if id == former_id(&mut former, &tree) => {
                        "start-up: the rules folder is unchanged; its release id is now made of each file's hash"
                    }
                    Some(_) => "start-up: the rules folder changed since the last run",
                };
                let key = FailureKey::Tree(tree.id().to_owned());
                match self.build(tree).await? {
                    Ok(release) => {
                        return Ok(self
                            .activate(release, &trigger, reason, PinChange::Clear, reason)
                            .await?)
                    }
                    Err(report) => (report, key),
                }
            }
            Err(diagnostics) => {
                let key = FailureKey::read(&diagnostics);
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
                    &trigger,
                    "rules folder does not build",
                    PinChange::Keep,
                    "fallback: the rules folder does not build; serving the last good release from the store",
                )
                .await
            {
                Ok(o) if o.accepted() => {
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
        Ok(self.folder_failed(&trigger, report).await?)
    }

    /// Reads the rules folder, and the plugins folder's connectors, within
    /// `rules_read_timeout_ms`. Every caller holds the reload lock or is about to take it: a read
    /// that hangs (a file on a stalled share) keeps its blocking thread but not the lock, and
    /// becomes a diagnostic. A `fresh` read opens every file, trusting nothing the read cache
    /// remembers.
    async fn read_folder(&self, fresh: bool) -> Result<SourceTree, Vec<Diagnostic>> {
        self.metrics.folder_read();
        let dir = self.rules_dir.clone();
        let plugins = self.plugins_dir.clone();
        let shown = dir.display().to_string();
        let limits = self.limits.clone();
        let deadline = limits.rules_read_timeout();
        let cache = self.read_cache.clone();
        let changes = self.changes.clone();
        let metrics = self.metrics.clone();
        read_within(shown, deadline, move || {
            let started = std::time::Instant::now();
            // A read that outlived its deadline may still hold the cache: read without it.
            let rules = match cache.try_lock() {
                Ok(mut cache) => {
                    let changed = lock_changes(&changes).take();
                    if fresh {
                        cache.forget();
                    }
                    let (read, scope) = match changed.filter(|_| !fresh) {
                        Some(paths) => (
                            SourceTree::read_changed(&dir, &limits, &mut cache, &paths),
                            format!("{} changed paths", paths.len()),
                        ),
                        None => (
                            SourceTree::read_dir_cached(&dir, &limits, &mut cache),
                            "the whole folder".to_owned(),
                        ),
                    };
                    metrics.rules_read(cache.looked_at_all());
                    tracing::debug!(
                        "read the rules folder in {} ms, looking at {scope}: {} files opened, {} remembered for the next read",
                        started.elapsed().as_millis(),
                        cache.opened(),
                        cache.len(),
                    );
                    read
                }
                Err(_) => {
                    metrics.rules_read(true);
                    SourceTree::read_dir(&dir, &limits)
                }
            };
            let plugins = PluginFiles::read_dir(&plugins);
            match (rules, plugins) {
                (Ok(tree), Ok(plugins)) => Ok(tree.with_plugins(plugins)),
                (Err(mut a), Err(mut b)) => {
                    a.append(&mut b);
                    Err(a)
                }
                (Err(a), Ok(_)) | (Ok(_), Err(a)) => Err(a),
            }
        })
        .await
    }

    /// The content id of the rules folder as it is now, if it reads.
    async fn folder_id(&self) -> Option<String> {
        self.read_folder(false)
            .await
            .ok()
            .map(|t| t.id().to_owned())
    }

    /// Reads the folder, builds a candidate and swaps it in if it passes. Unless `force`d (an
    /// admin's explicit reload), a folder unchanged since an admin reactivated another release
    /// leaves that release serving, and a folder that fails exactly as it did last time is
    /// neither rebuilt nor recorded again.
    pub async fn reload_from_folder(
        &self,
        trigger: Trigger,
        force: bool,
    ) -> Result<ReloadOutcome, ReleaseError> {
        let mut state = self.reload_lock.lock().await;
        let active = self.active.id();
        let tree = match self.read_folder(force).await {
            Ok(t) => t,
            Err(diagnostics) => {
                let key = FailureKey::read(&diagnostics);
                if !force && state.last_failure.as_ref() == Some(&key) {
                    return Ok(nothing_built(None, Verdict::FailingAsBefore, active));
                }
                state.last_failure = Some(key);
                return Ok(self
                    .folder_failed(&trigger, read_report(diagnostics))
                    .await?);
            }
        };
        let id = tree.id().to_owned();
        let pin = self.store.blocking(|s| s.pin()).await?;
        if let Some(p) = &pin {
            if !force && active.as_deref() == Some(p.release.as_str()) && p.folder == id {
                return Ok(nothing_built(Some(id), Verdict::AlreadyActive, active));
            }
        }
        if active.as_deref() == Some(id.as_str()) {
            let was_failing = state.last_failure.take().is_some();
            self.folder_problem.store(None);
            if !was_failing && !force {
                // Saving a file unchanged: nothing to build, nothing to say.
                return Ok(nothing_built(Some(id), Verdict::AlreadyActive, active));
            }
            let note = if was_failing {
                "the rules folder equals the active release again"
            } else {
                "the rules folder equals the active release; nothing to build"
            };
            let outcome = nothing_built(Some(id.clone()), Verdict::AlreadyActive, active);
            let mut ops = vec![Op::Reload(reload_record(&trigger, &outcome, note))];
            if force && pin.is_some() {
                ops.push(Op::Pin(None));
            }
            self.store.write(ops).await?;
            tracing::info!("{note} ({id})");
            return Ok(outcome);
        }
        let key = FailureKey::Tree(id.clone());
        if !force && state.last_failure.as_ref() == Some(&key) {
            return Ok(nothing_built(Some(id), Verdict::FailingAsBefore, active));
        }
        match self.build(tree).await? {
            Ok(release) => {
                state.last_failure = None;
                self.folder_problem.store(None);
                Ok(self
                    .activate(
                        release,
                        &trigger,
                        "rules folder changed",
                        PinChange::Clear,
                        "",
                    )
                    .await?)
            }
            Err(report) => {
                state.last_failure = Some(key);
                Ok(self.folder_failed(&trigger, report).await?)
            }
        }
    }

    /// Rebuilds a stored release from its sources and makes it the active one. With `pin`
    /// (an admin's choice) it stays active while the rules folder stays as it is now.
    pub async fn activate_stored(
        &self,
        id: &str,
        by: Trigger,
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
            return Ok(ReloadOutcome::new(
                Verdict::AlreadyActive,
                report,
                Some(current.id.clone()),
            ));
        }
        self.restore(id, &by, reason, pin, "").await
    }

    /// Builds a stored release; the caller holds the reload lock (or runs before serving).
    async fn restore(
        &self,
        id: &str,
        by: &Trigger,
        reason: &str,
        pin: PinChange,
        note: &str,
    ) -> Result<ReloadOutcome, ReleaseError> {
        let wanted = id.to_owned();
        let (sources, plugins) = self
            .store
            .blocking(move |s| {
                let sources = s.release_sources(&wanted)?;
                let plugins = s.release_plugins(&wanted)?;
                Ok::<_, StoreError>(sources.map(|t| (t, plugins)))
            })
            .await?
            .ok_or_else(|| ReleaseError::Unknown(id.to_owned()))?;
        // The connectors come back exactly as they were activated: their files are stored with
        // the release.
        // Under the id it was stored with, which a release stored before ids were made of each
        // file's hash does not get from its files any more.
        let tree = SourceTree::from_files(sources)
            .with_plugins(PluginFiles::from_flat(plugins))
            .stored_as(id);
        Ok(match self.build(tree).await? {
            Ok(release) => self.activate(release, by, reason, pin, note).await?,
            Err(report) => {
                self.reject(by, report, &format!("stored release {id} does not build"))
                    .await?
            }
        })
    }

    async fn build(&self, tree: SourceTree) -> Result<Result<Release, BuildReport>, ReleaseError> {
        let limits = self.limits.clone();
        let roles = self.roles.clone();
        let connectors = self.connectors.clone();
        // Permits and connectors unchanged since the active release are reused from it.
        let base = self.current();
        // With nothing to build on (start-up, or its fallback to a stored release), a release
        // that passed before under this engine and these settings is compiled but not tested
        // again: at a big office's size its fixtures are most of a start.
        let passed = match (&base, &self.conditions) {
            (None, Some(conditions)) => {
                let id = tree.id().to_owned();
                self.store
                    .blocking(move |s| s.release_pass(&id))
                    .await?
                    .is_some_and(|pass| pass.under == conditions.as_str())
            }
            _ => false,
        };
        tokio::task::spawn_blocking(move || {
            if passed {
                release::build_passed(tree, &limits, &roles, &connectors)
            } else {
                release::build_with(tree, &limits, &roles, base.as_deref(), &connectors)
            }
        })
        .await
        .map_err(ReleaseError::BuildCrashed)
    }

    async fn activate(
        &self,
        release: Release,
        by: &Trigger,
        reason: &str,
        pin: PinChange,
        note: &str,
    ) -> Result<ReloadOutcome, StoreError> {
        let now = Utc::now();
        let outcome = ReloadOutcome::new(
            Verdict::Activated,
            release.report.clone(),
            Some(release.id.clone()),
        );
        let mut ops = Vec::new();
        let wanted = release.id.clone();
        if self
            .store
            .blocking(move |s| s.release(&wanted))
            .await?
            .is_none()
        {
            ops.push(Op::Release {
                record: ReleaseRecord {
                    id: release.id.clone(),
                    created_at: now,
                    created_by: by.to_string(),
                    permits: release.permits.keys().cloned().collect(),
                    fixtures: outcome.report.fixtures_passed,
                    files: release.sources.files().len(),
                },
                sources: release.sources.files().clone(),
            });
            let plugins = release.sources.plugins();
            if !plugins.is_empty() {
                // In the same transaction as the release: a stored release always has its
                // connectors, byte for byte.
                ops.push(Op::ReleasePlugins {
                    release: release.id.clone(),
                    files: plugins.flatten(),
                });
            }
        }
        if let Some(conditions) = self
            .conditions
            .as_ref()
            .filter(|_| !release.report.passed_before)
        {
            ops.push(Op::Passed(PassRecord {
                release: release.id.clone(),
                under: conditions.as_str().to_owned(),
                at: now,
            }));
        }
        ops.push(Op::Activate(ActivationRecord {
            release: release.id.clone(),
            at: now,
            by: by.to_string(),
            reason: reason.to_owned(),
        }));
        if !release.connectors.is_empty() {
            // INVARIANT: a connector's delivery cursor exists before it serves: an event
            // committed once it serves but before the dispatcher first schedules it (up to
            // `poll_interval_ms` later) is delivered, not passed over as "before it existed".
            ops.push(Op::Delivery(DeliveryOp::Start {
                connectors: release
                    .connectors
                    .values()
                    .map(|c| c.name().to_owned())
                    .collect(),
            }));
        }
        // A flow change may remove steps where applications wait: still accepted (the folder
        // is the truth), but the reload log says how many now need an admin to re-route them.
        let stranded = self.stranded_by(&release).await;
        let note = match (note.is_empty(), stranded) {
            (_, None) => note.to_owned(),
            (true, Some(warning)) => warning,
            (false, Some(warning)) => format!("{note}; {warning}"),
        };
        ops.push(Op::Reload(reload_record(by, &outcome, &note)));
        match pin {
            PinChange::Keep => {}
            PinChange::Clear => ops.push(Op::Pin(None)),
            PinChange::Set(p) => ops.push(Op::Pin(Some(p))),
        }
        // INVARIANT: the release is durable before it serves, so a restart can always return to it.
        let storing = std::time::Instant::now();
        self.store.write(ops).await?;
        tracing::debug!(
            "stored release {} in {} ms",
            release.id,
            storing.elapsed().as_millis()
        );
        let id = release.id.clone();
        let permit_ids: Vec<String> = release.permits.keys().cloned().collect();
        let connectors: Vec<String> = release
            .connectors
            .values()
            .map(|c| format!("{} {}", c.name(), c.version()))
            .collect();
        self.active.set(release);
        self.metrics.reload(true);
        self.metrics.set_active_release(&id);
        let connectors = if connectors.is_empty() {
            String::new()
        } else {
            format!("; connectors: {}", connectors.join(", "))
        };
        tracing::info!(
            "activated {} — permit types: {}{connectors}",
            outcome.report.summary(),
            permit_ids.join(", ")
        );
        Ok(outcome)
    }

    /// The folder's candidate failed: health says so while an older release serves.
    async fn folder_failed(
        &self,
        trigger: &Trigger,
        report: BuildReport,
    ) -> Result<ReloadOutcome, StoreError> {
        let serving = match self.active.id() {
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
        trigger: &Trigger,
        report: BuildReport,
        note: &str,
    ) -> Result<ReloadOutcome, StoreError> {
        tracing::warn!("rejected {}", report.summary());
        for d in report.diagnostics.iter().take(20) {
            tracing::warn!("  {d}");
        }
        let outcome = ReloadOutcome::new(Verdict::Rejected, report, self.active.id());
        self.store
            .write(vec![Op::Reload(reload_record(trigger, &outcome, note))])
            .await?;
        self.metrics.reload(false);
        Ok(outcome)
    }
}

/// The reload log's entry for `outcome`.
impl ReleaseManager {
    /// A warning naming the applications in progress at steps that `next` removes from the
    /// active release's flows, or `None` when there are none (or they cannot be counted: the
    /// warning is advice, it never holds up an activation).
    async fn stranded_by(&self, next: &Release) -> Option<String> {
        let current = self.current()?;
        let mut removed = Vec::new();
        for (id, permit) in &current.permits {
            let Some(now) = next.permits.get(id) else {
                continue;
            };
            for step in permit.flow().steps() {
                if now.flow().step(&step.step).is_none() {
                    removed.push((id.clone(), step.step.clone()));
                }
            }
        }
        if removed.is_empty() {
            return None;
        }
        let counted = self
            .store
            .blocking(move |s| {
                removed
                    .into_iter()
                    .map(|(permit, step)| s.waiting_at(&permit, &step).map(|n| (permit, step, n)))
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .await;
        let counted = match counted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot count the applications at removed steps: {e}");
                return None;
            }
        };
        let total: usize = counted.iter().map(|(_, _, n)| n).sum();
        if total == 0 {
            return None;
        }
        let places: Vec<String> = counted
            .iter()
            .filter(|(_, _, n)| *n > 0)
            .map(|(permit, step, n)| format!("{permit} `{step}` ({n})"))
            .collect();
        let warning = format!(
            "warning: {total} application(s) wait at steps no longer in their flow: {}; an admin may `return` or `reject` them",
            places.join(", ")
        );
        tracing::warn!("{warning}");
        Some(warning)
    }
}

fn reload_record(trigger: &Trigger, outcome: &ReloadOutcome, note: &str) -> ReloadRecord {
    let report = &outcome.report;
    ReloadRecord {
        seq: 0,
        at: Utc::now(),
        trigger: trigger.to_string(),
        release: report.release.clone(),
        accepted: outcome.accepted(),
        permits: report.permits,
        fixtures_passed: report.fixtures_passed,
        fixtures_failed: report.fixtures_failed,
        fixtures_reused: report.fixtures_reused,
        passed_before: report.passed_before,
        duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        diagnostics: report.diagnostics.clone(),
        unchanged: outcome.unchanged(),
        active: outcome.active.clone(),
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

/// An outcome for which nothing was built.
fn nothing_built(
    release: Option<String>,
    verdict: Verdict,
    active: Option<String>,
) -> ReloadOutcome {
    let report = BuildReport {
        release: release.unwrap_or_default(),
        ..BuildReport::default()
    };
    ReloadOutcome::new(verdict, report, active)
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

/// `tree`'s former id (see [`SourceTree::former_id`]), hashed the first time it is asked for.
fn former_id<'a>(former: &'a mut Option<String>, tree: &SourceTree) -> &'a str {
    former.get_or_insert_with(|| tree.former_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_keep_their_wire_fields_and_an_unread_folder_has_no_release() {
        let failing = nothing_built(None, Verdict::FailingAsBefore, Some("abc".into()));
        assert_eq!(failing.release(), None);
        let json = serde_json::to_value(&failing).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["accepted", "unchanged", "release", "active", "report"]
        );
        assert_eq!(json["accepted"], false);
        assert_eq!(json["unchanged"], true);
        assert_eq!(json["release"], "");
        assert_eq!(json["active"], "abc");
        let same = nothing_built(
            Some("abc".into()),
            Verdict::AlreadyActive,
            Some("abc".into()),
        );
        assert!(same.accepted() && same.unchanged());
        assert_eq!(same.release(), Some("abc"));
    }

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
