//! A fake SIMBG (the national building-approval system) speaking the JSON API regional
//! dashboards use (domain notes: `simbg.md`): login and token refresh (JWT-shaped tokens that can
//! be expired on demand, then answered 401 as SimpleJWT does), the PBG application list, detail,
//! status and retribution. It records every request and fails on demand.
//!
//! Applications come from `tests/fixtures/simbg/applications.json` ([`sample_applications`]) or
//! are added by a test. `GET /_fake/received` lists what it received (for the README tour).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::fake::{fail_if_asked, json_response, Failure, Incoming, Journal, Received, Running};

/// One PBG application as SIMBG holds it: the list entry, the detail, the status and the
/// retribution (levy) calculation, each as its route answers it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SimbgApplication {
    pub summary: Value,
    pub detail: Value,
    pub status: Value,
    pub retribution: Value,
}

impl SimbgApplication {
    pub fn uid(&self) -> String {
        self.summary["uid"].as_str().unwrap_or_default().to_owned()
    }
}

#[derive(Default)]
struct Tokens {
    /// Access tokens that are still valid.
    access: BTreeSet<String>,
    /// Refresh tokens that are still valid.
    refresh: BTreeSet<String>,
    issued: u64,
}

struct SimbgState {
    email: String,
    password: String,
    journal: Arc<Journal>,
    tokens: Mutex<Tokens>,
    applications: Mutex<Vec<SimbgApplication>>,
}

/// A running fake SIMBG; stops when dropped.
pub struct FakeSimbg {
    running: Running,
    state: Arc<SimbgState>,
}

impl FakeSimbg {
    /// On an ephemeral port, with the operator account `email`/`password` and `applications`.
    pub fn start(email: &str, password: &str, applications: Vec<SimbgApplication>) -> Self {
        Self::start_on(0, email, password, applications).expect("fake SIMBG binds 127.0.0.1:0")
    }

    pub fn start_on(
        port: u16,
        email: &str,
        password: &str,
        applications: Vec<SimbgApplication>,
    ) -> std::io::Result<Self> {
        let state = Arc::new(SimbgState {
            email: email.to_owned(),
            password: password.to_owned(),
            journal: Arc::new(Journal::default()),
            tokens: Mutex::new(Tokens::default()),
            applications: Mutex::new(applications),
        });
        let router = Router::new()
            .route("/api/user/v1/auth/login/", post(login))
            .route("/api/user/v1/auth/token/refresh/", post(refresh))
            .route("/api/pbg/v1/list/", get(list))
            .route("/api/pbg/v1/detail/{uid}/", get(detail))
            .route("/api/pbg/v1/detail/{uid}/status/", get(status))
            .route(
                "/api/pbg/v1/detail/{uid}/retribution/submit/",
                get(retribution),
            )
            .route("/_fake/received", get(list_received))
            .fallback(unknown)
            .with_state(state.clone());
        Ok(Self {
            running: Running::spawn(router, port)?,
            state,
        })
    }

    /// `http://127.0.0.1:<port>`: the `[allow] hosts` entry and the base URL.
    pub fn origin(&self) -> String {
        self.running.origin()
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.journal.received()
    }

    /// Requests whose path starts with `prefix`.
    pub fn received_at(&self, prefix: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    /// Every access token issued so far stops working (the next request with one is 401); the
    /// refresh tokens still work.
    pub fn expire_access_tokens(&self) {
        self.lock_tokens().access.clear();
    }

    /// Access and refresh tokens stop working: only a new login helps.
    pub fn expire_all_tokens(&self) {
        let mut tokens = self.lock_tokens();
        tokens.access.clear();
        tokens.refresh.clear();
    }

    /// How many token pairs were issued (logins + refreshes).
    pub fn tokens_issued(&self) -> u64 {
        self.lock_tokens().issued
    }

    pub fn add_application(&self, application: SimbgApplication) {
        self.lock_applications().push(application);
    }

    /// Changes an application's status (list entry and status route), as SIMBG's own
    /// processing would.
    pub fn set_status(&self, uid: &str, status: u32, status_name: &str) {
        let mut applications = self.lock_applications();
        for app in applications.iter_mut().filter(|a| a.uid() == uid) {
            app.summary["status"] = json!(status);
            app.summary["status_name"] = json!(status_name);
            app.status["status"] = json!(status);
            app.status["status_name"] = json!(status_name);
        }
    }

    /// The next `times` requests (any route) fail with `failure`.
    pub fn fail_next(&self, times: usize, failure: Failure) {
        self.state.journal.faults().push(times, failure);
    }

    pub fn fail_always(&self, failure: Option<Failure>) {
        self.state.journal.faults().set_always(failure);
    }

    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        self.state.journal.wait_for(what, timeout, pred)
    }

