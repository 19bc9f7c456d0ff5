//! The connector host against the committed fixture components (`plugins/fixtures/*`): echo's
//! happy paths through every host import, and each hostile fixture contained with its own
//! error while the next echo call on the same host still works.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Instant;

use pintu::connectors::{
    Action, AppRef, CallEnv, CallFailure, Connector, ConnectorHost, Event, EventOutcome,
    HeldRequest, InboundRequest, KvSpace, LevyAssessor, MemoryKv, Secrets,
};
use pintu::diagnostic::Diagnostic;
use serde_json::{json, Value};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/fixtures")
}

/// The manifest and component of fixture `name`, as the release hands them to the host.
fn fixture(name: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = fixtures_dir().join(name);
    let manifest = std::fs::read(dir.join("connector.toml")).unwrap();
    let parsed: toml::Table = toml::from_str(std::str::from_utf8(&manifest).unwrap()).unwrap();
    let component = parsed["component"].as_str().unwrap().to_owned();
    let bytes = std::fs::read(dir.join(&component)).unwrap();
    BTreeMap::from([("connector.toml".to_owned(), manifest), (component, bytes)])
}

/// `files` with its manifest rewritten by `edit`.
fn edited(
    mut files: BTreeMap<String, Vec<u8>>,
    edit: impl FnOnce(&mut toml_edit::DocumentMut),
) -> BTreeMap<String, Vec<u8>> {
    let text = String::from_utf8(files["connector.toml"].clone()).unwrap();
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    edit(&mut doc);
    files.insert("connector.toml".into(), doc.to_string().into_bytes());
    files
}

/// One host for the whole file, as in the server: hostile calls share it with good ones.
fn host() -> &'static Arc<ConnectorHost> {
    static HOST: OnceLock<Arc<ConnectorHost>> = OnceLock::new();
    HOST.get_or_init(|| ConnectorHost::new(None).unwrap())
}

fn load(name: &str) -> Connector {
    host().load(name, &fixture(name), None).unwrap()
}

fn load_err(name: &str, files: &BTreeMap<String, Vec<u8>>) -> Vec<Diagnostic> {
    match host().load(name, files, None) {
        Ok(c) => panic!("{name} loaded: {c:?}"),
        Err(d) => d,
    }
}

fn post(path: &str, body: Value) -> InboundRequest {
    InboundRequest {
        method: "POST".into(),
        path: path.into(),
        query: String::new(),
        headers: vec![pintu::connectors::Header {
            name: "Content-Type".into(),
            value: "application/json".into(),
        }],
        body: serde_json::to_vec(&body).unwrap(),
    }
}

fn event(seq: u64, kind: &str) -> Event {
    Event {
        seq,
        kind: kind.into(),
        application: "APP-1".into(),
        at: "2026-11-30T05:00:00Z".into(),
        data: "{}".into(),
        snapshot: r#"{"id":"APP-1"}"#.into(),
        idempotency_key: format!("echo:{seq}"),
        attempt: 1,
    }
}

/// Echo's answer to `body` at `path`, as JSON.
fn echo_call(c: &Connector, env: &CallEnv, path: &str, body: Value) -> Value {
    let reply = c.handle_inbound(env, post(path, body)).unwrap();
    assert_eq!(reply.response.status, 200);
    serde_json::from_slice(&reply.response.body).unwrap()
}

/// After a hostile call, the same host still serves echo.
fn echo_still_works() {
    let answer = echo_call(&load("echo"), &CallEnv::detached(), "ping", json!({"x": 1}));
    assert_eq!(answer["path"], "ping");
    assert_eq!(answer["body"]["x"], 1);
}

