//! Crash consistency: kill the server (SIGKILL) while clients are writing, reopen the database,
//! and find every acknowledged decision in the log.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pintu_tests::{uji_server, Server};
use serde_json::json;

const CLIENTS: usize = 4;
const KILL_AFTER_ACKS: usize = 200;
const MAX_PER_CLIENT: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_decisions_survive_a_kill() {
    let (_dir, server) = uji_server("1");
    let (rules, data) = (server.rules.clone(), server.data.clone());
    let base = server.base.clone();
    let acked = Arc::new(AtomicUsize::new(0));

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (base, acked) = (base.clone(), acked.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut ok = Vec::new();
            for i in 0..MAX_PER_CLIENT {
                let x = c * 10_000 + i + 1;
                let sent = http
                    .post(format!("{base}/v1/permits/uji/levy"))
                    .json(&json!({"data": {"x": x}}))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 200 => {
                        ok.push(x.to_string());
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => break, // the server is gone
                }
            }
            ok
        }));
    }
    let started = Instant::now();
    while acked.load(Ordering::Relaxed) < KILL_AFTER_ACKS
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(server); // SIGKILL, mid-load
    let mut acknowledged = BTreeSet::new();
    for c in clients {
        acknowledged.extend(c.await.unwrap());
    }
    assert!(acknowledged.len() >= KILL_AFTER_ACKS.min(CLIENTS * MAX_PER_CLIENT));

    let server = Server::start(&rules, &data, &[]);
    let (status, v) = server
        .admin_get("/admin/decisions?permit=uji&limit=1000")
        .await;
    assert_eq!(status, 200);
    let logged: BTreeSet<String> = v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["input"]["x"].to_string())
        .collect();
    let lost: Vec<&String> = acknowledged.difference(&logged).collect();
    println!(
        "killed after {} acknowledged decisions; {} in the log after restart",
        acknowledged.len(),
        logged.len()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
}
