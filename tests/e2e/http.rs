//! The HTTP layer under attack: slow and stuck clients, connection floods, odd methods, deep
//! JSON, undecodable paths; and the language of the runtime's messages.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pintu_tests::{write_uji, Server};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a test waits for something that should happen in well under a second.
const PATIENCE: Duration = Duration::from_secs(60);

/// A temp folder with the `uji` rules and a `pintu.toml` holding `config`, and a server on it.
fn server_with(config: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let (rules, config) = prepare(dir.path(), config);
    let s = Server::start(
        &rules,
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    (dir, s)
}

fn prepare(dir: &Path, config: &str) -> (PathBuf, PathBuf) {
    let rules = dir.join("rules");
    write_uji(&rules, "0.1");
    let path = dir.join("pintu.toml");
    std::fs::write(&path, config).unwrap();
    (rules, path)
}

fn addr(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

/// Opens a connection and sends `bytes` on it.
async fn send_raw(s: &Server, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr(s)).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// Reads until the server closes the connection; `None` if it has not within `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response (head and a `Content-Length` body) from a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "connection closed mid-response: {text}");
        out.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let (_dir, s) = server_with("[http]\nheader_read_timeout_ms = 300\n");
    let started = Instant::now();
    let mut stuck = send_raw(&s, b"GET /health HTTP/1.1\r\nHost: pintu\r\n").await;
    let closed = read_until_closed(&mut stuck, PATIENCE).await;
    println!("half-sent headers closed after {:?}", started.elapsed());
    let answer = closed.expect("the server closes a connection whose headers never end");
    // Whatever hyper says on the way out, it is not a served request.
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "{answer:?}"
    );
    // Everyone else is still served.
    assert_eq!(s.get("/health").await.0, 200);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_body_gets_a_408() {
    let (_dir, s) = server_with("[http]\nbody_read_timeout_ms = 300\n");
    let mut slow = send_raw(
        &s,
        b"POST /v1/permits/uji/validate HTTP/1.1\r\nHost: pintu\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"data\": ",
    )
    .await;
    let response = read_response(&mut slow).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("\"code\":\"body_timeout\""), "{response}");
}

#[tokio::test]
async fn a_stopped_server_exits_within_the_grace_period_despite_stuck_clients() {
    // Long read timeouts: only the grace period can end the stuck requests.
    let (_dir, s) = server_with(
        "[http]\nheader_read_timeout_ms = 600000\nbody_read_timeout_ms = 600000\nshutdown_grace_ms = 500\n",
    );
    // One full request first, so the connection is surely accepted, then half of the next.
    let mut half_headers = send_raw(&s, b"GET /health HTTP/1.1\r\nHost: pintu\r\n\r\n").await;
    let first = read_response(&mut half_headers).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    half_headers
        .write_all(b"GET /health HTTP/1.1\r\nHost: pin")
        .await
        .unwrap();
    // A request in flight whose handler waits for a body that never comes.
    let half_body = send_raw(
        &s,
        b"POST /v1/permits/uji/validate HTTP/1.1\r\nHost: pintu\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"data\": ",
    )
    .await;
    // The body timeout is long, so this request stays in flight; it is surely in the handler
    // once a later request on another connection has been answered.
    assert_eq!(s.get("/health").await.0, 200);
    let started = Instant::now();
    // `terminate` gives the server 30 s, far beyond the 0.5 s grace.
    let code = s.terminate();
    println!("stopped with stuck clients in {:?}", started.elapsed());
    assert_eq!(code, Some(0), "the server must exit after its grace period");
    drop((half_headers, half_body));
}

