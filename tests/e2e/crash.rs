//! Crash consistency: SIGKILL the server again and again at random moments while clients are
//! writing — half of the kills while a rules change is being built — restart it on the same
//! database each time, and find every acknowledged decision in the log with the output its
//! client was given.
//!
//! Each kill proves itself: some requests must have been cut off in flight (sent before the kill,
//! then a reset or a closed connection rather than "could not connect"), and the process must have
//! died of the signal. A request that fails before the kill fails the test.
//!
//! Not covered: power loss. A kill leaves the page cache to the kernel, so it checks that pintu
//! acknowledges only committed transactions and that redb recovers from a torn process, not that
//! fsync reaches the platter. A power-loss check needs a block device that drops unflushed writes
//! (`dm-flakey`/`dm-log-writes`, root and device-mapper), which test machines and CI here do not
//! offer.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use pintu_tests::{write_slow_permit, write_uji, Server};
use rust_decimal::Decimal;
use serde_json::{json, Value};

const CLIENTS: usize = 4;
/// Clients of the slow permit type, whose requests are in the server most of the time.
const SLOW_CLIENTS: usize = 2;
const KILLS: usize = 12;
/// A kill comes after this many acknowledged requests in its round (chosen at random).
const ACKS_BEFORE_KILL: std::ops::Range<usize> = 10..80;
/// How long a round may wait for its acknowledgements.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);
/// Fixtures of the slow permit type; each runs a loop so that building a release takes long
/// enough for a kill to land inside the build.
const SLOW_FIXTURES: usize = 10;

/// One acknowledged levy: what the client was told.
#[derive(Debug, Clone, PartialEq)]
struct Ack {
    permit: &'static str,
    total: String,
    release: String,
}

/// What happened to the requests of one round.
#[derive(Default)]
struct Round {
    acked: BTreeMap<u64, Ack>,
    /// Sent before the kill, then cut off (reset, closed, incomplete response).
    cut_off: usize,
    /// Sent after the kill: refused or cut off; these prove nothing.
    after_kill: usize,
    /// How each client's last request ended, for a failure message.
    endings: Vec<String>,
}

/// State the clients of one round share with the test.
struct Load {
    base: String,
    next_x: Arc<AtomicU64>,
    acks: AtomicUsize,
    in_flight: AtomicUsize,
    killed_at: OnceLock<Instant>,
}

