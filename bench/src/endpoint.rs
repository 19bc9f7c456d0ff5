//! The native endpoint, the baseline of the HTTP levy rows: `POST /v1/permits/pbg/levy` with
//! Pintu's JSON contract (`{"data": {...}}` → `total`, `currency`, `items` with code, label and
//! amount, `trace`, `release`) on the same stack (axum on hyper and tokio, a multi-threaded
//! runtime with one worker per core), with the same durable decision log (`pintu::store::Store`,
//! one decision per answer, on disk before the answer is sent, bounded as Pintu bounds it). Only
//! the rules engine differs: the levy is the plain-Rust one of `native.rs`, without validation.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use pintu::config::Limits;
use pintu::store::records::DecisionRecord;
use pintu::store::{Op, Store};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::native::PbgRules;

/// What the native endpoint reports as its release.
const RELEASE: &str = "native";

struct Native {
    rules: PbgRules,
    store: Store,
    max_recorded: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvalRequest {
    data: Value,
}

type Answer = (StatusCode, Json<Value>);

fn error(status: StatusCode, code: &str, message: String) -> Answer {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
}

async fn levy(
    State(native): State<Arc<Native>>,
    UrlPath(id): UrlPath<String>,
    Json(req): Json<EvalRequest>,
) -> Answer {
    if id != "pbg" {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_permit",
            format!("no permit type {id:?}"),
        );
    }
    let started = Instant::now();
    let mut output = match native.rules.response(&req.data) {
        Ok(o) => o,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_data",
                e.to_string(),
            )
        }
    };
    if let Some(obj) = output.as_object_mut() {
        obj.insert("release".into(), Value::String(RELEASE.into()));
    }
    let elapsed = started.elapsed();
    let max = native.max_recorded;
    let record = DecisionRecord {
        seq: 0,
        at: chrono::Utc::now(),
        permit: id,
        kind: "levy".into(),
        release: RELEASE.into(),
        input: pintu::store::bound::excerpt(req.data, max),
        output: pintu::store::bound::excerpt(output.clone(), max),
        duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
    };
    match native.store.write(vec![Op::Decision(record)]).await {
        Ok(_) => (StatusCode::OK, Json(output)),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            e.to_string(),
        ),
    }
}

/// Serves until SIGTERM or SIGINT, then closes the store. Logs `listening on http://ADDR`
/// on stderr, as `pintu serve` does.
pub fn serve(rules_dir: &Path, data: &Path) -> Result<()> {
    let toml_path = rules_dir.join("pbg").join("permit.toml");
    let rules = PbgRules::from_toml(
        &std::fs::read_to_string(&toml_path)
            .with_context(|| format!("reading {}", toml_path.display()))?,
    )?;
    let limits = Limits::default();
    let store = Store::open(data, limits.max_commit_batch)
        .map_err(|e| anyhow!("opening the store in {}: {e}", data.display()))?;
    let native = Arc::new(Native {
        rules,
        store: store.clone(),
        max_recorded: limits.max_recorded_json_bytes,
    });
    let router = Router::new()
        .route("/v1/permits/{id}/levy", post(levy))
        .with_state(native);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        eprintln!("listening on http://{}", listener.local_addr()?);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            })
            .await?;
        Ok::<(), anyhow::Error>(())
    });
    store.close();
    served
}
