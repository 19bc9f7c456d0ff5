//! Delivery of outbox events to a connector, as the outside system and the admin see it: the
//! real server on the sample rules, the `echo` fixture forwarding each event it is given to a
//! recorder over real HTTP (`pintu_tests::recorder`), and `/admin/outbox`.
//!
//! What the recorder gets is what an outside system would get: every wanted event, in outbox
//! order per application, retried with the same idempotency key, never lost to a crash or to a
//! connector replaced while events flow.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pintu_tests::applications::{
    all_events, applicant, id_of, pbg_data, submit_pbg, transition, Office,
};
use pintu_tests::connectors::{allow_hosts, copy_fixture, replace_echo_component, set_config};
use pintu_tests::fake::Failure;
use pintu_tests::recorder::Recorder;
use pintu_tests::sample_connectors::{wait_until, Setup};
use pintu_tests::{into_json, write_file, Server};
use serde_json::{json, Value};

/// Deliveries with retries on a loaded 2-core machine: generous.
const PATIENCE: Duration = Duration::from_secs(60);

/// `[connectors]` for these tests: retries within a test's patience.
fn settings(max_attempts: u32) -> String {
    format!(
        "[connectors]\nmax_attempts = {max_attempts}\nbackoff_initial_ms = 50\nbackoff_max_ms = 400\npoll_interval_ms = 50\n"
    )
}

/// Sample rules, and `echo` forwarding every event to `recorder`; the server is not started.
fn setup(recorder: &Recorder, max_attempts: u32) -> Setup {
    let setup = Setup::new();
    write_file(
        &setup.dir.path().join("pintu.toml"),
        &settings(max_attempts),
    );
    install_echo(&setup.plugins(), recorder);
    setup
}

/// `plugins/echo/`, forwarding every event to `recorder`.
fn install_echo(plugins: &Path, recorder: &Recorder) {
    copy_fixture(plugins, "echo");
    allow_hosts(plugins, "echo", &[&recorder.origin()]);
    set_config(
        plugins,
        "echo",
        "forward_to",
        &format!("\"{}\"", recorder.url()),
    );
}

/// Starts the server on `setup`; returns once a release (and with it `echo`) serves.
async fn serve(setup: &Setup) -> Server {
    setup.serve().await
}

/// The outbox events `echo` wants (all types the applications service writes), by seq.
async fn wanted_events(server: &Server) -> BTreeMap<u64, Value> {
    all_events(server)
        .await
        .into_iter()
        .map(|e| (e["seq"].as_u64().unwrap(), e))
        .collect()
}