#[test]
fn echo_answers_inbound_requests_with_actions() {
    let c = load("echo");
    assert_eq!((c.name(), c.version(), c.wit()), ("echo", "0.1.0", "0.1.0"));
    let reply = c
        .handle_inbound(
            &CallEnv::detached(),
            post(
                "receiveNIB",
                json!({"draft": {"key": "I-1", "permit": "pbg", "applicant": {"name": "Budi"},
                        "data": {"luas": "120"}, "external": {"nib": "123"}},
                       "note": {"application": {"key": "I-1"}, "text": "from OSS"}}),
            ),
        )
        .unwrap();
    assert_eq!(reply.response.status, 200);
    let answer: Value = serde_json::from_slice(&reply.response.body).unwrap();
    assert_eq!(answer["path"], "receiveNIB");
    assert_eq!(answer["method"], "POST");
    assert_eq!(answer["headers"]["content-type"], "application/json");
    assert_eq!(answer["config"]["greeting"], "halo");
    assert_eq!(reply.actions.len(), 2);
    let Action::CreateDraft(d) = &reply.actions[0] else {
        panic!("{:?}", reply.actions)
    };
    assert_eq!((d.key.as_str(), d.permit.as_str()), ("I-1", "pbg"));
    assert_eq!(
        serde_json::from_str::<Value>(&d.external).unwrap(),
        json!({"nib": "123"})
    );
    assert_eq!(
        reply.actions[1],
        Action::Note(pintu::connectors::AppNote {
            application: AppRef::Key("I-1".into()),
            text: "from OSS".into()
        })
    );
    let stats = c.stats();
    assert!(
        stats.calls >= 1 && stats.latency_p50_us.is_some(),
        "{stats:?}"
    );
}

#[test]
fn a_guest_error_fails_the_call_naming_connector_and_version() {
    let c = load("echo");
    let e = c
        .handle_inbound(&CallEnv::detached(), post("x", json!({"fail": "no NIB"})))
        .unwrap_err();
    assert_eq!(e.cause, CallFailure::Guest("no NIB".into()));
    assert_eq!(
        e.to_string(),
        "connector `echo` 0.1.0: returned an error: no NIB"
    );
    assert!(c.stats().failures >= 1);
}

#[test]
fn echo_events_persist_in_kv_across_calls() {
    let c = load("echo");
    let env = CallEnv::detached();
    for seq in [7, 8] {
        let reply = c.handle_event(&env, event(seq, "permit.issued")).unwrap();
        assert_eq!(reply.outcome, EventOutcome::Ok);
    }
    let answer = echo_call(&c, &env, "events", json!({}));
    let events = answer["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{answer}");
    assert_eq!(events[1]["seq"], 8);
    assert_eq!(events[1]["idempotency_key"], "echo:8");
}

#[test]
fn kv_is_durable_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let c = load("echo");
    {
        let store = pintu::store::Store::open(dir.path(), 16).unwrap();
        let env = CallEnv {
            kv: Arc::new(store.clone()),
            ..CallEnv::detached()
        };
        echo_call(&c, &env, "x", json!({"kv_set": {"cursor": 41}}));
        store.close();
    }
    let store = pintu::store::Store::open(dir.path(), 16).unwrap();
    assert_eq!(
        KvSpace::get(&store, "echo", "cursor").unwrap(),
        Some(b"41".to_vec())
    );
    let env = CallEnv {
        kv: Arc::new(store),
        ..CallEnv::detached()
    };
    let answer = echo_call(&c, &env, "x", json!({"kv_get": ["cursor", "none"]}));
    assert_eq!(answer["kv"], json!({"cursor": 41, "none": null}));
}

#[test]
fn a_dry_run_drops_kv_writes() {
    let c = load("echo");
    let kv = Arc::new(MemoryKv::default());
    let dry = CallEnv {
        kv: kv.clone(),
        dry_run: true,
        ..CallEnv::detached()
    };
    // Within the dry run the write is visible ...
    let answer = echo_call(&c, &dry, "x", json!({"kv_set": {"k": 1}, "kv_get": ["k"]}));
    assert_eq!(answer["kv"]["k"], 1);
    // ... and afterwards it never happened.
    assert_eq!(kv.get("echo", "k").unwrap(), None);
    let wet = CallEnv {
        kv: kv.clone(),
        ..CallEnv::detached()
    };
    assert_eq!(
        echo_call(&c, &wet, "x", json!({"kv_get": ["k"]}))["kv"]["k"],
        Value::Null
    );
}

#[test]
fn sync_returns_the_configured_actions_and_overrides_merge_over_config() {
    let overrides: toml::Table = toml::from_str(
        r#"greeting = "selamat pagi"
sync_actions = [{type = "note", application = {id = "APP-3"}, text = "synced"}]
"#,
    )
    .unwrap();
    let c = host()
        .load("echo", &fixture("echo"), Some(&overrides))
        .unwrap();
    let actions = c.sync(&CallEnv::detached()).unwrap();
    assert_eq!(
        actions,
        vec![Action::Note(pintu::connectors::AppNote {
            application: AppRef::Id("APP-3".into()),
            text: "synced".into()
        })]
    );
    let answer = echo_call(&c, &CallEnv::detached(), "x", json!({}));
    assert_eq!(answer["config"]["greeting"], "selamat pagi");
    // Without overrides, sync has nothing to do.
    assert_eq!(load("echo").sync(&CallEnv::detached()).unwrap(), vec![]);
}

