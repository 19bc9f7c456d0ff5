//! The HTTP API through `api::router` without a socket: each request goes straight into the
//! router (`tower::ServiceExt::oneshot`), with the real `App`, rules and redb store behind it.
//! The real-socket suites (`tests/e2e`) cover the server, the binary and the connection limits.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: failing loudly is the point"
)]

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use pintu::app::App;
use pintu::auth::{self, Roles};
use pintu::config::Config;
use pintu::store::Store;
use serde_json::{json, Value};
use tower::ServiceExt;

const PERMIT: &str = "name = \"Izin Uji\"\n\n[[fields]]\nname = \"x\"\ntype = \"decimal\"\n\
                      required = true\ngreater_than = \"0\"\n\n[params]\nrate = \"0.1\"\n";
const LEVY: &str = "fn levy(data, params) {\n    let amount = data.x * decimal(params.rate);\n    \
                    #{ items: [#{ code: \"uji\", label: \"Retribusi uji\", amount: amount }] }\n}\n";
const FIXTURE: &str = r#"{"data": {"x": "1"}, "expect": {"valid": true}}"#;

/// A router over the `uji` rules with a fresh store, and the first admin's token.
struct Api {
    router: Router,
    admin: String,
    store: Store,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        for (path, text) in [
            ("uji/permit.toml", PERMIT),
            ("uji/levy.rhai", LEVY),
            ("uji/tests/positif.json", FIXTURE),
        ] {
            write(&rules.join(path), text);
        }
        Self::start_on(dir, rules).await
    }

    /// A router over `rules` (read, never written) with a fresh store in `dir`.
    async fn start_on(dir: tempfile::TempDir, rules: std::path::PathBuf) -> Self {
        let data = dir.path().join("data");
        let mut config = Config::resolve(None, Some(rules), Some(data.clone()), None).unwrap();
        config.watch = false;
        // Store writes wait for their commit: off the async workers, as the server does.
        let batch = config.limits.max_commit_batch;
        let (store, admin) = tokio::task::spawn_blocking(move || {
            let store = Store::open(&data, batch).unwrap();
            let token_file = auth::ensure_admin(&store, &data).unwrap().unwrap();
            let admin = std::fs::read_to_string(token_file).unwrap();
            (store, admin.trim().to_owned())
        })
        .await
        .unwrap();
        let app = Arc::new(App::new(config, store.clone()));
        app.start().await.unwrap();
        Self {
            router: pintu::api::router(app),
            admin,
            store,
            _dir: dir,
        }
    }

    /// Sends one request through the router; returns the status and the JSON body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_the_served_release() {
    let api = Api::start().await;
    let (status, v) = api.send(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ok");
    let release = v["release"].as_str().unwrap();
    assert_eq!(
        api.store.active_release().unwrap().as_deref(),
        Some(release)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_levy_is_exact_and_recorded() {
    let api = Api::start().await;
    let (status, v) = api
        .send(
            Method::POST,
            "/v1/permits/uji/levy",
            None,
            Some(json!({"data": {"x": "1250.5"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // 0.1 × 1250.5 in floating point would be 125.05000000000001.
    assert_eq!(v["total"], "125.05");
    assert_eq!(
        v["items"],
        json!([{"code": "uji", "label": "Retribusi uji", "amount": "125.05"}])
    );
    // The answer came after its decision record was durable.
    assert_eq!(api.store.decision_count().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_error_names_the_field_and_bad_input_is_a_4xx() {
    let api = Api::start().await;
    let (status, v) = api
        .send(
            Method::POST,
            "/v1/permits/uji/validate",
            None,
            Some(json!({"data": {"x": "0"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["field"], "x", "{v}");

    let (status, v) = api
        .send(
            Method::POST,
            "/v1/permits/uji/validate",
            None,
            Some(json!({"dat": {"x": "1"}})),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body")),
        "{v}"
    );
    let (status, v) = api
        .send(
            Method::POST,
            "/v1/permits/tidak_ada/levy",
            None,
            Some(json!({"data": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_refuse_missing_unknown_and_unprivileged_tokens() {
    let api = Api::start().await;
    let (status, v) = api.send(Method::GET, "/admin/releases", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    let unknown = format!("pintu_{}", "0".repeat(64));
    let (status, v) = api
        .send(Method::GET, "/admin/releases", Some(&unknown), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    let store = api.store.clone();
    let (clerk, _) = tokio::task::spawn_blocking(move || {
        auth::create_token(&store, &Roles::default(), "front_office", "loket")
            .map_err(|e| e.to_string())
            .unwrap()
    })
    .await
    .unwrap();
    let (status, v) = api
        .send(Method::GET, "/admin/releases", Some(&clerk), None)
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_lists_the_reloads() {
    let api = Api::start().await;
    let (status, v) = api
        .send(Method::GET, "/admin/reloads", Some(&api.admin), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let reloads = v["reloads"].as_array().unwrap();
    assert_eq!(reloads.len(), 1, "{v}");
    assert_eq!(reloads[0]["trigger"], "startup");
    assert_eq!(reloads[0]["accepted"], true);
    assert_eq!(reloads[0]["fixtures_passed"], 1);
    assert_eq!(v["next_before"], Value::Null);
}

// Its own file (not a test target of its own: one binary links faster).
#[path = "router/openapi.rs"]
mod openapi;