#[tokio::test]
async fn a_connection_flood_does_not_starve_a_reload_of_file_descriptors() {
    // More stuck clients than the server has file descriptors, but fewer than the listen backlog
    // this kernel keeps (about 128 here): clients beyond the backlog would wait seconds each for
    // SYN retransmits, which measures the kernel, not the server.
    const FD_LIMIT: u32 = 64;
    const FLOOD: usize = 96;
    let dir = tempfile::tempdir().unwrap();
    // Stuck clients stay stuck for the whole test: only the connection bound protects the
    // server's file descriptors.
    let (rules, config) = prepare(
        dir.path(),
        "[http]\nmax_connections = 8\nheader_read_timeout_ms = 600000\n",
    );
    let s = Server::start_with_open_file_limit(
        &rules,
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
        FD_LIMIT,
    );
    let before = s.release().await.expect("a release at start");
    let started = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        flood.push(send_raw(&s, b"GET /health HTTP/1.1\r\nHost: pin").await);
    }
    println!("{FLOOD} stuck clients connected in {:?}", started.elapsed());
    // A rules change while the flood holds on: the watcher must be able to read the folder.
    write_uji(&s.rules, "0.2");
    let started = Instant::now();
    let outcome = loop {
        let log = s.log();
        if let Some(line) = log.lines().find(|l| {
            l.contains("reloaded: now serving")
                || l.contains("change rejected")
                || l.contains("reload failed")
        }) {
            break line.to_owned();
        }
        assert!(started.elapsed() < PATIENCE, "no reload; log:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("reload outcome after {:?}: {outcome}", started.elapsed());
    drop(flood);
    assert!(
        outcome.contains("reloaded: now serving"),
        "{outcome}\n{}",
        s.log()
    );
    let (release, waited) = s.wait_for_new_release(Some(&before), PATIENCE).await;
    println!("served the new release {waited:?} after the flood left");
    let (_, reloads) = s.admin_get("/admin/reloads").await;
    assert_eq!(reloads["reloads"][0]["accepted"], true, "{reloads}");
    assert_eq!(reloads["reloads"][0]["release"], release.as_str());
}

/// Parses OpenMetrics text: every line a comment or `name{labels} value`, ending in `# EOF`.
fn parse_openmetrics(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if lines.peek().is_none() {
            assert_eq!(line, "# EOF", "OpenMetrics ends with # EOF");
            break;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let kind = meta.split(' ').next().unwrap();
            assert!(["HELP", "TYPE", "UNIT"].contains(&kind), "{line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        assert!(
            series[..name_end]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        samples.push((series.to_owned(), value));
    }
    samples
}

#[tokio::test]
async fn metrics_stay_small_and_well_formed_after_made_up_methods() {
    let (_dir, s) = server_with("");
    for i in 0..300 {
        let method = format!("M{i:03}{}", "X".repeat(4000));
        let mut c = send_raw(
            &s,
            format!("{method} /health HTTP/1.1\r\nHost: pintu\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        read_until_closed(&mut c, PATIENCE).await.unwrap();
    }
    // /validate on invalid data counts as invalid, like /levy does.
    let (status, _) = s
        .post("/v1/permits/uji/validate", json!({"data": {"x": "0"}}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .post("/v1/permits/uji/levy", json!({"data": {"x": "0"}}))
        .await;
    assert_eq!(status, 422);

    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    println!("/metrics is {} bytes", text.len());
    assert!(
        text.len() < 64 * 1024,
        "/metrics grew to {} bytes",
        text.len()
    );
    let samples = parse_openmetrics(&text);
    let value = |series: &str| {
        samples
            .iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    let odd: f64 = samples
        .iter()
        .filter(|(s, _)| {
            s.starts_with("pintu_http_requests_total{") && s.contains("method=\"other\"")
        })
        .map(|(_, v)| v)
        .sum();
    assert_eq!(odd, 300.0, "{text}");
    assert!(!text.contains("M001"), "a made-up method became a label");
    for outcome in ["validate", "levy"] {
        assert_eq!(
            value(&format!(
                "pintu_evaluations_total{{permit=\"uji\",kind=\"{outcome}\",outcome=\"invalid\"}}"
            )),
            1.0
        );
    }
    // Counted things are counters, and the durable commits are among them.
    assert!(
        text.contains("# TYPE pintu_store_commits counter"),
        "{text}"
    );
    assert!(value("pintu_store_commits_total") >= 1.0);
}

#[tokio::test]
async fn json_nested_beyond_the_limit_gets_a_422_naming_it() {
    let (_dir, s) = server_with("");
    let nest = |levels: usize| {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!([v]);
        }
        v
    };
    // The envelope is one level and `data` another: 30 more is within 32.
    let (status, v) = s
        .post("/v1/permits/uji/validate", json!({"data": {"x": nest(30)}}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["errors"][0]["field"], "x", "{v}");
    // Past 32, and far past serde_json's own 128: the same clear answer.
    for levels in [31, 200] {
        let body = format!(
            "{{\"data\": {{\"x\": {}1{}}}}}",
            "[".repeat(levels),
            "]".repeat(levels)
        );
        let r = s
            .http
            .post(s.url("/v1/permits/uji/validate"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, v) = pintu_tests::into_json(r).await;
        assert_eq!(status, 422, "{levels}: {v}");
        assert_eq!(v["error"]["code"], "body_too_deep", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("32"),
            "{v}"
        );
    }
}

#[tokio::test]
async fn undecodable_paths_get_the_json_error_shape() {
    let (_dir, s) = server_with("");
    for (method, path) in [
        ("GET", "/v1/permits/%ff"),
        ("POST", "/v1/permits/%ff/validate"),
        ("POST", "/admin/releases/%ff/activate"),
    ] {
        let r = s
            .http
            .request(method.parse().unwrap(), s.url(path))
            .bearer_auth(&s.admin_token)
            .json(&json!({"data": {}}))
            .send()
            .await
            .unwrap();
        let (status, v) = pintu_tests::into_json(r).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(v["error"]["code"], "malformed_request", "{path}: {v}");
        assert!(v["error"]["message"].is_string(), "{path}: {v}");
    }
    let (status, v) = s.admin_get("/admin/reloads?limit=lots").await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "malformed_request", "{v}");
}

async fn messages(s: &Server) -> (Value, Value) {
    let (status, validate) = s
        .post("/v1/permits/uji/validate", json!({"data": {"y": 1}}))
        .await;
    assert_eq!(status, 200, "{validate}");
    let (status, levy) = s
        .post("/v1/permits/uji/levy", json!({"data": {"x": "0"}}))
        .await;
    assert_eq!(status, 422, "{levy}");
    (validate, levy)
}

#[tokio::test]
async fn citizens_read_the_runtime_in_indonesian_unless_configured_otherwise() {
    let (_dir, s) = server_with("");
    let (validate, levy) = messages(&s).await;
    assert_eq!(
        validate["errors"],
        json!([
            {"field": "y", "message": "isian tidak dikenal"},
            {"field": "x", "message": "wajib diisi"}
        ])
    );
    assert_eq!(levy["error"]["code"], "invalid_data");
    assert_eq!(levy["error"]["message"], "data tidak valid");
    assert_eq!(
        levy["error"]["errors"],
        json!([{"field": "x", "message": "harus lebih dari 0"}])
    );

    let (_dir, s) = server_with("language = \"en\"\n");
    let (validate, levy) = messages(&s).await;
    assert_eq!(
        validate["errors"],
        json!([
            {"field": "y", "message": "unknown field"},
            {"field": "x", "message": "is required"}
        ])
    );
    assert_eq!(levy["error"]["code"], "invalid_data");
    assert_eq!(levy["error"]["message"], "data is invalid");
    assert_eq!(
        levy["error"]["errors"],
        json!([{"field": "x", "message": "must be greater than 0"}])
    );
}
