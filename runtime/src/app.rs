//! The composition root: builds the services over one store and one set of settings, and hands
//! them to whoever drives the process (the HTTP surface, the file watcher, `main`). Behaviour
//! lives in the services (`crate::services`); this only wires them together.

use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::release::ConnectorSetup;
use crate::services::applications::Applications;
use crate::services::connectors::Connectors;
use crate::services::dispatcher::{Dispatcher, Outbox, Running};
use crate::services::evaluator::Evaluator;
use crate::services::recorder::Recorder;
use crate::services::releases::{Active, ReleaseError, ReleaseManager, ReloadOutcome};
use crate::services::tokens::Tokens;
use crate::services::users::Users;
use crate::store::Store;

/// Compiled connector components are cached here, inside the data folder.
pub const CONNECTOR_CACHE_DIR: &str = "connector-cache";

/// The running service.
pub struct App {
    config: Config,
    store: Store,
    metrics: Arc<Metrics>,
    releases: ReleaseManager,
    evaluator: Evaluator,
    recorder: Arc<Recorder>,
    tokens: Tokens,
    users: Users,
    applications: Applications,
    outbox: Outbox,
    connectors: Arc<Connectors>,
    dispatcher: Arc<Dispatcher>,
}

/// How the service is, as `/health` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Serving the rules folder's release.
    Ok { release: String },
    /// Serving, but not what the rules folder holds (it does not build).
    Degraded { release: String, reason: String },
    /// No release serves yet.
    NoRelease,
    /// Decisions cannot be recorded (disk full, I/O error): every evaluation would fail.
    StorageUnavailable {
        reason: String,
        release: Option<String>,
    },
}

impl App {
    pub fn new(config: Config, store: Store) -> Self {
        let metrics = Arc::new(Metrics::default());
        let active = Active::default();
        let recorder = Arc::new(Recorder::new(store.clone(), config.retention.clone()));
        let connector_setup = ConnectorSetup::new(
            Some(config.data_dir.join(CONNECTOR_CACHE_DIR)),
            config.connectors.config.clone(),
        );
        let releases = ReleaseManager::new(
            config.rules_dir.clone(),
            config.plugins_dir.clone(),
            connector_setup,
            config.limits.clone(),
            config.roles.clone(),
            store.clone(),
            metrics.clone(),
            active.clone(),
        );
        let applications = Applications::new(
            active.clone(),
            store.clone(),
            config.language,
            config.utc_offset,
        );
        let connectors = Arc::new(Connectors::new(
            active.clone(),
            store.clone(),
            config.data_dir.clone(),
            config.language,
            config.utc_offset,
        ));
        let evaluator = Evaluator::new(
            active,
            recorder.clone(),
            metrics.clone(),
            config.limits.clone(),
            config.language,
            config.utc_offset,
        );
        let outbox = Outbox::new(store.clone());
        let dispatcher = Arc::new(Dispatcher::new(
            &outbox,
            config.connectors.clone(),
            connectors.clone(),
        ));
        let tokens = Tokens::new(store.clone(), config.roles.clone());
        let users = Users::new(store.clone(), config.roles.clone());
        Self {
            config,
            store,
            metrics,
            releases,
            evaluator,
            recorder,
            tokens,
            users,
            applications,
            outbox,
            connectors,
            dispatcher,
        }
    }

    /// The settings the process runs with (read-only).
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn releases(&self) -> &ReleaseManager {
        &self.releases
    }

    pub fn evaluator(&self) -> &Evaluator {
        &self.evaluator
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    pub fn users(&self) -> &Users {
        &self.users
    }

    pub fn applications(&self) -> &Applications {
        &self.applications
    }

    /// Deliveries of outbox events to connectors, as admins list and retry them.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn connectors(&self) -> &Connectors {
        &self.connectors
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Builds the rules folder and serves it (or the start-up fallback).
    pub async fn start(&self) -> Result<ReloadOutcome, ReleaseError> {
        self.releases.start().await
    }

    /// Starts delivering outbox events to the serving release's connectors, and their syncs;
    /// [`Running::stop`] ends it before the store is closed.
    pub fn spawn_dispatcher(&self) -> Running {
        self.dispatcher.spawn()
    }

    /// Starts the background pruner of the decision log.
    pub fn spawn_retention(&self) -> tokio::task::JoinHandle<()> {
        self.recorder.spawn_retention()
    }

    pub fn health(&self) -> Health {
        let release = self.releases.current().map(|r| r.id.clone());
        if let Some(reason) = self.recorder.fault() {
            return Health::StorageUnavailable { reason, release };
        }
        match (release, self.releases.folder_problem()) {
            (None, _) => Health::NoRelease,
            (Some(release), Some(reason)) => Health::Degraded {
                release,
                reason: reason.as_str().to_owned(),
            },
            (Some(release), None) => Health::Ok { release },
        }
    }

    /// The metrics in OpenMetrics text.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(self.store.commits())
    }

    /// Finishes queued writes and closes the database; later writes fail.
    pub fn close(&self) {
        self.store.close();
    }
}
