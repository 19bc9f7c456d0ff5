//! The HTTP surface: evaluation, auth, and every bad-input case answered with the right 4xx.

use pintu_tests::{uji_server, Server};
use serde_json::json;

fn start() -> (tempfile::TempDir, Server) {
    uji_server("0.1")
}

#[tokio::test]
async fn evaluates_and_lists_permits() {
    let (_dir, s) = start();
    let (status, health) = s.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    let release = health["release"].as_str().unwrap().to_owned();

    let (status, list) = s.get("/v1/permits").await;
    assert_eq!(status, 200);
    assert_eq!(
        list["permits"],
        json!([{"id": "uji", "name": "Izin Uji", "has_levy": true}])
    );
    assert_eq!(list["release"], release.as_str());

    let (status, permit) = s.get("/v1/permits/uji").await;
    assert_eq!(status, 200);
    assert_eq!(permit["fields"][0]["name"], "x");
    assert_eq!(permit["fields"][0]["greater_than"], "0");

    let (status, v) = s
        .post("/v1/permits/uji/validate", json!({"data": {"x": 5}}))
        .await;
    assert_eq!((status, v["valid"].clone()), (200, json!(true)), "{v}");
    let (status, v) = s
        .post(
            "/v1/permits/uji/validate",
            json!({"data": {"x": 0, "y": 1}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["valid"], false);
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["y", "x"]);

    // 0.1 × 1250.5 is exact: a float would print 125.05000000000001.
    let (status, v) = s
        .post("/v1/permits/uji/levy", json!({"data": {"x": "1250.5"}}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["total"], "125.05");
    assert_eq!(v["currency"], "IDR");
    assert_eq!(
        v["items"],
        json!([{"code": "uji", "label": "Retribusi uji", "amount": "125.05"}])
    );
    assert_eq!(v["release"], release.as_str());
    // JSON numbers with many digits stay exact too.
    let body = r#"{"data": {"x": 0.30000000000000000000001}}"#;
    let r = s
        .http
        .post(s.url("/v1/permits/uji/levy"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, v) = pintu_tests::into_json(r).await;
    assert_eq!(
        (status, v["total"].as_str()),
        (200, Some("0.030000000000000000000001")),
        "{v}"
    );

    let (status, v) = s
        .post("/v1/permits/uji/levy", json!({"data": {"x": -1}}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["error"]["code"], "invalid_data");
    assert_eq!(v["error"]["errors"][0]["field"], "x");

    // Every evaluation is in the decision log with its release.
    let (status, d) = s.admin_get("/admin/decisions?permit=uji&limit=2").await;
    assert_eq!(status, 200);
    let decisions = d["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 2);
    assert_eq!(decisions[0]["kind"], "levy");
    assert_eq!(decisions[0]["output"]["valid"], false);
    assert_eq!(
        decisions[1]["output"]["total"],
        "0.030000000000000000000001"
    );
    assert_eq!(decisions[1]["release"], release.as_str());
    // The next page starts below the last sequence number seen.
    let last = decisions[1]["seq"].as_u64().unwrap();
    let (status, next) = s
        .admin_get(&format!(
            "/admin/decisions?permit=uji&limit=10&before={last}"
        ))
        .await;
    assert_eq!(status, 200);
    let next = next["decisions"].as_array().unwrap();
    assert!(!next.is_empty() && next.iter().all(|d| d["seq"].as_u64().unwrap() < last));

    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("pintu_evaluations_total{permit=\"uji\",kind=\"levy\",outcome=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("pintu_active_release{{release=\"{release}\"}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains("route=\"/v1/permits/{id}/levy\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_input_gets_the_right_4xx_and_changes_nothing() {
    let (_dir, s) = start();
    let levy = s.url("/v1/permits/uji/levy");
    let send = |body: &'static str, ct: Option<&'static str>| {
        let mut r = s.http.post(&levy).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r
    };
    let json_ct = Some("application/json");
    let cases: Vec<(u16, &str, reqwest::RequestBuilder)> = vec![
        (400, "malformed_request", send("{\"data\": ", json_ct)),
        (
            415,
            "unsupported_media_type",
            send("{\"data\": {\"x\": 1}}", Some("text/plain")),
        ),
        (
            415,
            "unsupported_media_type",
            send("{\"data\": {\"x\": 1}}", None),
        ),
        (422, "invalid_body", send("{\"dat\": {\"x\": 1}}", json_ct)),
        (422, "invalid_body", send("[1, 2]", json_ct)),
        (422, "invalid_data", send("{\"data\": [1]}", json_ct)),
        (
            422,
            "invalid_data",
            send("{\"data\": {\"x\": \"banyak\"}}", json_ct),
        ),
        (
            422,
            "invalid_data",
            send("{\"data\": {\"x\": 1e999999}}", json_ct),
        ),
    ];
    for (want, code, req) in cases {
        let (status, v) = pintu_tests::into_json(req.send().await.unwrap()).await;
        assert_eq!(status, want, "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    // Over the 1 MiB default.
    let big = format!(
        "{{\"data\": {{\"x\": \"{}\"}}}}",
        "1".repeat(2 * 1024 * 1024)
    );
    // The server answers before reading the rest and closes that connection; use a client of
    // its own so the closed connection is not reused by the requests below.
    let once = reqwest::Client::new();
    let r = once
        .post(&levy)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let (status, v) = pintu_tests::into_json(r).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (413, Some("body_too_large")),
        "{v}"
    );

    let (status, v) = s.post("/v1/permits/nope/levy", json!({"data": {}})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("unknown_permit"))
    );
    let (status, v) = s.get("/v1/permits/nope").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("unknown_permit"))
    );
    let (status, v) = s.get("/no/such/route").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let r = s.http.delete(s.url("/v1/permits")).send().await.unwrap();
    let (status, v) = pintu_tests::into_json(r).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );

    // Bad input made no decisions: only well-formed requests for known permits are recorded.
    let (_, d) = s.admin_get("/admin/decisions").await;
    assert_eq!(d["decisions"].as_array().unwrap().len(), 3, "{d}");
    assert_eq!(s.get("/health").await.0, 200);
}

#[tokio::test]
async fn admin_routes_need_an_admin_token() {
    let (_dir, s) = start();
    let r = s.http.get(s.url("/admin/releases")).send().await.unwrap();
    let (status, v) = pintu_tests::into_json(r).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (status, v) = s.get_as("/admin/releases", "pintu_wrong").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );

    let (status, v) = s
        .admin_post(
            "/admin/tokens",
            json!({"role": "front_office", "label": "loket 1"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let clerk = v["token"].as_str().unwrap().to_owned();
    let (status, v) = s.get_as("/admin/releases", &clerk).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _) = s.post_as("/admin/reload", &clerk, json!({})).await;
    assert_eq!(status, 403);

    let (status, v) = s.admin_post("/admin/tokens", json!({"role": "root"})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_body")),
        "{v}"
    );
    let (status, v) = s.admin_get("/admin/decisions?limit=0").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("malformed_request"))
    );
    let (status, v) = s.admin_get("/admin/decisions?limit=abc").await;
    assert_eq!(status, 400, "{v}");

    let (status, v) = s.admin_get("/admin/audit").await;
    assert_eq!(status, 200);
    let audit = v["audit"].as_array().unwrap();
    assert_eq!(
        audit.len(),
        1,
        "only the successful token creation is an admin action: {v}"
    );
    assert_eq!(audit[0]["action"], "create_token");
    assert_eq!(audit[0]["detail"]["role"], "front_office");

    let (status, v) = s.admin_get("/admin/releases").await;
    assert_eq!(status, 200);
    assert_eq!(v["releases"].as_array().unwrap().len(), 1);
    assert_eq!(v["active"], v["releases"][0]["id"]);
}

/// Walks `/admin/decisions` page by page (`before=` the last `seq`) until an empty page;
/// returns every record seen, in order, and fails on a page that breaks the order.
async fn walk_decisions(s: &Server, filter: &str, limit: usize) -> Vec<serde_json::Value> {
    let mut all: Vec<serde_json::Value> = Vec::new();
    let mut before = String::new();
    for page in 0.. {
        assert!(page < 1000, "paging never ended");
        let (status, v) = s
            .admin_get(&format!("/admin/decisions?limit={limit}{filter}{before}"))
            .await;
        assert_eq!(status, 200, "{v}");
        let records = v["decisions"].as_array().unwrap().clone();
        assert!(records.len() <= limit, "page {page} is over the limit: {v}");
        let Some(last) = records.last() else { break };
        before = format!("&before={}", last["seq"].as_u64().unwrap());
        all.extend(records);
    }
    all
}

#[tokio::test]
async fn paging_the_decision_log_returns_every_record_exactly_once() {
    let (_dir, s) = start();
    // 23 levies: pages of 5 end mid-way through the last page.
    let mut sent = Vec::new();
    for x in 1..=23 {
        let (status, v) = s
            .post("/v1/permits/uji/levy", json!({"data": {"x": x}}))
            .await;
        assert_eq!(status, 200, "{v}");
        sent.push(x.to_string());
    }
    // Newest first, so the log reads back in the reverse order of sending.
    sent.reverse();
    for filter in ["", "&permit=uji"] {
        for limit in [1, 5, 23, 1000] {
            let records = walk_decisions(&s, filter, limit).await;
            let seqs: Vec<u64> = records.iter().map(|d| d["seq"].as_u64().unwrap()).collect();
            assert!(
                seqs.windows(2).all(|w| w[0] > w[1]),
                "pages of {limit}{filter} repeat or reorder records: {seqs:?}"
            );
            let inputs: Vec<String> = records
                .iter()
                .map(|d| d["input"]["x"].to_string())
                .collect();
            assert_eq!(
                inputs, sent,
                "pages of {limit}{filter} lost, repeated or reordered records"
            );
        }
    }
}

#[tokio::test]
async fn the_openapi_document_is_public_json_and_lists_every_route() {
    let (_dir, s) = start();
    let r = s.http.get(s.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let doc: serde_json::Value = r.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let missing: Vec<String> = pintu::api::routes()
        .iter()
        // A catch-all `{*rest}` of the router is the path parameter `{rest}` in OpenAPI.
        .filter(|r| {
            doc["paths"][r.path.replace("{*", "{")][r.method.as_str().to_ascii_lowercase()]
                .is_null()
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(missing.is_empty(), "not in /openapi.json: {missing:?}");
    // Public: a token, even a wrong one, changes nothing.
    let r = s
        .http
        .get(s.url("/openapi.json"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