/// Sends levies for `permit` until a request fails after the kill; a failure before the kill, a
/// non-200 answer or a timeout fails the test.
async fn client(load: Arc<Load>, permit: &'static str) -> Round {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let url = format!("{}/v1/permits/{permit}/levy", load.base);
    let mut round = Round::default();
    loop {
        let x = load.next_x.fetch_add(1, Ordering::Relaxed);
        load.in_flight.fetch_add(1, Ordering::SeqCst);
        let sent_at = Instant::now();
        let result = async {
            let r = http
                .post(&url)
                .json(&json!({"data": {"x": x}}))
                .send()
                .await?;
            let status = r.status().as_u16();
            Ok::<_, reqwest::Error>((status, r.json::<Value>().await?))
        }
        .await;
        let ended_at = Instant::now();
        load.in_flight.fetch_sub(1, Ordering::SeqCst);
        let e = match result {
            Ok((200, v)) => {
                let ack = Ack {
                    permit,
                    total: v["total"].as_str().expect("a total").to_owned(),
                    release: v["release"].as_str().expect("a release").to_owned(),
                };
                round.acked.insert(x, ack);
                load.acks.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            Ok((status, v)) => panic!("{permit} x = {x}: unexpected {status}: {v}"),
            Err(e) => e,
        };
        let Some(&kill) = load.killed_at.get().filter(|k| **k <= ended_at) else {
            panic!("{permit} x = {x} failed while the server was up: {e:?}");
        };
        assert!(
            !e.is_timeout(),
            "{permit} x = {x} timed out instead of being cut off: {e:?}"
        );
        // In flight at the kill: sent before it, and the connection broke after it was made.
        let sent_before = sent_at < kill;
        if sent_before && !e.is_connect() {
            round.cut_off += 1;
        } else {
            round.after_kill += 1;
        }
        round.endings.push(format!(
            "{permit} x = {x}: sent {} the kill, connect error {}: {e}",
            if sent_before { "before" } else { "after" },
            e.is_connect()
        ));
        return round;
    }
}

/// Every decision in the log, by `x`: walks all pages.
async fn logged(s: &Server) -> BTreeMap<u64, Value> {
    let mut out = BTreeMap::new();
    let mut before = String::new();
    loop {
        let (status, v) = s
            .admin_get(&format!("/admin/decisions?limit=1000{before}"))
            .await;
        assert_eq!(status, 200, "{v}");
        let page = v["decisions"].as_array().unwrap();
        let Some(last) = page.last() else { break };
        before = format!("&before={}", last["seq"].as_u64().unwrap());
        for d in page {
            let x = d["input"]["x"].as_u64().expect("x in the input");
            assert!(out.insert(x, d.clone()).is_none(), "x = {x} logged twice");
        }
    }
    out
}

/// Every acknowledged decision is in the log with the release and total its client saw.
fn lost(acked: &BTreeMap<u64, Ack>, log: &BTreeMap<u64, Value>) -> Vec<String> {
    acked
        .iter()
        .filter_map(|(x, ack)| {
            let Some(d) = log.get(x) else {
                return Some(format!(
                    "x = {x}: acknowledged ({ack:?}) but not in the log"
                ));
            };
            let found = Ack {
                permit: if d["permit"] == ack.permit {
                    ack.permit
                } else {
                    "another permit"
                },
                total: d["output"]["total"].as_str().unwrap_or("").to_owned(),
                release: d["release"].as_str().unwrap_or("").to_owned(),
            };
            (found != *ack).then(|| format!("x = {x}: acknowledged {ack:?}, logged {found:?}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_decisions_survive_repeated_kills_including_mid_reload() {
    let seed = std::env::var("PINTU_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("seed {seed} (rerun with PINTU_CRASH_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);

    let dir = tempfile::tempdir().unwrap();
    let (rules, data) = (dir.path().join("rules"), dir.path().join("data"));
    write_uji(&rules, "1");
    write_slow_permit(&rules, SLOW_FIXTURES, 100_000);

    // Every request has its own `x`, the key that finds its decision in the log.
    let next_x = Arc::new(AtomicU64::new(1));
    let mut acked: BTreeMap<u64, Ack> = BTreeMap::new();
    let mut reload_kills = 0;
    let mut rate = "1".to_owned();
    let mut reloads_cut_off = 0;
    let started = Instant::now();
    let mut server = Server::start(&rules, &data, &[]);
    for kill in 1..=KILLS {
        assert!(
            server.release().await.is_some(),
            "no release after restart {kill}"
        );
        let load = Arc::new(Load {
            base: server.base.clone(),
            next_x: next_x.clone(),
            acks: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            killed_at: OnceLock::new(),
        });
        // Fast clients commit in shared batches and so tend to be between requests together;
        // the slow ones keep a request in the server nearly all the time.
        let clients: Vec<_> = std::iter::repeat_n("uji", CLIENTS)
            .chain(std::iter::repeat_n("lambat", SLOW_CLIENTS))
            .map(|permit| tokio::spawn(client(load.clone(), permit)))
            .collect();
        let target = rng.usize(ACKS_BEFORE_KILL);
        let waiting = Instant::now();
        while load.acks.load(Ordering::SeqCst) < target {
            assert!(
                waiting.elapsed() < ROUND_TIMEOUT,
                "kill {kill}: fewer than {target} acknowledgements within {ROUND_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Not right after an acknowledgement: that is when a batch has just been answered.
        tokio::time::sleep(Duration::from_millis(rng.u64(0..20))).await;

        // Every other kill lands while a rules change is being built: the reload request is
        // sent, and the kill comes before its answer (if the answer came first, another change
        // is made and the kill comes sooner).
        let during_reload = kill % 2 == 0;
        let mut reload = None;
        if during_reload {
            reload_kills += 1;
            for attempt in 0.. {
                assert!(
                    attempt < 10,
                    "kill {kill}: every reload finished before the kill"
                );
                rate = format!("{kill}.{attempt}");
                write_uji(&rules, &rate);
                let (http, url, token) = (
                    server.http.clone(),
                    server.url("/admin/reload"),
                    server.admin_token.clone(),
                );
                let task =
                    tokio::spawn(async move { http.post(url).bearer_auth(token).send().await });
                let delay = rng.u64(5..60) >> attempt.min(3);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                if !task.is_finished() {
                    reload = Some((task, delay));
                    break;
                }
                let _ = task.await;
            }
        }

        let bound = Instant::now();
        while load.in_flight.load(Ordering::SeqCst) == 0 {
            assert!(
                bound.elapsed() < ROUND_TIMEOUT,
                "kill {kill}: no request in flight"
            );
            tokio::task::yield_now().await;
        }
        load.killed_at.set(Instant::now()).unwrap();
        let (rules_dir, data_dir) = (server.rules.clone(), server.data.clone());
        tokio::task::block_in_place(|| server.kill());

        let mut round = Round::default();
        for c in clients {
            let r = c.await.unwrap();
            round.cut_off += r.cut_off;
            round.after_kill += r.after_kill;
            round.endings.extend(r.endings);
            round.acked.extend(r.acked);
        }
        let reload_state = match reload {
            None => String::new(),
            Some((task, delay)) => match task.await.unwrap() {
                Ok(r) => format!(", reload finished first ({})", r.status()),
                Err(e) if !e.is_connect() => {
                    reloads_cut_off += 1;
                    format!(", reload (rate {rate}) cut off {delay} ms after it was sent")
                }
                Err(e) => panic!("kill {kill}: the reload never reached the server: {e:?}"),
            },
        };
        assert!(
            round.cut_off > 0,
            "kill {kill}: no request was in flight when the server was killed:\n{}",
            round.endings.join("\n")
        );

        server = Server::start(&rules_dir, &data_dir, &[]);
        acked.extend(round.acked.iter().map(|(x, a)| (*x, a.clone())));
        let log = logged(&server).await;
        let missing = lost(&acked, &log);
        println!(
            "kill {kill:2}{}: {:3} acknowledged this round, {} in flight cut off, {} after the kill{reload_state}; \
             {} acknowledged in all, {} lost",
            if during_reload { " (mid-reload)" } else { "" },
            round.acked.len(),
            round.cut_off,
            round.after_kill,
            acked.len(),
            missing.len()
        );
        assert!(
            missing.is_empty(),
            "after kill {kill}:\n{}",
            missing.join("\n")
        );
    }

    // The folder's last change is what serves after the last restart.
    let (status, v) = server
        .post("/v1/permits/uji/levy", json!({"data": {"x": 10}}))
        .await;
    assert_eq!(status, 200, "{v}");
    let total = Decimal::from_str(v["total"].as_str().unwrap()).unwrap();
    assert_eq!(
        total,
        Decimal::from_str(&rate).unwrap() * Decimal::from(10),
        "the last rules change (rate {rate}) serves after the last restart"
    );
    println!(
        "{KILLS} kills ({reload_kills} during a reload, {reloads_cut_off} of them cut the reload off) \
         in {:.1} s; every one of {} acknowledged decisions is in the log with its total",
        started.elapsed().as_secs_f64(),
        acked.len()
    );
    assert!(
        reloads_cut_off * 2 >= reload_kills,
        "only {reloads_cut_off} of {reload_kills} reload kills landed while the reload was running"
    );
}
