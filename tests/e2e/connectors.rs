//! Connectors released with the rules, over the real server: inbound requests routed to a
//! connector and its actions applied (drafts created once per key), hostile connectors refused at
//! load while the old release keeps serving, failing calls contained (502) while the server keeps
//! answering, a component replaced under a stream of requests, an older release (and a restart
//! from the store) bringing its connectors back byte for byte, and the admin's list and dry runs.

use std::time::{Duration, Instant};

use pintu_tests::connectors::{copy_fixture, fixture_dir, replace_echo_component, set_config};
use pintu_tests::{into_json, uji_server_plugins, write_uji, Server};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(120);

/// `POST /v1/connectors/{name}/inbound/{path}` without a token, a JSON body and extra headers.
async fn inbound(
    server: &Server,
    name: &str,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = server
        .http
        .post(server.url(&format!("/v1/connectors/{name}/inbound/{path}")))
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("POST inbound");
    let headers = r.headers().clone();
    let (status, v) = into_json(r).await;
    (status, v, headers)
}

fn draft(key: &str) -> Value {
    json!({"key": key, "permit": "uji", "applicant": {"name": "Budi Santoso"}, "data": {}, "external": {"nib": "9120001234567", "id_izin": key}})
}

/// Every application, page by page.
async fn applications(server: &Server) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/applications?limit=1000&cursor={c}"),
            None => "/v1/applications?limit=1000".to_owned(),
        };
        let (status, v) = server.admin_get(&path).await;
        assert_eq!(status, 200, "{v}");
        all.extend(v["applications"].as_array().cloned().unwrap_or_default());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return all,
        }
    }
}

async fn connectors(server: &Server) -> Vec<Value> {
    let (status, v) = server.admin_get("/admin/connectors").await;
    assert_eq!(status, 200, "{v}");
    v["connectors"].as_array().cloned().unwrap_or_default()
}