#[test]
fn secrets_come_from_the_data_folder_or_the_named_environment_variable() {
    let files = edited(fixture("echo"), |doc| {
        doc["secrets"]["token"] = toml_edit::value("PINTU_TEST_ECHO_TOKEN_VAR");
    });
    let c = host().load("echo", &files, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("secrets.toml"),
        "[echo]\nusername = \"kota-metro\"\n[other]\ntoken = \"not-for-echo\"\n",
    )
    .unwrap();
    let secrets = Secrets::load(dir.path()).unwrap();
    std::env::set_var("PINTU_TEST_ECHO_TOKEN_VAR", "from-env");
    let env = CallEnv {
        secrets: Arc::new(secrets),
        ..CallEnv::detached()
    };
    let answer = echo_call(
        &c,
        &env,
        "x",
        json!({"secret": ["username", "token", "missing"]}),
    );
    assert_eq!(
        answer["secrets"],
        json!({"username": "kota-metro", "token": "from-env", "missing": null})
    );
    assert!(!format!("{env:?}").contains("kota-metro"));
}

struct FixedLevy;

impl LevyAssessor for FixedLevy {
    fn assess(&self, permit: &str, input_json: &str) -> Result<String, String> {
        let input: Value = serde_json::from_str(input_json).map_err(|e| e.to_string())?;
        Ok(json!({"permit": permit, "total": "1500000", "luas": input["luas"]}).to_string())
    }
}

#[test]
fn levy_and_clock_reach_the_guest() {
    let c = load("echo");
    let env = CallEnv {
        levy: Arc::new(FixedLevy),
        utc_offset_minutes: 420,
        ..CallEnv::detached()
    };
    let answer = echo_call(
        &c,
        &env,
        "x",
        json!({"levy": {"permit": "pbg", "input": {"luas": "120"}}}),
    );
    assert_eq!(
        answer["levy"],
        json!({"permit": "pbg", "total": "1500000", "luas": "120"})
    );
    let answer = echo_call(
        &c,
        &CallEnv::detached(),
        "x",
        json!({"levy": {"permit": "pbg", "input": {}}}),
    );
    assert!(answer["levy_error"].as_str().unwrap().contains("pbg"));
}

/// A tiny HTTP server answering every request with `status` and a JSON body; it sends what it
/// received (request line, headers, body) down the channel.
/// What the test server received: the request line, the headers (lowercase), the body.
type Received = (String, Vec<String>, Vec<u8>);

fn http_server(status: u16) -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut headers = Vec::new();
            let mut len = 0;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end().to_owned();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap();
                    }
                }
                headers.push(h.to_ascii_lowercase());
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let answer = br#"{"ok":true}"#;
            write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                answer.len()
            )
            .unwrap();
            stream.write_all(answer).unwrap();
            if tx
                .send((line.trim_end().to_owned(), headers, body))
                .is_err()
            {
                return;
            }
        }
    });
    (origin, rx)
}

fn allowing(origin: &str, config: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    let origin = origin.to_owned();
    let config: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    edited(fixture("echo"), move |doc| {
        let mut hosts = toml_edit::Array::new();
        hosts.push(origin.as_str());
        doc["allow"]["hosts"] = toml_edit::value(hosts);
        for (k, v) in config {
            doc["config"][k.as_str()] = toml_edit::value(v);
        }
    })
}

#[test]
fn http_send_reaches_an_allowed_server() {
    let (origin, received) = http_server(200);
    let c = host().load("echo", &allowing(&origin, &[]), None).unwrap();
    let answer = echo_call(
        &c,
        &CallEnv::detached(),
        "x",
        json!({"http": {"url": format!("{origin}/api/receiveLicense"), "body": {"nib": "1"}}}),
    );
    assert_eq!(answer["http"]["status"], 200, "{answer}");
    assert_eq!(answer["http"]["body"], json!({"ok": true}));
    let (line, _, body) = received.recv().unwrap();
    assert_eq!(line, "POST /api/receiveLicense HTTP/1.1");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"nib": "1"})
    );
}

