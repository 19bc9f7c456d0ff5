//! The load generator: concurrent clients in this process, each on its own keep-alive
//! connection, posting the same levy request in a loop and checking every answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value as Json;

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Load {
    /// 2xx answers with the expected total.
    pub ok: u64,
    /// Answers with another status.
    pub non_2xx: u64,
    /// Transport errors (refused, reset, timed out) and 2xx answers with a wrong body.
    pub errors: u64,
    pub elapsed: Duration,
    /// Latency of every 2xx answer.
    pub latencies: Vec<Duration>,
}

impl Load {
    pub fn per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    pub fn failed(&self) -> u64 {
        self.non_2xx + self.errors
    }

    pub fn requests(&self) -> u64 {
        self.ok + self.failed()
    }
}

/// One request to send, and what a right answer's `total` is.
#[derive(Clone)]
pub struct Request {
    pub url: String,
    pub body: String,
    /// `None`: any `total` will do (the rules change under the clients).
    pub total: Option<String>,
}

/// A client per connection: reqwest pools connections per client, so each task keeps its own.
pub fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1)
        .build()?)
}

async fn one(client: &reqwest::Client, req: &Request) -> std::result::Result<bool, ()> {
    let resp = client
        .post(&req.url)
        .header("content-type", "application/json")
        .body(req.body.clone())
        .send()
        .await
        .map_err(|_| ())?;
    if !resp.status().is_success() {
        return Ok(false);
    }
    let body: Json = resp.json().await.map_err(|_| ())?;
    let total = body.get("total").and_then(Json::as_str);
    match (&req.total, total) {
        (_, None) => Err(()),
        (Some(want), Some(got)) if want != got => Err(()),
        _ => Ok(true),
    }
}

/// Runs `clients` concurrent clients until `run_for` has passed or `stop` is raised.
pub async fn run(
    req: &Request,
    clients: usize,
    run_for: Duration,
    stop: Arc<AtomicBool>,
) -> Result<Load> {
    let start = Instant::now();
    let deadline = start + run_for;
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let client = client()?;
        let req = req.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut load = Load::default();
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match one(&client, &req).await {
                    Ok(true) => {
                        load.ok += 1;
                        load.latencies.push(t.elapsed());
                    }
                    Ok(false) => load.non_2xx += 1,
                    Err(()) => {
                        load.errors += 1;
                        // A refused connection fails at once; do not spin on it.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            load
        }));
    }
    let mut all = Load::default();
    for t in tasks {
        let l = t.await?;
        all.ok += l.ok;
        all.non_2xx += l.non_2xx;
        all.errors += l.errors;
        all.latencies.extend(l.latencies);
    }
    all.elapsed = start.elapsed();
    Ok(all)
}
