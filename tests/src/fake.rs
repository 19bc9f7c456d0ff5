//! What the fake outside systems (`fake_oss`, `fake_simbg`) share: a real HTTP server on its own
//! thread, a record of every request it received, and failures injected on demand.
//!
//! Each fake runs on a thread with its own single-threaded tokio runtime, so that it works the
//! same from an async test, a blocking test and a standalone example, and stops (connections
//! included) when it is dropped.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Serialize;
use serde_json::Value;

/// One request a fake received, and the status it answered.
#[derive(Clone, Debug, Serialize)]
pub struct Received {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: String,
    /// Header names in lowercase.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON, or as a JSON string when it was not JSON (empty: `null`).
    pub body: Value,
    /// The HTTP status the fake answered.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// A failure a fake answers instead of doing its job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Answer this HTTP status with a JSON error body in the system's own shape.
    Status(u16),
    /// Wait this long before answering (the caller times out first: a "timeout").
    Delay(Duration),
}

/// Failures to inject: the next ones in order, then the standing one (if any).
#[derive(Debug, Default)]
pub struct Faults {
    next: VecDeque<Failure>,
    always: Option<Failure>,
}

impl Faults {
    pub fn push(&mut self, times: usize, failure: Failure) {
        for _ in 0..times {
            self.next.push_back(failure.clone());
        }
    }

    pub fn set_always(&mut self, failure: Option<Failure>) {
        self.always = failure;
    }

    pub fn clear(&mut self) {
        self.next.clear();
        self.always = None;
    }

    /// The failure the current request gets, if any (consumes one of the queued ones).
    pub fn take(&mut self) -> Option<Failure> {
        self.next.pop_front().or_else(|| self.always.clone())
    }
}

/// The request log and faults of one fake, shared by its handlers and its test-side handle.
#[derive(Debug, Default)]
pub struct Journal {
    received: Mutex<Vec<Received>>,
    faults: Mutex<Faults>,
}

impl Journal {
    pub fn record(&self, received: Received) {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(received);
    }

    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn clear_received(&self) {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn take_fault(&self) -> Option<Failure> {
        self.faults().take()
    }

    /// Polls the log until `pred` holds for the requests received so far (bounded by
    /// `timeout`); returns them, or panics naming `what` and what was received.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            if started.elapsed() >= timeout {
                let listing: Vec<String> = got
                    .iter()
                    .map(|r| format!("{} {} → {}: {}", r.method, r.path, r.status, r.body))
                    .collect();
                panic!(
                    "waited {timeout:?} for {what}; received:\n{}",
                    listing.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The parts of a request a fake's handler looks at.
pub struct Incoming {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: BTreeMap<String, String>,
    pub raw: Bytes,
}

/// A fake's handlers take the request as one `Incoming` (after `State`/`Path`), rather than its
/// method, URI, headers and body one by one.
impl<S: Send + Sync> FromRequest<S> for Incoming {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let raw = Bytes::from_request(
            axum::extract::Request::from_parts(parts.clone(), body),
            state,
        )
        .await
        .map_err(IntoResponse::into_response)?;
        Ok(Self::new(&parts.method, &parts.uri, &parts.headers, raw))
    }
}

impl Incoming {
    pub fn new(
        method: &axum::http::Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        raw: Bytes,
    ) -> Self {
        Self {
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            raw,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The body as JSON (`null` when empty, a JSON string when it is not JSON).
    pub fn body(&self) -> Value {
        if self.raw.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&self.raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.raw).into_owned()))
    }

    /// What the journal keeps of this request, answered `status`.
    pub fn received(self, status: u16) -> Received {
        let body = self.body();
        Received {
            method: self.method,
            path: self.path,
            query: self.query,
            headers: self.headers,
            body,
            status,
        }
    }

    /// Records this request with the status answered, and builds the JSON response.
    pub fn answer(self, journal: &Journal, status: u16, body: Value) -> Response {
        journal.record(self.received(status));
        json_response(status, &body)
    }
}

pub fn json_response(status: u16, body: &Value) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A fake's HTTP server on its own thread; stops when dropped.
pub struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Serves `router` on `127.0.0.1:port` (`0`: an ephemeral port).
    pub fn spawn(router: Router, port: u16) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("fake-http-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    // Stopping drops the runtime with every connection task still open: a
                    // delayed answer is abandoned, not awaited.
                    tokio::select! {
                        _ = axum::serve(listener, router) => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: the form of a connector manifest's `[allow] hosts` entry.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Blocks until the server stops by itself (the standalone examples).
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers `incoming` with the next injected failure, if one is due (`body` gives the error
/// body for a status); otherwise hands the request back to its handler. A delayed request is
/// recorded when it arrives (as 504), so that the journal keeps arrival order even though its
/// caller gives up first.
pub async fn fail_if_asked(
    journal: &Journal,
    incoming: Incoming,
    body: impl Fn(u16) -> Value,
) -> Result<Response, Incoming> {
    match journal.take_fault() {
        None => Err(incoming),
        Some(Failure::Status(status)) => Ok(incoming.answer(journal, status, body(status))),
        Some(Failure::Delay(delay)) => {
            journal.record(incoming.received(504));
            tokio::time::sleep(delay).await;
            Ok(json_response(504, &body(504)))
        }
    }
}
