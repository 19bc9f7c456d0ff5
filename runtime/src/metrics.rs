//! Prometheus metrics: requests and latency by route, evaluations by permit, reloads, the
//! active release, store commits.
//!
//! One exposition format: OpenMetrics text, as prometheus-client renders it (counters end in
//! `_total`, the body ends with `# EOF`), served with [`CONTENT_TYPE`].
//!
//! INVARIANT: every label value comes from a bounded set (route templates, known methods,
//! status codes, permit ids of the rules, fixed outcomes). Anything a client makes up collapses
//! into one value, or a client could grow `/metrics` without bound.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

/// The content type of OpenMetrics text, the format [`Metrics::render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label of a request's method: the standard ones by name, anything else as `other`.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
    evaluations: Family<Labels, Counter>,
    reloads: Family<Labels, Counter>,
    active_release: Family<Labels, Gauge>,
    /// Follows the store's own count; see [`Metrics::render`].
    store_commits: Counter<u64, AtomicU64>,
    /// One render at a time, so two cannot both add the same commits to the counter.
    rendering: Mutex<()>,
    folder_reads: Counter,
    rules_events: Family<Labels, Counter>,
    rules_reads: Family<Labels, Counter>,
    evaluations_in_flight: Gauge,
}

/// Marks one evaluation as running in `pintu_evaluations_in_flight` until dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
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
        let store_commits = Counter::<u64, AtomicU64>::default();
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
            "Reads of the rules folder (start-up, changes, admin reloads)",
            folder_reads.clone(),
        );
        let rules_events = Family::<Labels, Counter>::default();
        registry.register(
            "rules_events",
            "File events from the rules folder: `change` (content) or `ignored` (access only)",
            rules_events.clone(),
        );
        let rules_reads = Family::<Labels, Counter>::default();
        registry.register(
            "rules_reads",
            "Reads of the rules folder by what they looked at: `whole` (every file's metadata) \
             or `changed_paths` (only the paths the watcher saw change)",
            rules_reads.clone(),
        );
        let evaluations_in_flight = Gauge::default();
        registry.register(
            "evaluations_in_flight",
            "Evaluations whose scripts are running now (at most max_concurrent_evaluations)",
            evaluations_in_flight.clone(),
        );
        Self {
            evaluations_in_flight,
            registry,
            folder_reads,
            rules_events,
            rules_reads,
            requests,
            latency,
            evaluations,
            reloads,
            active_release,
            store_commits,
            rendering: Mutex::new(()),
        }
    }
}

impl Metrics {
    /// `route` is a route template or `unmatched`, `method` a [`method_label`].
    pub fn request(&self, route: &str, method: &'static str, status: u16, seconds: f64) {
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

    /// Counts an evaluation as running until the returned mark is dropped.
    pub fn evaluation_started(&self) -> InFlight {
        self.evaluations_in_flight.inc();
        InFlight(self.evaluations_in_flight.clone())
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

    pub fn rules_read(&self, whole: bool) {
        let scope = if whole { "whole" } else { "changed_paths" };
        self.rules_reads
            .get_or_create(&vec![("scope", scope.to_owned())])
            .inc();
    }

    pub fn set_active_release(&self, id: &str) {
        self.active_release.clear();
        self.active_release
            .get_or_create(&vec![("release", id.to_owned())])
            .set(1);
    }

    /// OpenMetrics text; `store_commits` is the store's count of durable commits since start.
    pub fn render(&self, store_commits: u64) -> String {
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(|e| e.into_inner());
        let seen = self.store_commits.get();
        if store_commits > seen {
            self.store_commits.inc_by(store_commits - seen);
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label_and_counters_are_typed_as_counters() {
        let m = Metrics::default();
        for i in 0..50 {
            let method = axum::http::Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
            m.request("unmatched", method_label(&method), 405, 0.001);
        }
        m.request(
            "/health",
            method_label(&axum::http::Method::GET),
            200,
            0.001,
        );
        let text = m.render(3);
        assert!(
            text.contains(
                "pintu_http_requests_total{route=\"unmatched\",method=\"other\",status=\"405\"} 50"
            ),
            "{text}"
        );
        assert!(!text.contains("M1"), "{text}");
        assert!(
            text.contains("# TYPE pintu_store_commits counter"),
            "{text}"
        );
        assert!(text.contains("pintu_store_commits_total 3"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        // The counter follows the store's count without counting a commit twice.
        assert!(m.render(5).contains("pintu_store_commits_total 5"));
        assert!(m.render(5).contains("pintu_store_commits_total 5"));
    }
}
