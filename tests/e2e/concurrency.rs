//! Clients keep calling `/levy` while the rules change many times: no request fails, and every
//! response carries exactly the total of the release it names (rate × x, in decimal arithmetic).

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pintu_tests::{uji_server, write_uji};
use rust_decimal::Decimal;
use serde_json::json;

const CLIENTS: usize = 4;
const CHANGES: usize = 50;
/// The `x` every client sends.
const X: u32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_rules_change() {
    let (_dir, s) = uji_server("1");
    let rules = s.rules.clone();
    let s = Arc::new(s);
    let stop = Arc::new(AtomicBool::new(false));

    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let s = s.clone();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut seen: Vec<(String, String)> = Vec::new();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, v) = s
                    .post("/v1/permits/uji/levy", json!({"data": {"x": X}}))
                    .await;
                if status == 200 {
                    match (v["release"].as_str(), v["total"].as_str()) {
                        (Some(release), Some(total)) => {
                            seen.push((release.to_owned(), total.to_owned()));
                        }
                        _ => failures.push(format!("200 without release or total: {v}")),
                    }
                } else {
                    failures.push(format!("{status}: {v}"));
                }
            }
            (seen, failures)
        }));
    }

    let started = Instant::now();
    let mut current = s.release().await;
    // Which rate each release was built from: every release's rate is distinct.
    let mut rates: BTreeMap<String, Decimal> = BTreeMap::new();
    rates.insert(current.clone().expect("a release at start"), Decimal::ONE);
    let mut latencies = Vec::new();
    for i in 0..CHANGES {
        let rate = format!("{}.{}", i + 2, i);
        write_uji(&rules, &rate);
        let (next, took) = s
            .wait_for_new_release(current.as_deref(), Duration::from_secs(30))
            .await;
        latencies.push(took);
        rates.insert(next.clone(), Decimal::from_str(&rate).unwrap());
        current = Some(next);
    }
    stop.store(true, Ordering::Relaxed);
    let changes_took = started.elapsed();

    let mut totals: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut requests = 0;
    for c in clients {
        let (seen, failures) = c.await.unwrap();
        assert!(
            failures.is_empty(),
            "requests failed during reloads: {failures:?}"
        );
        requests += seen.len();
        for (release, total) in seen {
            totals.entry(release).or_default().insert(total);
        }
    }
    for (release, set) in &totals {
        assert_eq!(
            set.len(),
            1,
            "release {release} answered different totals: {set:?}"
        );
        let rate = rates
            .get(release)
            .unwrap_or_else(|| panic!("a response named release {release}, which was never made"));
        for total in set {
            let total = Decimal::from_str(total)
                .unwrap_or_else(|e| panic!("total `{total}` is not a decimal: {e}"));
            assert_eq!(
                total,
                rate * Decimal::from(X),
                "release {release} (rate {rate}) answered {total} for x = {X}"
            );
        }
    }
    assert!(totals.len() > 1, "clients never saw a reload");
    latencies.sort();
    println!(
        "{CHANGES} reloads in {:.1} s under load from {CLIENTS} clients; {requests} levy requests, all 200; \
         {} releases observed; reload latency median {} ms, max {} ms",
        changes_took.as_secs_f64(),
        totals.len(),
        latencies[latencies.len() / 2].as_millis(),
        latencies.last().unwrap().as_millis()
    );
}
