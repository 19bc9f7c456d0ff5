//! Crash consistency of applications: SIGKILL the server at random moments, again and again,
//! while clients submit PBG applications and move them through the flow; restart it on the same
//! database each time and check that every acknowledged submission and transition is there as
//! its client was told, that registration and permit numbers are unique and gap-free over
//! everything committed, and that every acknowledged change has its event in a gap-free outbox.
//!
//! Each kill proves itself the way `crash.rs` does: some writes must have been cut off in flight
//! (sent before the kill, then a reset or closed connection rather than "could not connect"), the
//! process must have died of the signal, and a request that fails before the kill fails the test.
//! A write cut off in flight may or may not have committed; either is right, as long as what
//! committed is whole (its number, its history entry and its event together).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use pintu_tests::applications::{
    all_events, applicant, create_user, id_of, list_all, office_today, parse_number, pbg_data,
    wait_for_release, PBG_STEPS,
};
use pintu_tests::{copy_dir, repo_root, Server};
use serde_json::{json, Value};

const KILLS: usize = 20;
const SUBMITTERS: usize = 3;
const TRANSITIONERS: usize = 2;
/// A kill comes after this many acknowledged writes in its round (chosen at random).
const ACKS_BEFORE_KILL: std::ops::Range<usize> = 5..40;
/// How long a round may wait for its acknowledgements.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

const REGISTRATION: &str = "REG/PBG/{YYYY}/{NNNNN}";
const PERMIT: &str = "503/{NNNN}/PBG/DPMPTSP/{MM}/{YYYY}";

/// What a client was told about one application, by its last acknowledged write.
#[derive(Debug, Clone)]
struct Acked {
    version: u64,
    step: Value,
    status: Value,
    registration_number: Value,
    permit_number: Value,
    /// Every version a write of it was acknowledged at.
    versions: Vec<u64>,
}

impl Acked {
    fn from(app: &Value) -> Self {
        Self {
            version: app["version"].as_u64().expect("a version"),
            step: app["step"].clone(),
            status: app["status"].clone(),
            registration_number: app["registration_number"].clone(),
            permit_number: app["permit_number"].clone(),
            versions: vec![],
        }
    }
}

/// The tokens of the office's users, by role.
#[derive(Clone)]
struct Tokens(BTreeMap<String, String>);

/// State the clients share with the test, across rounds.
#[derive(Default)]
struct Ledger {
    acked: Mutex<BTreeMap<String, Acked>>,
    /// Applications in progress that a transitioner may move next.
    ready: Mutex<VecDeque<String>>,
}

impl Ledger {
    /// Records an acknowledged write; an application still in progress goes to the back of the
    /// queue after its submission and to the front after a transition, so that transitioners
    /// carry applications through the whole flow instead of spreading over all of them.
    fn ack(&self, app: &Value, front: bool) {
        let id = id_of(app);
        let mut acked = self.acked.lock().unwrap();
        let entry = acked.entry(id.clone()).or_insert_with(|| Acked::from(app));
        let versions = std::mem::take(&mut entry.versions);
        *entry = Acked::from(app);
        entry.versions = versions;
        entry.versions.push(entry.version);
        drop(acked);
        if app["status"] == "in_progress" {
            let mut ready = self.ready.lock().unwrap();
            if front {
                ready.push_front(id);
            } else {
                ready.push_back(id);
            }
        }
    }
}

/// One round's shared state.
struct Round {
    base: String,
    tokens: Tokens,
    ledger: Arc<Ledger>,
    next_name: Arc<AtomicUsize>,
    acks: AtomicUsize,
    /// Writes (submissions and transitions) sent and not yet answered.
    in_flight: AtomicUsize,
    killed_at: OnceLock<Instant>,
}

/// How a client's round ended.
#[derive(Default, Debug)]
struct Ending {
    cut_off: usize,
    after_kill: usize,
    how: String,
}

