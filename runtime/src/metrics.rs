//! Prometheus metrics: requests and latency by route, evaluations by permit, reloads, the
//! active release.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
    evaluations: Family<Labels, Counter>,
    reloads: Family<Labels, Counter>,
    active_release: Family<Labels, Gauge>,
    store_commits: Gauge<u64, AtomicU64>,
    folder_reads: Counter,
    rules_events: Family<Labels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~3 s
    Histogram::new(exponential_buckets(0.0001, 2.5, 12))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pintu");
        let requests = Family::<Labels, Counter>::default();
        let latency = Family::<Labels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let evaluations = Family::<Labels, Counter>::default();
        let reloads = Family::<Labels, Counter>::default();
        let active_release = Family::<Labels, Gauge>::default();
        let store_commits = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "evaluations",
            "Rule evaluations by permit type, kind and outcome",
            evaluations.clone(),
        );
        registry.register("reloads", "Candidate releases by outcome", reloads.clone());
        registry.register(
            "active_release",
            "The release being served (value 1)",
            active_release.clone(),
        );
        registry.register(
            "store_commits",
            "Durable group commits since start",
            store_commits.clone(),
        );
        let folder_reads = Counter::default();
        registry.register(
            "rules_folder_reads",
            "Whole reads of the rules folder (start-up, changes, admin reloads)",
            folder_reads.clone(),
        );
        let rules_events = Family::<Labels, Counter>::default();
        registry.register(
            "rules_events",
            "File events from the rules folder: `change` (content) or `ignored` (access only)",
            rules_events.clone(),
        );
        Self {
            registry,
            folder_reads,
            rules_events,
            requests,
            latency,
            evaluations,
            reloads,
            active_release,
            store_commits,
        }
    }
}

impl Metrics {
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&vec![
                ("route", route.to_owned()),
                ("method", method.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
        self.latency
            .get_or_create(&vec![("route", route.to_owned())])
            .observe(seconds);
    }

    pub fn evaluation(&self, permit: &str, kind: &str, outcome: &str) {
        self.evaluations
            .get_or_create(&vec![
                ("permit", permit.to_owned()),
                ("kind", kind.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    pub fn reload(&self, accepted: bool) {
        let outcome = if accepted { "accepted" } else { "rejected" };
        self.reloads
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    pub fn folder_read(&self) {
        self.folder_reads.inc();
    }

    pub fn rules_events(&self, change: bool, n: usize) {
        let outcome = if change { "change" } else { "ignored" };
        self.rules_events
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    pub fn set_active_release(&self, id: &str) {
        self.active_release.clear();
        self.active_release
            .get_or_create(&vec![("release", id.to_owned())])
            .set(1);
    }

    pub fn render(&self, store_commits: u64) -> String {
        self.store_commits.set(store_commits);
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