#[test]
fn events_forwarded_to_a_failing_server_ask_to_retry_later() {
    let (ok_origin, ok_received) = http_server(200);
    let c = host()
        .load(
            "echo",
            &allowing(
                &ok_origin,
                &[("forward_to", &format!("{ok_origin}/events"))],
            ),
            None,
        )
        .unwrap();
    let reply = c
        .handle_event(&CallEnv::detached(), event(5, "permit.issued"))
        .unwrap();
    assert_eq!(reply.outcome, EventOutcome::Ok);
    let (_, headers, body) = ok_received.recv().unwrap();
    assert!(
        headers.contains(&"idempotency-key: echo:5".to_owned()),
        "{headers:?}"
    );
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["seq"], 5);

    let (bad_origin, _bad_received) = http_server(503);
    let c = host()
        .load(
            "echo",
            &allowing(
                &bad_origin,
                &[("forward_to", &format!("{bad_origin}/events"))],
            ),
            None,
        )
        .unwrap();
    let reply = c
        .handle_event(&CallEnv::detached(), event(6, "permit.issued"))
        .unwrap();
    let EventOutcome::RetryLater(why) = reply.outcome else {
        panic!("{reply:?}")
    };
    assert!(why.contains("503"), "{why}");
    assert!(c.stats().last_error.unwrap().contains("retry later"));
}

#[test]
fn a_dry_run_holds_outbound_requests_back_and_masks_the_secrets_in_them() {
    let (origin, received) = http_server(200);
    let c = host()
        .load(
            "echo",
            &allowing(&origin, &[("forward_to", &format!("{origin}/events"))]),
            None,
        )
        .unwrap();
    let mut secrets = Secrets::default();
    secrets.insert("echo", "token", "rahasia-sekali");
    let held = Arc::new(Mutex::new(Vec::<HeldRequest>::new()));
    let dry = CallEnv {
        secrets: Arc::new(secrets),
        dry_run: true,
        held: Some(held.clone()),
        ..CallEnv::detached()
    };
    let mut ev = event(7, "permit.issued");
    ev.data = r#"{"token":"rahasia-sekali"}"#.into();
    let reply = c.handle_event(&dry, ev).unwrap();
    // The connector was told the request could not go, and said to try again later.
    let EventOutcome::RetryLater(why) = reply.outcome else {
        panic!("{reply:?}")
    };
    assert!(why.contains("dry run"), "{why}");
    let held = held.lock().unwrap().clone();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].method, "POST");
    assert_eq!(held[0].url, format!("{origin}/events"));
    assert!(
        held[0].headers.iter().any(|h| h == "idempotency-key"),
        "{held:?}"
    );
    assert!(
        held[0].body.contains(r#""token":"[secret token]""#),
        "{}",
        held[0].body
    );
    assert!(!held[0].body.contains("rahasia-sekali"), "{}", held[0].body);

    // The server never saw it: the first request it receives is the next, real call's.
    let reply = c
        .handle_event(&CallEnv::detached(), event(8, "permit.issued"))
        .unwrap();
    assert_eq!(reply.outcome, EventOutcome::Ok);
    let (_, _, body) = received.recv().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["seq"], 8);
}

#[test]
fn an_infinite_loop_times_out() {
    let c = load("loop");
    let started = Instant::now();
    let e = c
        .handle_event(&CallEnv::detached(), event(1, "application.submitted"))
        .unwrap_err();
    println!("loop ended after {:?}", started.elapsed());
    assert_eq!(e.cause, CallFailure::Timeout { ms: 200 });
    assert_eq!(
        e.to_string(),
        "connector `loop` 0.1.0: timed out after 200 ms"
    );
    let e = c.sync(&CallEnv::detached()).unwrap_err();
    assert_eq!(e.kind(), "timeout");
    echo_still_works();
}

#[test]
fn unbounded_memory_growth_runs_out_of_memory() {
    let c = load("memory");
    let e = c
        .handle_inbound(&CallEnv::detached(), post("x", json!({})))
        .unwrap_err();
    assert_eq!(e.cause, CallFailure::OutOfMemory { mib: 16 }, "{e}");
    assert_eq!(
        e.to_string(),
        "connector `memory` 0.1.0: ran out of memory (limit 16 MiB)"
    );
    echo_still_works();
}