/// Every delivery of `echo` in `state` (all when `None`), walking the pages.
async fn deliveries(server: &Server, state: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<u64> = None;
    loop {
        let mut path = "/admin/outbox?connector=echo&limit=1000".to_owned();
        if let Some(state) = state {
            path.push_str(&format!("&state={state}"));
        }
        if let Some(c) = cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, v) = server.admin_get(&path).await;
        assert_eq!(status, 200, "{path}: {v}");
        out.extend(v["deliveries"].as_array().cloned().unwrap_or_default());
        match v["next_cursor"].as_u64() {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

/// Waits until a delivery of `echo` in `state` satisfies `pred`; returns it.
async fn wait_for_delivery(
    server: &Server,
    state: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    wait_until(server, what, PATIENCE, async || {
        deliveries(server, Some(state))
            .await
            .into_iter()
            .find(|d| pred(d))
    })
    .await
}

/// Waits until every event of the outbox is delivered to `echo` (none pending or dead) and the
/// recorder accepted each; returns the outbox events by seq.
async fn wait_all_delivered(server: &Server, recorder: &Recorder) -> BTreeMap<u64, Value> {
    wait_until(
        server,
        "every outbox event delivered to echo and accepted by the recorder",
        PATIENCE,
        async || {
            let wanted = wanted_events(server).await;
            let delivered: BTreeSet<u64> = deliveries(server, Some("delivered"))
                .await
                .iter()
                .map(|d| d["seq"].as_u64().unwrap())
                .collect();
            let accepted: BTreeSet<u64> = recorder
                .accepted()
                .iter()
                .map(|b| b["seq"].as_u64().unwrap())
                .collect();
            let all: BTreeSet<u64> = wanted.keys().copied().collect();
            (delivered == all && all.is_subset(&accepted)).then_some(wanted)
        },
    )
    .await
}

/// The bodies the recorder accepted for `seq`.
fn accepted_for(recorder: &Recorder, seq: u64) -> Vec<Value> {
    recorder
        .accepted()
        .into_iter()
        .filter(|b| b["seq"] == seq)
        .collect()
}

/// Each request the recorder received for `seq`: (status answered, attempt, idempotency key).
fn requests_for(recorder: &Recorder, seq: u64) -> Vec<(u16, u64, String)> {
    recorder
        .received()
        .into_iter()
        .filter(|r| r.body["seq"] == seq)
        .map(|r| {
            assert_eq!(
                r.header("idempotency-key"),
                r.body["idempotency_key"].as_str(),
                "the header and the body carry the same key: {r:?}"
            );
            (
                r.status,
                r.body["attempt"].as_u64().unwrap(),
                r.body["idempotency_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Each accepted body matches its outbox event, and per application the recorder accepted
/// them in outbox order (a retried event may repeat, never go back before a later one).
fn assert_matches_outbox(wanted: &BTreeMap<u64, Value>, accepted: &[Value]) {
    let mut last_by_app: BTreeMap<String, u64> = BTreeMap::new();
    for body in accepted {
        let seq = body["seq"].as_u64().unwrap();
        let event = wanted
            .get(&seq)
            .unwrap_or_else(|| panic!("the recorder got seq {seq}, not in the outbox: {body}"));
        assert_eq!(body["kind"], event["type"], "{body} vs {event}");
        assert_eq!(body["application"], event["application"], "{body}");
        assert_eq!(body["idempotency_key"], format!("echo:{seq}"), "{body}");
        let app = event["application"].as_str().unwrap().to_owned();
        if let Some(last) = last_by_app.insert(app.clone(), seq) {
            assert!(
                last <= seq,
                "{app}: seq {seq} arrived after seq {last}; accepted: {accepted:?}"
            );
        }
    }
}

/// `PUT /v1/applications/{id}/data` with the floor area changed to `luas`.
async fn edit_area(server: &Server, token: &str, id: &str, luas: u32) -> Value {
    let mut data = pbg_data();
    data["luas_lantai_total"] = json!(luas);
    let (status, app) = server
        .put_as(
            &format!("/v1/applications/{id}/data"),
            token,
            json!({"data": data}),
        )
        .await;
    assert_eq!(status, 200, "editing {id}: {app}");
    app
}

async fn new_pbg(server: &Server, office: &Office, name: &str) -> Value {
    let (status, app) = submit_pbg(server, &office.front_office, name).await;
    assert_eq!(status, 201, "{app}");
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_reaches_the_outside_system_once_in_order_per_application() {
    let recorder = Recorder::start();
    let setup = setup(&recorder, 6);
    let server = serve(&setup).await;
    let office = Office::create(&server).await;

    // Four applications, their events interleaved: submitted, two data edits, an advance.
    let mut apps = Vec::new();
    for i in 0..4 {
        apps.push(new_pbg(&server, &office, &format!("Pemohon {i}")).await);
    }
    for round in 0..2u32 {
        for app in &mut apps {
            *app = edit_area(&server, &office.front_office, &id_of(app), 181 + round).await;
        }
    }
    for app in &apps {
        let (status, v) = transition(&server, &office.front_office, app, "advance", None).await;
        assert_eq!(status, 200, "{v}");
    }

    let wanted = wait_all_delivered(&server, &recorder).await;
    assert_eq!(wanted.len(), 16, "4 applications × 4 events: {wanted:?}");
    let received = recorder.received();
    assert!(
        received.iter().all(|r| r.status == 200),
        "no failure was asked for: {received:?}"
    );
    // Once each: as many requests as events, one per idempotency key, each the first attempt.
    let accepted = recorder.accepted();
    assert_eq!(accepted.len(), wanted.len(), "{accepted:?}");
    let keys: BTreeSet<&str> = accepted
        .iter()
        .map(|b| b["idempotency_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), wanted.len(), "distinct keys: {keys:?}");
    assert!(accepted.iter().all(|b| b["attempt"] == 1), "{accepted:?}");
    assert_matches_outbox(&wanted, &accepted);
    for app in &apps {
        let id = id_of(app);
        let kinds: Vec<&str> = accepted
            .iter()
            .filter(|b| b["application"] == id.as_str())
            .map(|b| b["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "application.submitted",
                "application.data_changed",
                "application.data_changed",
                "application.advanced"
            ],
            "{id}"
        );
    }
    // The admin's view agrees: every delivery delivered at the first attempt.
    let all = deliveries(&server, None).await;
    assert_eq!(all.len(), wanted.len(), "{all:?}");
    assert!(
        all.iter()
            .all(|d| d["state"] == "delivered" && d["attempts"] == 1),
        "{all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_added_by_a_reload_gets_every_event_from_the_moment_it_serves() {
    let recorder = Recorder::start();
    let setup = Setup::new();
    // The dispatcher looks for new connectors only when something wakes it: here, the first
    // event after the reload.
    write_file(
        &setup.dir.path().join("pintu.toml"),
        "[connectors]\npoll_interval_ms = 60000\n",
    );
    let server = serve(&setup).await;
    let office = Office::create(&server).await;
    let before = new_pbg(&server, &office, "Pemohon Sebelum").await;

    let old = server.release().await;
    install_echo(&setup.plugins(), &recorder);
    server.wait_for_new_release(old.as_deref(), PATIENCE).await;
    // Once the release with echo serves, each change is for echo, the first one included.
    let first = id_of(&new_pbg(&server, &office, "Pemohon Pertama").await);
    let second = id_of(&new_pbg(&server, &office, "Pemohon Kedua").await);
    let mut expected = vec![first, second];
    expected.sort();
    wait_until(
        &server,
        "two events at the recorder",
        PATIENCE,
        async || (recorder.accepted().len() >= expected.len()).then_some(()),
    )
    .await;
    let mut sent: Vec<String> = recorder
        .accepted()
        .iter()
        .map(|b| b["application"].as_str().unwrap().to_owned())
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        expected,
        "not {} (before echo served)",
        id_of(&before)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_sent_again_with_the_same_idempotency_key() {
    let recorder = Recorder::start();
    let setup = setup(&recorder, 6);
    let server = serve(&setup).await;
    let office = Office::create(&server).await;

    // The outside system fails twice; meanwhile the application changes again.
    recorder.fail_next(2, Failure::Status(500));
    let app = new_pbg(&server, &office, "Pemohon Ulang").await;
    let id = id_of(&app);
    edit_area(&server, &office.front_office, &id, 200).await;

    let wanted = wait_all_delivered(&server, &recorder).await;
    let (submitted, edited) = {
        let mut seqs = wanted.keys().copied();
        (seqs.next().unwrap(), seqs.next().unwrap())
    };
    assert_eq!(wanted[&submitted]["type"], "application.submitted");
    assert_eq!(wanted[&edited]["type"], "application.data_changed");

    let key = format!("echo:{submitted}");
    assert_eq!(
        requests_for(&recorder, submitted),
        [
            (500, 1, key.clone()),
            (500, 2, key.clone()),
            (200, 3, key.clone())
        ],
        "the same event, attempt after attempt, under one key"
    );
    // The later event waited for the earlier one: it went once, after it.
    assert_eq!(
        requests_for(&recorder, edited),
        [(200, 1, format!("echo:{edited}"))]
    );
    assert_matches_outbox(&wanted, &recorder.accepted());

    let delivered = deliveries(&server, Some("delivered")).await;
    let first = delivered.iter().find(|d| d["seq"] == submitted).unwrap();
    assert_eq!(first["attempts"], 3, "{first}");
    assert_eq!(first["idempotency_key"], key.as_str(), "{first}");
    assert_eq!(first["application"], id.as_str(), "{first}");
    assert!(first["delivered_at"].is_string(), "{first}");
    assert!(
        first["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "the reason of the failed attempts stays visible: {first}"
    );
    let second = delivered.iter().find(|d| d["seq"] == edited).unwrap();
    assert_eq!(second["attempts"], 1, "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_does_not_block_later_events_and_an_admin_sends_it_again() {
    let recorder = Recorder::start();
    let setup = setup(&recorder, 2);
    let server = serve(&setup).await;
    let office = Office::create(&server).await;

    // The outside system is down: two attempts, then a dead letter.
    recorder.fail_always(Some(Failure::Status(503)));
    let app = new_pbg(&server, &office, "Pemohon Mati").await;
    let id = id_of(&app);
    let dead = wait_for_delivery(&server, "dead", "a dead letter for echo", |_| true).await;
    let seq = dead["seq"].as_u64().unwrap();
    assert_eq!(dead["event"], "application.submitted", "{dead}");
    assert_eq!(dead["application"], id.as_str(), "{dead}");
    assert_eq!(dead["attempts"], 2, "{dead}");
    let error = dead["last_error"].as_str().unwrap();
    assert!(
        error.contains("503") && error.contains("gave up after 2 attempts"),
        "{dead}"
    );
    assert_eq!(
        requests_for(&recorder, seq)
            .iter()
            .map(|(status, attempt, _)| (*status, *attempt))
            .collect::<Vec<_>>(),
        [(503, 1), (503, 2)]
    );

    // It recovers; the application's next event goes, past the dead letter.
    recorder.fail_always(None);
    edit_area(&server, &office.front_office, &id, 210).await;
    let edited =
        wait_for_delivery(&server, "delivered", "the later event delivered", |_| true).await;
    let edited_seq = edited["seq"].as_u64().unwrap();
    assert!(edited_seq > seq, "{edited}");
    assert_eq!(edited["event"], "application.data_changed", "{edited}");
    assert_eq!(accepted_for(&recorder, edited_seq).len(), 1);
    assert!(accepted_for(&recorder, seq).is_empty());

    // Retrying what is not dead is refused and changes nothing; an unknown id is 404.
    let edited_id = edited["id"].as_u64().unwrap();
    let (status, v) = server
        .admin_post(&format!("/admin/outbox/{edited_id}/retry"), json!({}))
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "conflict", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("delivered, not dead")),
        "{v}"
    );
    let (status, v) = server
        .admin_post("/admin/outbox/999999/retry", json!({}))
        .await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "not_found", "{v}");
    let still = deliveries(&server, Some("delivered")).await;
    assert_eq!(
        still,
        std::slice::from_ref(&edited),
        "the refused retry changed nothing"
    );
    assert_eq!(
        deliveries(&server, Some("dead")).await,
        std::slice::from_ref(&dead)
    );

    // The admin sends the dead letter again: pending, then delivered under the same key.
    let dead_id = dead["id"].as_u64().unwrap();
    let (status, revived) = server
        .admin_post(&format!("/admin/outbox/{dead_id}/retry"), json!({}))
        .await;
    assert_eq!(status, 200, "{revived}");
    assert_eq!(revived["id"], dead_id, "{revived}");
    let delivered = wait_for_delivery(&server, "delivered", "the retried letter delivered", |d| {
        d["id"] == dead_id
    })
    .await;
    assert_eq!(delivered["idempotency_key"], format!("echo:{seq}"));
    assert_eq!(
        delivered["attempts"], 1,
        "attempts start again: {delivered}"
    );
    assert!(deliveries(&server, Some("dead")).await.is_empty());
    let resent = accepted_for(&recorder, seq);
    assert_eq!(resent.len(), 1, "{resent:?}");
    assert_eq!(resent[0]["idempotency_key"], format!("echo:{seq}"));
    assert_eq!(resent[0]["kind"], "application.submitted");
    // Nothing else was sent again.
    assert_eq!(accepted_for(&recorder, edited_seq).len(), 1);
}

/// A client creating PBG applications until `stop` is set or the server stops answering; the
/// ids the server acknowledged (201) go to `acked`.
fn spawn_client(
    server: &Server,
    token: &str,
    tag: &'static str,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    let (http, url, token) = (
        server.http.clone(),
        server.url("/v1/applications"),
        token.to_owned(),
    );
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let body = json!({"permit": "pbg", "kind": "baru", "data": pbg_data(),
                              "applicant": applicant(&format!("Pemohon {tag} {n}"), Some("1872012505800001"))});
            n += 1;
            let Ok(answer) = http.post(&url).bearer_auth(&token).json(&body).send().await else {
                return; // the server is gone
            };
            let (status, app) = into_json(answer).await;
            if status == 201 {
                acked.lock().unwrap().push(id_of(&app));
            }
        }
    })
}

/// The ids of the applications acknowledged so far.
fn acked_now(acked: &Mutex<Vec<String>>) -> Vec<String> {
    acked.lock().unwrap().clone()
}

/// Every application in `ids` has its `application.submitted` in the outbox, and the recorder
/// accepted each outbox event at least once; duplicates only share an idempotency key.
fn assert_at_least_once(ids: &[String], wanted: &BTreeMap<u64, Value>, recorder: &Recorder) {
    let submitted: BTreeSet<&str> = wanted
        .values()
        .filter(|e| e["type"] == "application.submitted")
        .map(|e| e["application"].as_str().unwrap())
        .collect();
    for id in ids {
        assert!(
            submitted.contains(id.as_str()),
            "{id} was acknowledged but its event is not in the outbox"
        );
    }
    let accepted = recorder.accepted();
    assert_matches_outbox(wanted, &accepted);
    let by_seq: BTreeMap<u64, usize> = accepted.iter().fold(BTreeMap::new(), |mut m, b| {
        *m.entry(b["seq"].as_u64().unwrap()).or_default() += 1;
        m
    });
    for seq in wanted.keys() {
        assert!(
            by_seq.contains_key(seq),
            "seq {seq} never reached the recorder"
        );
    }
    let extra = accepted.len() - by_seq.len();
    println!(
        "{} acknowledged applications, {} events, {} accepted requests ({extra} repeated)",
        ids.len(),
        wanted.len(),
        accepted.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_stream_loses_and_skips_no_event() {
    let recorder = Recorder::start();
    let setup = setup(&recorder, 8);
    let server = serve(&setup).await;
    let office = Office::create(&server).await;

    // A slow outside system that also fails now and then: calls are in flight at the kill.
    recorder.answer_after(Duration::from_millis(40));
    recorder.fail_next(3, Failure::Status(500));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = ["A", "B"]
        .into_iter()
        .map(|tag| {
            spawn_client(
                &server,
                &office.front_office,
                tag,
                stop.clone(),
                acked.clone(),
            )
        })
        .collect();
    wait_until(&server, "events flowing", PATIENCE, async || {
        (acked_now(&acked).len() >= 20 && recorder.accepted().len() >= 5).then_some(())
    })
    .await;
    recorder.fail_next(2, Failure::Status(500));
    server.kill();
    for client in clients {
        client.await.unwrap();
    }
    let before_kill = acked_now(&acked);

    // The same folders again: what was acknowledged is there and reaches the recorder.
    let server = serve(&setup).await;
    let client = spawn_client(
        &server,
        &office.front_office,
        "C",
        stop.clone(),
        acked.clone(),
    );
    wait_until(
        &server,
        "more events after the restart",
        PATIENCE,
        async || (acked_now(&acked).len() >= before_kill.len() + 5).then_some(()),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    client.await.unwrap();

    let wanted = wait_all_delivered(&server, &recorder).await;
    assert_at_least_once(&acked_now(&acked), &wanted, &recorder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_connector_while_events_flow_loses_none_and_the_new_one_delivers() {
    let recorder = Recorder::start();
    let setup = setup(&recorder, 8);
    let server = serve(&setup).await;
    let office = Office::create(&server).await;
    let old_release = server.release().await.unwrap();

    recorder.answer_after(Duration::from_millis(20));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let client = spawn_client(
        &server,
        &office.front_office,
        "A",
        stop.clone(),
        acked.clone(),
    );
    wait_until(&server, "events flowing", PATIENCE, async || {
        (recorder.accepted().len() >= 5).then_some(())
    })
    .await;

    // A new component (and with it a new release) while the client keeps going.
    replace_echo_component(&setup.plugins(), "v2");
    let (new_release, _) = server
        .wait_for_new_release(Some(&old_release), PATIENCE)
        .await;
    // Once one delivery went through the new release, every later event goes through it too.
    let swapped = wait_for_delivery(&server, "delivered", "a delivery by the new release", |d| {
        d["release"] == new_release.as_str()
    })
    .await["seq"]
        .clone();
    let after_swap = wanted_events(&server).await.keys().max().copied().unwrap();
    wait_until(
        &server,
        "more events after the swap",
        PATIENCE,
        async || {
            let newest = wanted_events(&server).await.keys().max().copied().unwrap();
            (newest >= after_swap + 5).then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    client.await.unwrap();

    let wanted = wait_all_delivered(&server, &recorder).await;
    assert_at_least_once(&acked_now(&acked), &wanted, &recorder);
    let all = deliveries(&server, None).await;
    let releases: BTreeSet<&str> = all.iter().map(|d| d["release"].as_str().unwrap()).collect();
    assert!(
        releases.contains(old_release.as_str()),
        "some went through the old one"
    );
    for d in &all {
        if d["seq"].as_u64().unwrap() > after_swap {
            assert_eq!(d["release"], new_release.as_str(), "{d}");
        }
    }
    println!(
        "first delivery by the new release: seq {swapped}; {} deliveries in all",
        all.len()
    );
}
