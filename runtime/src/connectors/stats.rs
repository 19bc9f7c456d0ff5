//! Per-connector call statistics for `/admin/connectors`: counts, the last error, and latency
//! percentiles over the most recent calls.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// Latencies kept for the percentiles.
const WINDOW: usize = 1_024;

#[derive(Debug, Default)]
pub(crate) struct Stats {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    calls: u64,
    failures: u64,
    last_error: Option<String>,
    latencies_us: VecDeque<u64>,
}

/// A copy of a connector's statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub calls: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    /// Over the last 1,024 calls; none before the first call.
    pub latency_p50_us: Option<u64>,
    pub latency_p99_us: Option<u64>,
}

impl Stats {
    pub(crate) fn record(&self, took: Duration, error: Option<String>) {
        let Ok(mut s) = self.inner.lock() else {
            return;
        };
        s.calls += 1;
        if let Some(e) = error {
            s.failures += 1;
            s.last_error = Some(e);
        }
        if s.latencies_us.len() == WINDOW {
            s.latencies_us.pop_front();
        }
        s.latencies_us
            .push_back(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let Ok(s) = self.inner.lock() else {
            return StatsSnapshot::default();
        };
        let mut sorted: Vec<u64> = s.latencies_us.iter().copied().collect();
        sorted.sort_unstable();
        StatsSnapshot {
            calls: s.calls,
            failures: s.failures,
            last_error: s.last_error.clone(),
            latency_p50_us: percentile(&sorted, 50),
            latency_p99_us: percentile(&sorted, 99),
        }
    }
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_counts() {
        let s = Stats::default();
        assert_eq!(s.snapshot().latency_p50_us, None);
        for us in 1..=100 {
            s.record(Duration::from_micros(us), None);
        }
        s.record(Duration::from_micros(5), Some("boom".into()));
        let snap = s.snapshot();
        assert_eq!((snap.calls, snap.failures), (101, 1));
        assert_eq!(snap.last_error.as_deref(), Some("boom"));
        assert_eq!(snap.latency_p50_us, Some(50));
        assert_eq!(snap.latency_p99_us, Some(99));
    }
}