fn manifest_sha(name: &str) -> String {
    let text = std::fs::read_to_string(fixture_dir(name).join("connector.toml")).unwrap();
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    doc["sha256"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_request_creates_its_draft_once_and_gets_the_connector_s_answer() {
    let (_dir, server) = uji_server_plugins("0.1", &["echo"]);
    let body = json!({"draft": draft("I-1"), "status": 201});
    let (status, answer, _) = inbound(
        &server,
        "echo",
        "receiveNIB?kd=02",
        &body,
        &[("Token", "abc123")],
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["connector"], "echo");
    assert_eq!(answer["path"], "receiveNIB");
    assert_eq!(answer["query"], "kd=02");
    assert_eq!(
        answer["headers"]["token"], "abc123",
        "headers reach the connector"
    );
    assert_eq!(answer["body"]["draft"]["key"], "I-1");

    let apps = applications(&server).await;
    assert_eq!(apps.len(), 1, "{apps:?}");
    let app = &apps[0];
    assert_eq!(app["status"], "draft");
    assert_eq!(app["permit"], "uji");
    assert_eq!(app["applicant"]["name"], "Budi Santoso");
    assert_eq!(app["external"]["echo"]["nib"], "9120001234567");
    assert_eq!(app["history"][0]["by"], "connector:echo");

    // The same request again (OSS resends): the same answer, no second application.
    let (status, _, _) = inbound(&server, "echo", "receiveNIB", &body, &[]).await;
    assert_eq!(status, 201);
    assert_eq!(applications(&server).await.len(), 1);

    // Later actions may name the draft by its key.
    let (status, answer, _) = inbound(
        &server,
        "echo",
        "status",
        &json!({"attach": {"application": {"key": "I-1"}, "value": {"kd_status": "10"}},
                "note": {"application": {"key": "I-1"}, "text": "status dari OSS"}}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (_, app) = server.admin_get("/v1/applications/APP-1").await;
    assert_eq!(app["external"]["echo"]["kd_status"], "10");
    assert_eq!(app["external"]["echo"]["nib"], "9120001234567");
    assert_eq!(app["history"][2]["note"], "status dari OSS");
    let (_, events) = server.admin_get("/admin/events").await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"application.external_changed"), "{kinds:?}");
    assert!(kinds.contains(&"application.note_added"), "{kinds:?}");

    // An invalid action: 502 naming it, and none of the call's actions applied, nor the
    // call's kv writes stored (a connector that notes "imported" must not find the note).
    let mut bad = draft("I-3");
    bad["permit"] = json!("imb");
    let (status, answer, _) = inbound(
        &server,
        "echo",
        "receiveNIB",
        &json!({"draft": [draft("I-2"), bad], "kv_set": {"imported": "I-2"}}),
        &[],
    )
    .await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["error"]["code"], "connector_action_invalid");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "connector `echo` 0.1.0: action 2 (create-draft `I-3`): no permit type `imb`"
        ),
        "{message}"
    );
    assert_eq!(applications(&server).await.len(), 1, "I-2 was not created");
    let (_, answer, _) = inbound(&server, "echo", "x", &json!({"kv_get": ["imported"]}), &[]).await;
    assert_eq!(answer["kv"]["imported"], Value::Null, "{answer}");
    // The same call with valid actions stores both.
    let (status, answer, _) = inbound(
        &server,
        "echo",
        "receiveNIB",
        &json!({"draft": [draft("I-2")], "kv_set": {"imported": "I-2"}}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (_, answer, _) = inbound(&server, "echo", "x", &json!({"kv_get": ["imported"]}), &[]).await;
    assert_eq!(answer["kv"]["imported"], "I-2", "{answer}");
    assert_eq!(applications(&server).await.len(), 2, "I-2 was created");

    // The connector's own error.
    let (status, answer, _) =
        inbound(&server, "echo", "x", &json!({"fail": "token salah"}), &[]).await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["error"]["code"], "connector_failed");
    assert_eq!(
        answer["error"]["message"],
        "connector `echo` 0.1.0: returned an error: token salah"
    );

    let (status, answer, _) = inbound(&server, "nope", "x", &json!({}), &[]).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "unknown_connector");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_fails_to_load_is_rejected_and_the_old_release_keeps_serving() {
    let (dir, server) = uji_server_plugins("0.1", &["echo"]);
    let plugins = dir.path().join("plugins");
    let good = server.release().await.unwrap();
    for (fixture, expected) in [("bad-sha", "babababa"), ("other-wit", "0.2.0")] {
        copy_fixture(&plugins, fixture);
        let (status, v) = server.admin_post("/admin/reload", json!({})).await;
        assert_eq!(status, 422, "{fixture}: {v}");
        assert_eq!(v["error"]["code"], "release_rejected");
        let (_, reloads) = server.admin_get("/admin/reloads?limit=1").await;
        let newest = &reloads["reloads"][0];
        assert_eq!(newest["accepted"], false, "{newest}");
        assert_eq!(newest["active"], good.as_str());
        let diagnostics = newest["diagnostics"].as_array().unwrap();
        let ours: Vec<&Value> = diagnostics
            .iter()
            .filter(|d| {
                d["file"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("plugins/{fixture}/"))
            })
            .collect();
        assert!(!ours.is_empty(), "{fixture}: {diagnostics:?}");
        let text = ours[0]["message"].as_str().unwrap();
        assert!(text.contains(expected), "{fixture}: {text}");
        println!(
            "{fixture}: {}:{}:{}: {text}",
            ours[0]["file"], ours[0]["line"], ours[0]["column"]
        );

        // Still the old release, and its connector still answers.
        let (_, health) = server.get("/health").await;
        assert_eq!(health["release"], good.as_str(), "{health}");
        assert_eq!(health["status"], "degraded");
        let (status, _, _) = inbound(&server, "echo", "ping", &json!({}), &[]).await;
        assert_eq!(status, 200);
        std::fs::remove_dir_all(plugins.join(fixture)).unwrap();
    }
    let (status, v) = server.admin_post("/admin/reload", json!({})).await;
    assert_eq!(status, 200, "{v}");
    let (_, health) = server.get("/health").await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["release"], good.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_calls_answer_502_naming_the_cause_and_the_server_keeps_serving() {
    let hostile = ["loop", "trap", "memory", "huge-output", "forbidden-host"];
    let mut all = vec!["echo"];
    all.extend(hostile);
    let (_dir, server) = uji_server_plugins("0.1", &all);
    let (_, list) = server.admin_get("/admin/connectors").await;
    assert_eq!(list["connectors"].as_array().unwrap().len(), 6, "{list}");
    for (name, cause) in [
        ("loop", "connector `loop` 0.1.0: timed out after 200 ms"),
        ("trap", "connector `trap` 0.1.0: trapped"),
        ("memory", "connector `memory` 0.1.0: ran out of memory"),
        (
            "huge-output",
            "connector `huge-output` 0.1.0: output too large",
        ),
        (
            "forbidden-host",
            "connector `forbidden-host` 0.1.0: tried to reach https://forbidden.example:443",
        ),
    ] {
        let started = Instant::now();
        let (status, answer, _) = inbound(&server, name, "x", &json!({}), &[]).await;
        println!("{name}: {status} after {:?}", started.elapsed());
        assert_eq!(status, 502, "{name}: {answer}");
        assert_eq!(answer["error"]["code"], "connector_failed", "{name}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(cause), "{name}: {message}");
        assert!(!message.contains("reached"), "{name}: {message}");
        let (status, health) = server.get("/health").await;
        assert_eq!(
            (status, health["status"].as_str()),
            (200, Some("ok")),
            "{name}"
        );
        let (status, _, _) = inbound(&server, "echo", "ping", &json!({}), &[]).await;
        assert_eq!(status, 200, "{name}: echo after it");
    }
    for c in connectors(&server).await {
        let name = c["name"].as_str().unwrap();
        if hostile.contains(&name) {
            assert!(c["failures"].as_u64().unwrap() >= 1, "{c}");
            assert!(c["last_error"].as_str().unwrap().contains(name), "{c}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_echo_component_while_requests_flow_fails_none_of_them() {
    let (dir, server) = uji_server_plugins("0.1", &["echo"]);
    let plugins = dir.path().join("plugins");
    let server = std::sync::Arc::new(server);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (server, stop) = (server.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut sent = 0usize;
            let mut failed = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || sent == 0 {
                let key = format!("C{c}-{sent}");
                let (status, answer, _) =
                    inbound(&server, "echo", "flow", &json!({"draft": draft(&key)}), &[]).await;
                if status != 200 {
                    failed.push(format!("{key}: {status} {answer}"));
                }
                sent += 1;
            }
            (sent, failed)
        }));
    }
    let mut release = server.release().await.unwrap();
    let mut shas = Vec::new();
    for round in 0..3 {
        shas.push(replace_echo_component(&plugins, &format!("round {round}")));
        // The watcher builds it; wait until the new release (this component) serves.
        let started = Instant::now();
        loop {
            let list = connectors(&server).await;
            if list.first().and_then(|c| c["sha256"].as_str()) == shas.last().map(String::as_str) {
                break;
            }
            assert!(
                started.elapsed() < WAIT,
                "round {round}: not reloaded; log:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let now = server.release().await.unwrap();
        assert_ne!(now, release, "round {round}");
        release = now;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        let (sent, failed) = c.await.unwrap();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        total += sent;
    }
    // Every request's draft was created, whichever component answered it.
    assert_eq!(applications(&server).await.len(), total);
    println!("{total} inbound requests across 3 component replacements, none failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_release_and_a_restart_from_the_store_bring_back_their_connector() {
    let dir = tempfile::tempdir().unwrap();
    let (rules, plugins, data) = (
        dir.path().join("rules"),
        dir.path().join("plugins"),
        dir.path().join("data"),
    );
    write_uji(&rules, "0.1");
    copy_fixture(&plugins, "echo");
    let server = Server::start_with_plugins(&rules, &plugins, &data, &[]);
    let first = server.release().await.unwrap();
    let original = manifest_sha("echo");
    assert_eq!(
        greeting(&server).await,
        ("halo".to_owned(), original.clone())
    );

    // A new component and a new greeting: a new release.
    let new_sha = replace_echo_component(&plugins, "v2");
    set_config(&plugins, "echo", "greeting", "\"selamat pagi\"");
    let (status, v) = server.admin_post("/admin/reload", json!({})).await;
    assert_eq!(status, 200, "{v}");
    let second = server.release().await.unwrap();
    assert_ne!(second, first);
    assert_eq!(
        greeting(&server).await,
        ("selamat pagi".to_owned(), new_sha.clone())
    );

    // Back to the first release: its connector, byte for byte, from the store.
    let (status, v) = server
        .admin_post(&format!("/admin/releases/{first}/activate"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        greeting(&server).await,
        ("halo".to_owned(), original.clone())
    );

    // A restart with the plugins folder broken (component gone): the last good release is
    // served from the store, connectors included.
    server.terminate();
    std::fs::remove_file(plugins.join("echo").join("echo.wasm")).unwrap();
    let server = Server::start_with_plugins(&rules, &plugins, &data, &[]);
    let (_, health) = server.get("/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["release"], first.as_str(), "{health}");
    assert!(
        health["reason"]
            .as_str()
            .unwrap()
            .contains("plugins/echo/connector.toml"),
        "{health}"
    );
    assert_eq!(greeting(&server).await, ("halo".to_owned(), original));
}

/// What echo answers as its `[config] greeting`, and the sha256 of the component serving.
async fn greeting(server: &Server) -> (String, String) {
    let (status, answer, _) = inbound(server, "echo", "hi", &json!({}), &[]).await;
    assert_eq!(status, 200, "{answer}");
    let sha = connectors(server).await[0]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    (
        answer["config"]["greeting"].as_str().unwrap().to_owned(),
        sha,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_lists_connectors_and_dry_runs_change_nothing() {
    let (_dir, server) = uji_server_plugins("0.1", &["echo"]);
    let list = connectors(&server).await;
    assert_eq!(list.len(), 1);
    let echo = &list[0];
    for (key, expected) in [
        ("name", json!("echo")),
        ("version", json!("0.1.0")),
        ("wit", json!("0.1.0")),
        ("sha256", json!(manifest_sha("echo"))),
        ("status", json!("active")),
        ("sync_every", Value::Null),
        ("allow_hosts", json!(["http://127.0.0.1:9"])),
        ("limits", json!({"memory_mib": 32, "timeout_ms": 5000})),
    ] {
        assert_eq!(echo[key], expected, "{key}: {echo}");
    }
    assert!(echo["events"]
        .as_array()
        .unwrap()
        .contains(&json!("permit.issued")));
    for key in [
        "calls",
        "failures",
        "last_error",
        "latency_p50_us",
        "latency_p99_us",
    ] {
        assert!(echo.get(key).is_some(), "{key}: {echo}");
    }
    // Neither `[config]` values nor secrets.
    let text = echo.to_string();
    assert!(
        !text.contains("halo") && !text.contains("PINTU_ECHO_TOKEN"),
        "{text}"
    );

    // A dry run of an inbound request: the reply and what would be applied, nothing applied,
    // kv writes dropped.
    let (status, v) = server
        .admin_post(
            "/admin/connectors/echo/invoke",
            json!({"inbound": {"path": "receiveNIB", "headers": [{"name": "Token", "value": "t"}],
                   "body": {"draft": draft("I-1"), "kv_set": {"seen": true}}}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["response"]["status"], 200, "{v}");
    let echoed: Value = serde_json::from_str(v["response"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["headers"]["token"], "t");
    assert_eq!(v["actions"][0]["type"], "create_draft");
    assert_eq!(
        v["would_apply"],
        json!([{"action": "create_draft", "key": "I-1", "application": null, "created": true}])
    );
    assert!(applications(&server).await.is_empty());
    let (_, answer, _) = inbound(&server, "echo", "x", &json!({"kv_get": ["seen"]}), &[]).await;
    assert_eq!(
        answer["kv"]["seen"],
        Value::Null,
        "a dry run's kv write was dropped"
    );

    // A dry run of an event for an application that exists.
    let (status, _, _) = inbound(&server, "echo", "x", &json!({"draft": draft("I-1")}), &[]).await;
    assert_eq!(status, 200);
    let (status, v) = server
        .admin_post(
            "/admin/connectors/echo/invoke",
            json!({"event": {"type": "application.submitted", "application": "APP-1"}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outcome"], json!({"outcome": "ok"}));
    assert_eq!(v["held_requests"], json!([]), "echo sends nothing: {v}");
    let (_, answer, _) = inbound(&server, "echo", "events", &json!({}), &[]).await;
    assert_eq!(
        answer["events"],
        json!([]),
        "the event was not stored: {answer}"
    );

    for (body, status, code) in [
        (json!({}), 422, "invalid_body"),
        (
            json!({"inbound": {"path": "x"}, "event": {"type": "t", "application": "APP-1"}}),
            422,
            "invalid_body",
        ),
        (
            json!({"event": {"type": "t", "application": "APP-99"}}),
            404,
            "not_found",
        ),
    ] {
        let (got, v) = server
            .admin_post("/admin/connectors/echo/invoke", body)
            .await;
        assert_eq!(
            (got, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{v}"
        );
    }
    let (got, v) = server
        .admin_post(
            "/admin/connectors/nope/invoke",
            json!({"inbound": {"path": "x"}}),
        )
        .await;
    assert_eq!(
        (got, v["error"]["code"].as_str()),
        (404, Some("unknown_connector")),
        "{v}"
    );
}
