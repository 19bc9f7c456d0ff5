//! A fake outside system for the delivery suites: the place the `echo` fixture forwards each
//! event to (its `[config] forward_to`). It records every POST it receives with the status it
//! answered, answers 200, or fails on demand (see [`crate::fake`]), and may answer slowly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use crate::fake::{fail_if_asked, Failure, Incoming, Journal, Received, Running};

struct RecorderState {
    journal: Journal,
    /// How long an accepted request waits before its answer (ms), so that calls are in flight.
    slow_ms: AtomicU64,
}

/// A running recorder; stops when dropped.
pub struct Recorder {
    running: Running,
    state: Arc<RecorderState>,
}

impl Recorder {
    /// On an ephemeral port.
    pub fn start() -> Self {
        let state = Arc::new(RecorderState {
            journal: Journal::default(),
            slow_ms: AtomicU64::new(0),
        });
        let router = Router::new()
            .route("/events", post(receive))
            .with_state(state.clone());
        Self {
            running: Running::spawn(router, 0).expect("the recorder binds 127.0.0.1:0"),
            state,
        }
    }

    /// `http://127.0.0.1:<port>`, the `[allow] hosts` entry.
    pub fn origin(&self) -> String {
        self.running.origin()
    }

    /// Where events are posted (`forward_to`).
    pub fn url(&self) -> String {
        format!("{}/events", self.origin())
    }

    /// Every request received, in order, with the status it was answered.
    pub fn received(&self) -> Vec<Received> {
        self.state.journal.received()
    }

    /// The bodies of the requests answered 2xx, in order.
    pub fn accepted(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(|r| r.body)
            .collect()
    }

    /// The next `times` requests fail with `failure`.
    pub fn fail_next(&self, times: usize, failure: Failure) {
        self.state.journal.faults().push(times, failure);
    }

    /// Every request fails with `failure` until `None`.
    pub fn fail_always(&self, failure: Option<Failure>) {
        self.state.journal.faults().set_always(failure);
    }

    /// Accepted requests are answered after `delay` (recorded when answered).
    pub fn answer_after(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state.slow_ms.store(ms, Ordering::Relaxed);
    }
}

async fn receive(State(state): State<Arc<RecorderState>>, incoming: Incoming) -> Response {
    let incoming = match fail_if_asked(
        &state.journal,
        incoming,
        |status| json!({"error": format!("the recorder answers {status} on request")}),
    )
    .await
    {
        Ok(failed) => return failed,
        Err(incoming) => incoming,
    };
    let slow = state.slow_ms.load(Ordering::Relaxed);
    if slow > 0 {
        tokio::time::sleep(Duration::from_millis(slow)).await;
    }
    incoming.answer(&state.journal, 200, json!({"received": true}))
}
