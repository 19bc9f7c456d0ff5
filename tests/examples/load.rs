//! HTTP load harness: drives `POST /v1/permits/pbg/levy` (worked example B) from concurrent
//! clients against a running server and prints throughput and latency.
//!
//! ```sh
//! cargo run --release -p pintu -- serve --data /tmp/pintu-bench &
//! cargo run --release -p pintu-tests --example load -- http://127.0.0.1:8080 8 10
//! ```
//! Arguments: base URL, clients (default 8), seconds (default 10). Every response is checked;
//! each one was acknowledged only after its decision record was durable (group commit).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a load harness fails loudly"
)]

use std::time::{Duration, Instant};

use serde_json::json;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let clients: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(8);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(10);
    let url = format!("{base}/v1/permits/pbg/levy");
    let body = json!({"data": {
        "fungsi": "usaha", "kompleksitas": "tidak_sederhana", "permanensi": "permanen",
        "jumlah_lantai": 5, "luas_lantai_total": "1250.5", "kepemilikan": "badan_usaha", "kegiatan": "baru"}});
    let http = reqwest::Client::new();
    let expected = {
        let r = http
            .post(&url)
            .json(&body)
            .send()
            .await
            .expect("server reachable");
        let v: serde_json::Value = r.json().await.expect("json");
        v["total"].as_str().expect("a total").to_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, body, expected) =
            (http.clone(), url.clone(), body.clone(), expected.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let r = http.post(&url).json(&body).send().await.expect("request");
                assert_eq!(r.status().as_u16(), 200);
                let v: serde_json::Value = r.json().await.expect("json");
                assert_eq!(v["total"].as_str(), Some(expected.as_str()));
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    println!("| workload | clients | seconds | requests | req/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| pbg levy (case B), durable decision log | {clients} | {seconds} | {} | {:.0} | {:.2} | {:.2} |",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99)
    );
    println!(
        "machine: {} cores; total per response {expected}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}