#[test]
fn a_trap_fails_the_call() {
    let c = load("trap");
    let e = c
        .handle_event(&CallEnv::detached(), event(1, "application.submitted"))
        .unwrap_err();
    assert_eq!(e.kind(), "trap", "{e}");
    assert!(
        e.to_string()
            .starts_with("connector `trap` 0.1.0: trapped: "),
        "{e}"
    );
    let e = c
        .handle_inbound(&CallEnv::detached(), post("x", json!({})))
        .unwrap_err();
    assert_eq!(e.kind(), "trap", "{e}");
    echo_still_works();
}

#[test]
fn a_host_outside_the_allowlist_is_refused_before_any_connection() {
    // The forbidden target is a real local server: had anything been sent, it would record it.
    let (origin, received) = http_server(200);
    let files = edited(fixture("forbidden-host"), |doc| {
        doc["config"]["target"] = toml_edit::value(format!("{origin}/steal"));
    });
    let c = host().load("forbidden-host", &files, None).unwrap();
    let e = c
        .handle_inbound(&CallEnv::detached(), post("x", json!({})))
        .unwrap_err();
    assert_eq!(e.cause, CallFailure::NotAllowed(origin.clone()), "{e}");
    assert_eq!(
        e.to_string(),
        format!("connector `forbidden-host` 0.1.0: tried to reach {origin}, which is not in its [allow] hosts")
    );
    // handle-event answers `failed` with the refusal: the call still fails as not allowed.
    let e = c
        .handle_event(&CallEnv::detached(), event(1, "application.submitted"))
        .unwrap_err();
    assert_eq!(e.kind(), "not_allowed");
    assert!(
        received.try_recv().is_err(),
        "a request reached the forbidden host"
    );
    echo_still_works();
}

#[test]
fn oversized_outputs_are_refused() {
    let c = load("huge-output");
    let env = CallEnv::detached();
    let e = c.handle_inbound(&env, post("x", json!({}))).unwrap_err();
    assert_eq!(e.kind(), "output_too_large", "{e}");
    assert!(
        e.to_string().contains("67108864 bytes, more than 4194304"),
        "{e}"
    );
    let e = c
        .handle_event(&env, event(1, "application.submitted"))
        .unwrap_err();
    assert!(
        e.to_string().contains("1001 actions, more than 1000"),
        "{e}"
    );
    let e = c.sync(&env).unwrap_err();
    assert!(e.to_string().contains("action 1 is"), "{e}");
    assert_eq!(c.stats().failures, 3);
    echo_still_works();
}

#[test]
fn a_component_of_another_wit_version_is_rejected_at_load() {
    let d = load_err("other-wit", &fixture("other-wit"));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].file, "plugins/other-wit/connector.toml");
    assert!(
        d[0].message
            .contains("wit version `0.2.0` is not supported; this Pintu supports `0.1.0`"),
        "{d:?}"
    );
    // A manifest claiming 0.1.0 does not get the component past the type check.
    let files = edited(fixture("other-wit"), |doc| {
        doc["wit"] = toml_edit::value("0.1.0");
    });
    let d = load_err("other-wit", &files);
    assert_eq!(d[0].file, "plugins/other-wit/other-wit.wasm");
    assert!(
        d[0].message
            .contains("built against WIT pintu:connector@0.2.0")
            && d[0].message.contains("this Pintu supports `0.1.0`"),
        "{d:?}"
    );
    echo_still_works();
}

#[test]
fn a_sha256_mismatch_is_rejected_naming_both_hashes() {
    let files = fixture("bad-sha");
    let actual = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&files["bad-sha.wasm"]))
    };
    let d = load_err("bad-sha", &files);
    assert_eq!(d.len(), 1);
    let text = d[0].to_string();
    assert!(
        text.starts_with("plugins/bad-sha/connector.toml:8:10: sha256 mismatch"),
        "{text}"
    );
    assert!(
        text.contains(&"ba".repeat(32)) && text.contains(&actual),
        "{text}"
    );
    echo_still_works();
}

#[test]
fn describe_must_agree_with_the_manifest() {
    let files = edited(fixture("echo"), |doc| {
        let mut events = toml_edit::Array::new();
        events.push("permit.issued");
        doc["events"] = toml_edit::value(events);
    });
    let d = load_err("echo", &files);
    assert!(d[0].message.contains("describe says events"), "{d:?}");
    // The folder name is the connector's name.
    let d = load_err("gema", &fixture("echo"));
    assert!(
        d[0].message.contains("must equal its folder name `gema`"),
        "{d:?}"
    );
    // A component that is not the one the manifest names.
    let mut files = fixture("echo");
    files.remove("echo.wasm");
    let d = load_err("echo", &files);
    assert_eq!(d[0].file, "plugins/echo/echo.wasm");
}