impl Round {
    /// After a request failed: the kill explains it (counted), or the test fails.
    fn ended(&self, what: &str, sent_at: Instant, write: bool, e: &reqwest::Error) -> Ending {
        let ended_at = Instant::now();
        let Some(&kill) = self.killed_at.get().filter(|k| **k <= ended_at) else {
            panic!("{what} failed while the server was up: {e:?}");
        };
        assert!(
            !e.is_timeout(),
            "{what} timed out instead of being cut off: {e:?}"
        );
        let sent_before = sent_at < kill;
        let mut end = Ending {
            how: format!(
                "{what}: sent {} the kill, connect error {}: {e}",
                if sent_before { "before" } else { "after" },
                e.is_connect()
            ),
            ..Ending::default()
        };
        if write && sent_before && !e.is_connect() {
            end.cut_off = 1;
        } else {
            end.after_kill = 1;
        }
        end
    }
}

async fn send(req: reqwest::RequestBuilder) -> Result<(u16, Value), reqwest::Error> {
    let r = req.send().await?;
    let status = r.status().as_u16();
    let text = r.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Submits PBG applications until a request fails after the kill.
async fn submitter(round: Arc<Round>) -> Ending {
    let http = client();
    let token = round.tokens.0["front_office"].clone();
    loop {
        let n = round.next_name.fetch_add(1, Ordering::SeqCst);
        let body = json!({"permit": "pbg", "applicant": applicant(&format!("Pemohon {n}"), Some("1872012505800001")), "data": pbg_data()});
        round.in_flight.fetch_add(1, Ordering::SeqCst);
        let sent_at = Instant::now();
        let result = send(
            http.post(format!("{}/v1/applications", round.base))
                .bearer_auth(&token)
                .json(&body),
        )
        .await;
        round.in_flight.fetch_sub(1, Ordering::SeqCst);
        match result {
            Ok((201, app)) => {
                round.ledger.ack(&app, false);
                round.acks.fetch_add(1, Ordering::SeqCst);
            }
            Ok((status, v)) => panic!("submission {n}: unexpected {status}: {v}"),
            Err(e) => return round.ended(&format!("submission {n}"), sent_at, true, &e),
        }
    }
}

/// Advances applications of the ready queue, one step at a time, with the step's role, until a
/// request fails after the kill.
async fn transitioner(round: Arc<Round>) -> Ending {
    let http = client();
    let reader = round.tokens.0["front_office"].clone();
    loop {
        let next = round.ledger.ready.lock().unwrap().pop_front();
        let Some(id) = next else {
            tokio::time::sleep(Duration::from_millis(2)).await;
            if round.killed_at.get().is_some() {
                return Ending {
                    after_kill: 1,
                    how: "idle at the kill".into(),
                    ..Ending::default()
                };
            }
            continue;
        };
        // Its state now: a transition cut off by an earlier kill may have committed.
        let sent_at = Instant::now();
        let app = match send(
            http.get(format!("{}/v1/applications/{id}", round.base))
                .bearer_auth(&reader),
        )
        .await
        {
            Ok((200, app)) => app,
            Ok((status, v)) => panic!("GET {id}: unexpected {status}: {v}"),
            Err(e) => {
                round.ledger.ready.lock().unwrap().push_front(id.clone());
                return round.ended(&format!("GET {id}"), sent_at, false, &e);
            }
        };
        if app["status"] != "in_progress" {
            continue;
        }
        let step = app["step"].as_str().expect("a step").to_owned();
        let role = PBG_STEPS
            .iter()
            .find(|(s, _)| *s == step)
            .map(|(_, r)| *r)
            .expect("a pbg step");
        let token = round.tokens.0[role].clone();
        round.in_flight.fetch_add(1, Ordering::SeqCst);
        let sent_at = Instant::now();
        let result = send(
            http.post(format!("{}/v1/applications/{id}/transitions", round.base))
                .bearer_auth(&token)
                .json(&json!({"action": "advance", "version": app["version"]})),
        )
        .await;
        round.in_flight.fetch_sub(1, Ordering::SeqCst);
        match result {
            Ok((200, moved)) => {
                round.ledger.ack(&moved, true);
                round.acks.fetch_add(1, Ordering::SeqCst);
            }
            Ok((status, v)) => panic!("advance {id} at {step}: unexpected {status}: {v}"),
            Err(e) => {
                round.ledger.ready.lock().unwrap().push_front(id.clone());
                return round.ended(&format!("advance {id} at {step}"), sent_at, true, &e);
            }
        }
    }
}

/// The sequence of every number of `format` (each dated on one of `days`); asserts they are
/// exactly 1..=n.
fn assert_gap_free(what: &str, format: &str, days: &[NaiveDate], numbers: &[&str]) -> usize {
    let mut seqs: Vec<u64> = numbers
        .iter()
        .map(|text| {
            days.iter()
                .find_map(|d| parse_number(format, *d, text))
                .unwrap_or_else(|| panic!("{what}: `{text}` is not {format} on {days:?}"))
        })
        .collect();
    seqs.sort_unstable();
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(
        seqs,
        want,
        "{what}: committed numbers are not 1..={}",
        seqs.len()
    );
    seqs.len()
}

/// Checks the restarted server against everything acknowledged so far; returns (applications
/// stored, permits issued, events).
async fn check(
    s: &Server,
    tokens: &Tokens,
    ledger: &Ledger,
    days: &[NaiveDate],
) -> (usize, usize, usize) {
    let stored: BTreeMap<String, Value> = list_all(s, &tokens.0["front_office"], "limit=1000")
        .await
        .into_iter()
        .flatten()
        .map(|a| (id_of(&a), a))
        .collect();
    let acked = ledger.acked.lock().unwrap().clone();
    let mut problems = Vec::new();
    for (id, ack) in &acked {
        let Some(app) = stored.get(id) else {
            problems.push(format!("{id}: acknowledged ({ack:?}) but not stored"));
            continue;
        };
        let version = app["version"].as_u64().unwrap();
        if version < ack.version {
            problems.push(format!(
                "{id}: acknowledged at version {}, stored at {version}",
                ack.version
            ));
        }
        if version == ack.version && (app["step"] != ack.step || app["status"] != ack.status) {
            problems.push(format!(
                "{id}: acknowledged at {} / {}, stored at {} / {} (version {version})",
                ack.status, ack.step, app["status"], app["step"]
            ));
        }
        if app["registration_number"] != ack.registration_number {
            problems.push(format!(
                "{id}: registration {} acknowledged, {} stored",
                ack.registration_number, app["registration_number"]
            ));
        }
        if !ack.permit_number.is_null() && app["permit_number"] != ack.permit_number {
            problems.push(format!(
                "{id}: permit {} acknowledged, {} stored",
                ack.permit_number, app["permit_number"]
            ));
        }
    }

    // Numbers over everything committed, acknowledged or not.
    let registrations: Vec<&str> = stored
        .values()
        .map(|a| {
            a["registration_number"]
                .as_str()
                .expect("a registration number")
        })
        .collect();
    assert_gap_free("registration numbers", REGISTRATION, days, &registrations);
    let permits: Vec<&str> = stored
        .values()
        .filter_map(|a| a["permit_number"].as_str())
        .collect();
    assert_gap_free("permit numbers", PERMIT, days, &permits);
    for a in stored.values() {
        let past_penetapan = a["status"] == "completed" || a["step"] == "penyerahan";
        if past_penetapan == a["permit_number"].is_null() {
            problems.push(format!(
                "{}: at {} with permit number {}",
                a["id"], a["step"], a["permit_number"]
            ));
        }
    }

    // The outbox: gap-free, and every change (acknowledged, and the last stored) has its event.
    let events = all_events(s).await;
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, want, "event seqs are not 1..=n");
    let mut versions: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    let mut issued: BTreeMap<&str, &str> = BTreeMap::new();
    for e in &events {
        let app = e["application"].as_str().expect("an application id");
        if let Some(v) = e["data"]["version"].as_u64() {
            versions.entry(app).or_default().insert(v);
        }
        if e["type"] == "permit.issued" {
            let n = e["data"]["permit_number"]
                .as_str()
                .expect("a permit number");
            assert!(
                issued.insert(app, n).is_none(),
                "{app}: two permit.issued events"
            );
        }
    }
    for (id, ack) in &acked {
        let have = versions.get(id.as_str()).cloned().unwrap_or_default();
        for v in &ack.versions {
            if !have.contains(v) {
                problems.push(format!(
                    "{id}: acknowledged change at version {v} has no event"
                ));
            }
        }
    }
    for (id, a) in &stored {
        let v = a["version"].as_u64().unwrap();
        if !versions
            .get(id.as_str())
            .is_some_and(|have| have.contains(&v))
        {
            problems.push(format!("{id}: stored version {v} has no event"));
        }
        if issued.get(id.as_str()).copied() != a["permit_number"].as_str() {
            problems.push(format!(
                "{id}: permit {} but permit.issued {:?}",
                a["permit_number"],
                issued.get(id.as_str())
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    (stored.len(), permits.len(), events.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_applications_survive_repeated_kills() {
    let seed = std::env::var("PINTU_APP_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("seed {seed} (rerun with PINTU_APP_CRASH_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);

    let dir = tempfile::tempdir().unwrap();
    let (rules, data) = (dir.path().join("rules"), dir.path().join("data"));
    copy_dir(&repo_root().join("rules"), &rules);
    let started = Instant::now();
    let mut server = Server::start(&rules, &data, &[]);
    wait_for_release(&server).await;
    let mut tokens = BTreeMap::new();
    for (_, role) in PBG_STEPS {
        if !tokens.contains_key(role) {
            let token = create_user(&server, role, &[role], &["*"]).await;
            tokens.insert(role.to_owned(), token);
        }
    }
    let tokens = Tokens(tokens);
    // The dates numbers may carry: the office's days while the test runs.
    let mut days = vec![office_today()];

    let ledger = Arc::new(Ledger::default());
    let next_name = Arc::new(AtomicUsize::new(0));
    let mut cut_off_total = 0;
    for kill in 1..=KILLS {
        let round = Arc::new(Round {
            base: server.base.clone(),
            tokens: tokens.clone(),
            ledger: ledger.clone(),
            next_name: next_name.clone(),
            acks: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            killed_at: OnceLock::new(),
        });
        let clients: Vec<_> = (0..SUBMITTERS)
            .map(|_| tokio::spawn(submitter(round.clone())))
            .chain((0..TRANSITIONERS).map(|_| tokio::spawn(transitioner(round.clone()))))
            .collect();
        let target = rng.usize(ACKS_BEFORE_KILL);
        let waiting = Instant::now();
        while round.acks.load(Ordering::SeqCst) < target {
            assert!(
                waiting.elapsed() < ROUND_TIMEOUT,
                "kill {kill}: fewer than {target} acknowledgements within {ROUND_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..15))).await;
        let bound = Instant::now();
        while round.in_flight.load(Ordering::SeqCst) == 0 {
            assert!(
                bound.elapsed() < ROUND_TIMEOUT,
                "kill {kill}: no write in flight"
            );
            tokio::task::yield_now().await;
        }
        round.killed_at.set(Instant::now()).unwrap();
        tokio::task::block_in_place(|| server.kill());

        let mut endings = Vec::new();
        let (mut cut_off, mut after) = (0, 0);
        for c in clients {
            let e = c.await.unwrap();
            cut_off += e.cut_off;
            after += e.after_kill;
            endings.push(e.how);
        }
        // A request seen in flight just before the kill may still finish first on a loaded
        // machine; a round without a cut-off write is weaker, not wrong. The whole run must
        // cut some off (asserted below), or it tested nothing.
        if cut_off == 0 {
            println!(
                "kill {kill}: every write in flight finished before the kill:\n{}",
                endings.join("\n")
            );
        }
        cut_off_total += cut_off;

        server = Server::start(&rules, &data, &[]);
        wait_for_release(&server).await;
        let today = office_today();
        if !days.contains(&today) {
            days.push(today);
        }
        let (apps, permits, events) = check(&server, &tokens, &ledger, &days).await;
        println!(
            "kill {kill:2}: {:3} acknowledged this round, {cut_off} writes cut off, {after} after the kill; \
             {apps} applications, {permits} permits, {events} events stored; all acknowledged present",
            round.acks.load(Ordering::SeqCst)
        );
    }
    let acked = ledger.acked.lock().unwrap();
    let writes: usize = acked.values().map(|a| a.versions.len()).sum();
    let completed = acked.values().filter(|a| a.status == "completed").count();
    println!(
        "{KILLS} kills in {:.1} s, {cut_off_total} writes cut off in flight; {} applications and {writes} \
         writes acknowledged ({completed} completed), every one present with its number and event",
        started.elapsed().as_secs_f64(),
        acked.len()
    );
    assert!(completed > 0, "no application went through the whole flow");
    assert!(
        cut_off_total > 0,
        "no kill of {KILLS} cut off a write in flight: the run tested no crash mid-write"
    );
}