    /// Blocks until the server stops (the standalone example).
    pub fn join(self) {
        self.running.join();
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.state.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_applications(&self) -> std::sync::MutexGuard<'_, Vec<SimbgApplication>> {
        self.state
            .applications
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// The sample applications of `tests/fixtures/simbg/applications.json`.
pub fn sample_applications() -> Vec<SimbgApplication> {
    let path = crate::repo_root().join("tests/fixtures/simbg/applications.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT-shaped token: header.payload.signature, each base64url; unique by `n`.
fn jwt(kind: &str, n: u64) -> String {
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let exp = chrono::Utc::now().timestamp() + if kind == "access" { 300 } else { 86_400 };
    let payload = b64(
        json!({"token_type": kind, "exp": exp, "jti": format!("{kind}-{n}"), "user_id": 1872})
            .to_string()
            .as_bytes(),
    );
    let signature = b64(format!("fake-simbg-signature-{kind}-{n}").as_bytes());
    format!("{header}.{payload}.{signature}")
}

fn issue(state: &SimbgState) -> Value {
    let mut tokens = state.tokens.lock().unwrap_or_else(|e| e.into_inner());
    tokens.issued += 1;
    let n = tokens.issued;
    let access = jwt("access", n);
    let refresh = jwt("refresh", n);
    tokens.access.insert(access.clone());
    tokens.refresh.insert(refresh.clone());
    json!({"token": {"access": access, "refresh": refresh}})
}

fn injected_body(status: u16) -> Value {
    json!({"detail": format!("gagal (disengaja): {status}")})
}

fn error(incoming: Incoming, state: &SimbgState, status: u16, detail: &str) -> Response {
    incoming.answer(&state.journal, status, json!({"detail": detail}))
}

fn not_authenticated(incoming: Incoming, state: &SimbgState) -> Response {
    incoming.answer(
        &state.journal,
        401,
        json!({"detail": "Given token not valid for any token type", "code": "token_not_valid"}),
    )
}

/// The access token of the request, if it is a valid one.
fn authorized(state: &SimbgState, incoming: &Incoming) -> bool {
    let Some(token) = incoming
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return false;
    };
    state
        .tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .access
        .contains(token.trim())
}

async fn login(State(state): State<Arc<SimbgState>>, incoming: Incoming) -> Response {
    let incoming = match fail_if_asked(&state.journal, incoming, injected_body).await {
        Ok(failed) => return failed,
        Err(incoming) => incoming,
    };
    let body = incoming.body();
    if body["email"].as_str() != Some(state.email.as_str())
        || body["password"].as_str() != Some(state.password.as_str())
    {
        return error(
            incoming,
            &state,
            401,
            "No active account found with the given credentials",
        );
    }
    let pair = issue(&state);
    incoming.answer(&state.journal, 200, pair)
}

async fn refresh(State(state): State<Arc<SimbgState>>, incoming: Incoming) -> Response {
    let incoming = match fail_if_asked(&state.journal, incoming, injected_body).await {
        Ok(failed) => return failed,
        Err(incoming) => incoming,
    };
    let body = incoming.body();
    let valid = body["refresh"].as_str().is_some_and(|r| {
        state
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .refresh
            .contains(r)
    });
    if !valid {
        return not_authenticated(incoming, &state);
    }
    let pair = issue(&state);
    incoming.answer(&state.journal, 200, pair)
}

/// Checks faults and the token; `Err` is the answer already given.
async fn guard(state: &SimbgState, incoming: Incoming) -> Result<Incoming, Response> {
    let incoming = match fail_if_asked(&state.journal, incoming, injected_body).await {
        Ok(failed) => return Err(failed),
        Err(incoming) => incoming,
    };
    if !authorized(state, &incoming) {
        return Err(not_authenticated(incoming, state));
    }
    Ok(incoming)
}

async fn list(State(state): State<Arc<SimbgState>>, incoming: Incoming) -> Response {
    let incoming = match guard(&state, incoming).await {
        Ok(incoming) => incoming,
        Err(answer) => return answer,
    };
    let query: BTreeMap<String, String> = incoming
        .query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let number = |key: &str, default: usize| {
        query
            .get(key)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(default)
    };
    let page = number("page", 1).max(1);
    let size = number("size", 10).clamp(1, 100);
    let wanted_status = query.get("status").filter(|s| !s.is_empty()).cloned();
    let mut entries: Vec<Value> = state
        .applications
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|a| a.summary.clone())
        .filter(|s| {
            wanted_status
                .as_deref()
                .is_none_or(|w| w.parse::<u64>().ok() == s["status"].as_u64())
        })
        .collect();
    entries.sort_by_key(|s| s["created_at"].as_str().unwrap_or_default().to_owned());
    if query.get("sort").map(String::as_str) == Some("DESC") {
        entries.reverse();
    }
    let total = entries.len();
    let total_page = total.div_ceil(size).max(1);
    let data: Vec<Value> = entries
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect();
    incoming.answer(
        &state.journal,
        200,
        json!({"data": data, "total_page": total_page, "page": page, "size": size, "total": total}),
    )
}

async fn one(
    state: Arc<SimbgState>,
    uid: String,
    incoming: Incoming,
    part: fn(&SimbgApplication) -> Value,
) -> Response {
    let incoming = match guard(&state, incoming).await {
        Ok(incoming) => incoming,
        Err(answer) => return answer,
    };
    let found = state
        .applications
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|a| a.uid() == uid)
        .map(part);
    match found {
        Some(value) => incoming.answer(&state.journal, 200, json!({"data": value})),
        None => error(incoming, &state, 404, "Not found."),
    }
}

async fn detail(
    State(state): State<Arc<SimbgState>>,
    Path(uid): Path<String>,
    incoming: Incoming,
) -> Response {
    one(state, uid, incoming, |a| a.detail.clone()).await
}

async fn status(
    State(state): State<Arc<SimbgState>>,
    Path(uid): Path<String>,
    incoming: Incoming,
) -> Response {
    one(state, uid, incoming, |a| a.status.clone()).await
}

async fn retribution(
    State(state): State<Arc<SimbgState>>,
    Path(uid): Path<String>,
    incoming: Incoming,
) -> Response {
    one(state, uid, incoming, |a| a.retribution.clone()).await
}

async fn unknown(State(state): State<Arc<SimbgState>>, incoming: Incoming) -> Response {
    error(incoming, &state, 404, "Not found.")
}

async fn list_received(State(state): State<Arc<SimbgState>>) -> Response {
    json_response(200, &json!({ "received": state.journal.received() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(
        method: reqwest::Method,
        url: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let client = reqwest::blocking::Client::new();
        let mut request = client.request(method, url);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().expect("request to the fake");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    #[test]
    fn expired_access_tokens_answer_401_until_refreshed() {
        let simbg = FakeSimbg::start("op@metro", "pw", sample_applications());
        let base = simbg.origin();
        let (status, _) = send(
            reqwest::Method::POST,
            &format!("{base}/api/user/v1/auth/login/"),
            None,
            Some(json!({"email": "op@metro", "password": "salah"})),
        );
        assert_eq!(status, 401);
        let (status, pair) = send(
            reqwest::Method::POST,
            &format!("{base}/api/user/v1/auth/login/"),
            None,
            Some(json!({"email": "op@metro", "password": "pw"})),
        );
        assert_eq!(status, 200, "{pair}");
        let access = pair["token"]["access"].as_str().unwrap().to_owned();
        assert_eq!(access.split('.').count(), 3, "JWT-shaped: {access}");
        let list = format!("{base}/api/pbg/v1/list/?page=1&size=2&sort=ASC&sort_by=created_at");
        let (status, v) = send(reqwest::Method::GET, &list, Some(&access), None);
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["total_page"], 2);
        // Sorted by creation: the cancelled warehouse (26 Nov) first.
        assert_eq!(v["data"][0]["status"], 3);

        simbg.expire_access_tokens();
        let (status, _) = send(reqwest::Method::GET, &list, Some(&access), None);
        assert_eq!(status, 401);
        let (status, fresh) = send(
            reqwest::Method::POST,
            &format!("{base}/api/user/v1/auth/token/refresh/"),
            None,
            Some(json!({"refresh": pair["token"]["refresh"]})),
        );
        assert_eq!(status, 200, "{fresh}");
        let access = fresh["token"]["access"].as_str().unwrap();
        let uid = "9b2e7a10-44c1-4d8e-a6f2-5c3b8e9d0f22";
        let (status, v) = send(
            reqwest::Method::GET,
            &format!("{base}/api/pbg/v1/detail/{uid}/retribution/submit/"),
            Some(access),
            None,
        );
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["data"]["skrd_amount"], "1624250.00");
        assert_eq!(simbg.tokens_issued(), 2);
    }
}
