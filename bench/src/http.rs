//! HTTP levy rows: throughput and p50/p99 latency at 1, 16 and 64 concurrent clients, the real
//! `pintu serve` against the native endpoint (`endpoint.rs`), both as processes of their own on
//! this machine, the load generator in the harness process.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::Value as Json;

use crate::load::{self, Load, Request};
use crate::server::{self, Proc};
use crate::{case_b, ms, percentiles, Bench, Row};

/// Concurrent clients of each level.
pub const LEVELS: [usize; 3] = [1, 16, 64];

pub const BASELINE: &str = "native endpoint (plain-Rust levy, same stack, same decision log)";

async fn measure(req: &Request, clients: usize, warm: Duration, run_for: Duration) -> Result<Load> {
    let stop = Arc::new(AtomicBool::new(false));
    load::run(req, clients, warm, stop.clone()).await?;
    load::run(req, clients, run_for, stop).await
}

fn counts(l: &Load) -> String {
    format!("{} ok, {} non-2xx, {} errors", l.ok, l.non_2xx, l.errors)
}

/// The keys of a JSON object, sorted.
fn keys(v: &Json) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// The native endpoint answers in Pintu's contract, or the comparison means nothing: the same
/// fields at the top, in every item and in the trace, and the same lines and total.
async fn same_contract(client: &reqwest::Client, pintu: &Request, native: &Request) -> Result<()> {
    let mut answers = Vec::new();
    for req in [pintu, native] {
        let resp = client
            .post(&req.url)
            .header("content-type", "application/json")
            .body(req.body.clone())
            .send()
            .await?;
        let status = resp.status();
        let body: Json = resp.json().await?;
        if !status.is_success() {
            bail!("{} answered {status}: {body}", req.url);
        }
        answers.push(body);
    }
    let (Some(p), Some(n)) = (answers.first(), answers.get(1)) else {
        bail!("missing answers");
    };
    let items = |v: &Json| -> Vec<(Vec<String>, Json, Json)> {
        v.get("items")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .map(|i| {
                        let field = |k: &str| i.get(k).cloned().unwrap_or_default();
                        (keys(i), field("code"), field("amount"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let trace = |v: &Json| v.get("trace").map(keys).unwrap_or_default();
    if keys(p) != keys(n)
        || p.get("total") != n.get("total")
        || items(p) != items(n)
        || trace(p) != trace(n)
    {
        bail!("the native endpoint's answer differs from Pintu's:\npintu  {p}\nnative {n}");
    }
    Ok(())
}

pub fn rows(bench: &Bench) -> Result<Vec<Row>> {
    let work = bench.temp_dir()?;
    let rules = work.path().join("rules");
    crate::generate::copy_tree(&bench.args.rules, &rules)?;
    let pintu = Proc::spawn(
        server::pintu_serve(
            &bench.bin,
            &bench.config,
            &rules,
            &work.path().join("pintu-data"),
        ),
        "pintu serve",
    )?;
    let native = Proc::spawn(
        server::native_serve(&rules, &work.path().join("native-data"))?,
        "native endpoint",
    )?;
    let (warm, run_for) = if bench.args.quick {
        (Duration::from_millis(100), Duration::from_millis(300))
    } else {
        (Duration::from_secs(1), Duration::from_secs(5))
    };
    let total = bench.case_b_total.to_string();
    let body = serde_json::json!({ "data": case_b() }).to_string();
    let request = |p: &Proc| Request {
        url: format!("{}/v1/permits/pbg/levy", p.base),
        body: body.clone(),
        total: Some(total.clone()),
    };
    let (to_pintu, to_native) = (request(&pintu), request(&native));
    bench.rt.block_on(async {
        let client = load::client()?;
        server::wait_for_release(
            &client,
            &pintu.base,
            None,
            Duration::from_millis(5),
            Duration::from_secs(600),
        )
        .await?;
        same_contract(&client, &to_pintu, &to_native).await?;
        let mut rows = Vec::new();
        for clients in LEVELS {
            let p = measure(&to_pintu, clients, warm, run_for).await?;
            let n = measure(&to_native, clients, warm, run_for).await?;
            if p.ok == 0 || n.ok == 0 {
                bail!(
                    "no right answers at {clients} clients: pintu {}; native {}\npintu log:\n{}",
                    counts(&p),
                    counts(&n),
                    pintu.log_tail()
                );
            }
            let what = format!("HTTP levy (example B + 2 prasarana), {clients} client(s)");
            rows.push(Row {
                what: format!("{what}, throughput"),
                pintu: format!("{:.0} req/s ({})", p.per_sec(), counts(&p)),
                baseline_name: BASELINE.into(),
                baseline: format!("{:.0} req/s ({})", n.per_sec(), counts(&n)),
                ratio: format!("{:.2}×", p.per_sec() / n.per_sec().max(f64::MIN_POSITIVE)),
            });
            let (p50, p99) = percentiles(p.latencies)?;
            let (n50, n99) = percentiles(n.latencies)?;
            for (q, a, b) in [("p50", p50, n50), ("p99", p99, n99)] {
                rows.push(Row {
                    what: format!("{what}, {q} latency"),
                    pintu: ms(a),
                    baseline_name: BASELINE.into(),
                    baseline: ms(b),
                    ratio: format!(
                        "{:.2}×",
                        a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
                    ),
                });
            }
        }
        Ok(rows)
    })
}