#[test]
fn compiled_code_is_cached_and_only_verified_files_are_used() {
    let data = tempfile::tempdir().unwrap();
    let cache = data.path().join("connector-cache");
    let files = fixture("echo");

    let first = ConnectorHost::new(Some(cache.clone())).unwrap();
    first.load("echo", &files, None).unwrap();
    assert_eq!((first.compiled_count(), first.cache_hit_count()), (1, 0));
    let key = std::fs::read(cache.join("key")).unwrap();
    assert_eq!(key.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cache.join("key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A second process over the same data folder takes it from the cache.
    let second = ConnectorHost::new(Some(cache.clone())).unwrap();
    let c = second.load("echo", &files, None).unwrap();
    assert_eq!((second.compiled_count(), second.cache_hit_count()), (0, 1));
    echo_call(&c, &CallEnv::detached(), "x", json!({}));

    // A tampered entry is ignored and the component compiled again.
    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "bin"))
        .unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let third = ConnectorHost::new(Some(cache.clone())).unwrap();
    let c = third.load("echo", &files, None).unwrap();
    assert_eq!((third.compiled_count(), third.cache_hit_count()), (1, 0));
    echo_call(&c, &CallEnv::detached(), "x", json!({}));

    // An entry written by another data folder (another key) is foreign: ignored too.
    let other = tempfile::tempdir().unwrap();
    let other_cache = other.path().join("connector-cache");
    ConnectorHost::new(Some(other_cache.clone()))
        .unwrap()
        .load("echo", &files, None)
        .unwrap();
    let name = entry.file_name().unwrap();
    std::fs::copy(other_cache.join(name), &entry).unwrap();
    let fourth = ConnectorHost::new(Some(cache.clone())).unwrap();
    fourth.load("echo", &files, None).unwrap();
    assert_eq!((fourth.compiled_count(), fourth.cache_hit_count()), (1, 0));
    // ... and rewritten, so the next start hits again.
    let fifth = ConnectorHost::new(Some(cache)).unwrap();
    fifth.load("echo", &files, None).unwrap();
    assert_eq!((fifth.compiled_count(), fifth.cache_hit_count()), (0, 1));
}

#[test]
fn the_host_reports_its_allocator() {
    // Either is fine; the server logs which one it got.
    println!("allocation: {:?}", host().allocation());
}

/// A server that answers every request 200 after `delay`, each connection on its own thread,
/// so that the calls waiting on it overlap.
fn slow_http_server(delay: std::time::Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 {
                        return;
                    }
                    let h = h.trim_end().to_ascii_lowercase();
                    if h.is_empty() {
                        break;
                    }
                    if let Some(v) = h.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                std::thread::sleep(delay);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                );
            });
        }
    });
    origin
}

#[test]
fn more_calls_at_once_than_instance_slots_all_succeed() {
    // Each call holds its instance while the server takes its time, so that more calls are in
    // flight than the host has instance slots: the extra ones wait for a slot (within their
    // deadline) instead of failing to instantiate.
    let origin = slow_http_server(std::time::Duration::from_millis(500));
    let c = host().load("echo", &allowing(&origin, &[]), None).unwrap();
    let started = Instant::now();
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let c = c.clone();
            let url = format!("{origin}/slow");
            std::thread::spawn(move || {
                let reply = c.handle_inbound(
                    &CallEnv::detached(),
                    post("p", json!({"i": i, "http": {"url": url}})),
                );
                let answer: Value = serde_json::from_slice(&reply.unwrap().response.body).unwrap();
                assert_eq!(answer["body"]["i"], i);
                assert_eq!(answer["http"]["status"], 200, "{answer}");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    println!("200 overlapping calls took {:?}", started.elapsed());
}

#[test]
fn http_get_and_redirects_stay_with_the_guest() {
    let (origin, received) = http_server(302);
    let c = host().load("echo", &allowing(&origin, &[]), None).unwrap();
    let answer = echo_call(
        &c,
        &CallEnv::detached(),
        "x",
        json!({"http": {"url": format!("{origin}/status?id=1"), "method": "GET"}}),
    );
    // The 3xx is the guest's to see: following it could leave the allowlist.
    assert_eq!(answer["http"]["status"], 302, "{answer}");
    let (line, _, _) = received.recv().unwrap();
    assert_eq!(line, "GET /status?id=1 HTTP/1.1");
}
