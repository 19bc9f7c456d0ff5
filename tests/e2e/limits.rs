//! What a client sees at the evaluation cap, and configuration values that cannot work.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pintu_tests::{pintu_bin, wait_bounded, write_tree, Server};
use serde_json::json;

const PERMIT: &str = r#"name = "Izin Lambat"
[[fields]]
name = "mode"
type = "enum"
values = ["cepat", "lambat"]
required = true
"#;

// `lambat` runs until the wall-clock limit stops it: it holds its evaluation slot for the whole
// `script_timeout_ms`, which is what lets the test see the cap reached without timing anything.
const LEVY: &str = r#"fn levy(data, params) {
    if data.mode == "lambat" {
        let i = 0;
        loop { i += 1; }
    }
    #{ items: [#{ code: "biaya", label: "Biaya", amount: 1000 }] }
}
"#;

/// The value of `pintu_evaluations_in_flight` in `/metrics`.
async fn in_flight(s: &Server) -> Option<u64> {
    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix("pintu_evaluations_in_flight "))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `/metrics` until `pintu_evaluations_in_flight` is `want` (bounded).
async fn wait_in_flight(s: &Server, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if in_flight(s).await == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pintu_evaluations_in_flight never became {want}; log:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn at_the_evaluation_cap_a_client_gets_503_overloaded_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_tree(
        &rules,
        &[
            ("lambat/permit.toml", PERMIT),
            ("lambat/levy.rhai", LEVY),
            (
                "lambat/tests/cepat.json",
                r#"{"data": {"mode": "cepat"}, "expect": {"total": "1000"}}"#,
            ),
        ],
    );
    let config = dir.path().join("pintu.toml");
    // One slot; only the clock stops the slow levy, late enough that a loaded machine still
    // sends the second request while it runs; the queue wait is short.
    std::fs::write(
        &config,
        "[limits]\nmax_concurrent_evaluations = 1\nmax_operations = 0\n\
         script_timeout_ms = 10000\nevaluation_queue_timeout_ms = 200\n",
    )
    .unwrap();
    let s = Server::start(
        &rules,
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    assert_eq!(
        in_flight(&s).await,
        Some(0),
        "nothing runs before a request"
    );

    let slow = {
        let http = s.http.clone();
        let url = s.url("/v1/permits/lambat/levy");
        tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&json!({"data": {"mode": "lambat"}}))
                .send()
                .await
                .expect("slow POST");
            pintu_tests::into_json(r).await
        })
    };
    // The slow evaluation holds the only slot.
    wait_in_flight(&s, 1).await;

    let started = Instant::now();
    let r = s
        .http
        .post(s.url("/v1/permits/lambat/levy"))
        .json(&json!({"data": {"mode": "cepat"}}))
        .send()
        .await
        .expect("POST at the cap");
    println!(
        "refused at the cap after {} ms",
        started.elapsed().as_millis()
    );
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, v) = pintu_tests::into_json(r).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "overloaded", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("1 evaluation slots"), "{message}");
    // A slot frees up at the latest when the running script reaches its 10 s limit.
    assert_eq!(retry_after.as_deref(), Some("10"), "{v}");
    assert!(
        !slow.is_finished(),
        "the slow evaluation still held the slot when the second was refused"
    );

    // Once the slow evaluation ends, the slot serves again.
    let (status, v) = slow.await.unwrap();
    assert_eq!(status, 500, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wall-clock"),
        "{v}"
    );
    wait_in_flight(&s, 0).await;
    let (status, v) = s
        .post(
            "/v1/permits/lambat/levy",
            json!({"data": {"mode": "cepat"}}),
        )
        .await;
    assert_eq!((status, v["total"].as_str()), (200, Some("1000")), "{v}");
    // Refused requests were not evaluated, so not recorded.
    let (_, d) = s.admin_get("/admin/decisions?permit=lambat").await;
    assert_eq!(d["decisions"].as_array().unwrap().len(), 2, "{d}");
}

#[test]
fn serve_refuses_a_limit_that_cannot_work_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for (table, key) in [
        ("limits", "script_timeout_ms"),
        ("limits", "max_concurrent_evaluations"),
        ("limits", "max_commit_batch"),
        ("retention", "prune_batch"),
        ("http", "max_connections"),
    ] {
        let config = dir.path().join(format!("{key}.toml"));
        std::fs::write(&config, format!("[{table}]\n{key} = 0\n")).unwrap();
        // Were the value accepted, `serve` would keep running and the bounded wait would fail.
        let mut child = Command::new(pintu_bin())
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--rules")
            .arg(&rules)
            .arg("--data")
            .arg(dir.path().join("data"))
            .args(["--bind", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_bounded(&mut child, Duration::from_secs(60));
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let code = status
            .unwrap_or_else(|| panic!("{key} = 0: serve kept running; log:\n{stderr}"))
            .code();
        assert_ne!(code, Some(0), "{key}: {stderr}");
        assert!(
            stderr.contains(&format!("[{table}] {key}")),
            "{key}: {stderr}"
        );
    }
}

/// The server turns transparent huge pages off for itself (a fresh huge page is 2 MiB zeroed at
/// one fault, which made the first save after start-up at a big office half again as slow);
/// the kernel shows the setting in the process's status.
#[tokio::test]
async fn the_server_keeps_its_memory_in_ordinary_pages() {
    let (_dir, s) = pintu_tests::uji_server("0.1");
    assert!(s.release().await.is_some(), "{}", s.log());
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let thp = status.lines().find(|l| l.starts_with("THP_enabled:"));
    assert_eq!(
        thp.map(|l| l.split_whitespace().last()),
        Some(Some("0")),
        "{status}"
    );
}
