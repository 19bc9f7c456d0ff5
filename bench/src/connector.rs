//! Connector call rows: one `handle-event` of the `echo` fixture component (a fresh instance
//! each call, as the server does: instantiate + call + drop), next to the same logic written
//! natively in Rust over the same in-memory kv space. Echo's event handling: read the kv list
//! `events`, append the event's summary, keep the newest 300, write it back, answer `ok`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use pintu::connectors::{CallEnv, ConnectorHost, Event, EventOutcome, KvSpace, MemoryKv};
use serde_json::{json, Value as Json};

use crate::{percentiles, time_each, times, us, Args, Row};

/// What echo keeps of its event history.
const KEPT_EVENTS: usize = 300;

fn event(seq: u64) -> Event {
    Event {
        seq,
        kind: "application.advanced".into(),
        application: "APP-1".into(),
        at: "2026-11-30T05:00:00Z".into(),
        data: r#"{"from":"verifikasi","to":"penilaian"}"#.into(),
        snapshot: r#"{"id":"APP-1","permit":"pbg","status":"in_review"}"#.into(),
        idempotency_key: format!("echo:{seq}"),
        attempt: 1,
    }
}

/// Echo's `handle-event`, natively.
fn native_handle_event(kv: &MemoryKv, ev: &Event) -> Result<EventOutcome> {
    let mut events: Vec<Json> = match kv.get("echo", "events").map_err(|e| anyhow!(e))? {
        Some(bytes) => serde_json::from_slice(&bytes)?,
        None => Vec::new(),
    };
    events.push(json!({
        "seq": ev.seq,
        "kind": ev.kind,
        "application": ev.application,
        "attempt": ev.attempt,
        "idempotency_key": ev.idempotency_key,
    }));
    let excess = events.len().saturating_sub(KEPT_EVENTS);
    events.drain(..excess);
    kv.set("echo", "events", &serde_json::to_vec(&events)?)
        .map_err(|e| anyhow!(e))?;
    Ok(EventOutcome::Ok)
}

fn load_echo(host: &ConnectorHost, root: &Path) -> Result<pintu::connectors::Connector> {
    let dir = root.join("plugins").join("fixtures").join("echo");
    let mut files = std::collections::BTreeMap::new();
    for name in ["connector.toml", "echo.wasm"] {
        let path = dir.join(name);
        files.insert(
            name.to_owned(),
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        );
    }
    host.load("echo", &files, None)
        .map_err(|d| anyhow!("the echo fixture does not load: {d:?}"))
}

pub fn rows(args: &Args) -> Result<Vec<Row>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let host = ConnectorHost::new(None)?;
    let echo = load_echo(&host, &root)?;
    let n = if args.quick { 30 } else { 3_000 };

    let kv = Arc::new(MemoryKv::default());
    let env = CallEnv {
        kv: kv.clone(),
        ..CallEnv::detached()
    };
    let mut seq = 0;
    // Warm-up: fill the history to its steady size, as a running connector's would be.
    for _ in 0..KEPT_EVENTS.min(n) {
        seq += 1;
        echo.handle_event(&env, event(seq))?;
    }
    let wasm = time_each(n, || {
        seq += 1;
        let reply = echo.handle_event(&env, event(seq))?;
        match reply.outcome {
            EventOutcome::Ok => Ok(()),
            other => Err(anyhow!("echo answered {other:?}")),
        }
    })?;

    let native_kv = MemoryKv::default();
    let mut nseq = 0;
    for _ in 0..KEPT_EVENTS.min(n) {
        nseq += 1;
        native_handle_event(&native_kv, &event(nseq))?;
    }
    let native = time_each(n, || {
        nseq += 1;
        native_handle_event(&native_kv, &event(nseq)).map(drop)
    })?;

    let (w50, w99) = percentiles(wasm)?;
    let (n50, n99) = percentiles(native)?;
    let ratio = |a: Duration, b: Duration| times(a.as_secs_f64(), b.as_secs_f64());
    let what = "connector call: instantiate + handle-event (echo, kv history of 300)";
    eprintln!("connector allocation: {:?}", host.allocation());
    Ok(vec![
        Row {
            what: format!("{what}, p50"),
            pintu: us(w50),
            baseline_name: "the same logic in native Rust".into(),
            baseline: us(n50),
            ratio: ratio(w50, n50),
        },
        Row {
            what: format!("{what}, p99"),
            pintu: us(w99),
            baseline_name: "the same logic in native Rust".into(),
            baseline: us(n99),
            ratio: ratio(w99, n99),
        },
    ])
}
