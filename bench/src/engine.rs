//! Where the in-process levy's time goes. The levy rows time the whole pipeline; this takes it
//! apart: `validate.rhai` and `levy.rhai` each called alone, and the PBG formula alone as one
//! Rhai function (`formula.rhai`) in the same engine, each with the number of engine
//! operations it runs. The formula holds nothing but the levy's table reads and arithmetic, so
//! its time is the engine's floor for this levy: what rules as readable as the samples cost on
//! top of it is the rest.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use pintu::config::{Language, Limits};
use pintu::release::Release;
use pintu::scripts::value::record_to_map;
use pintu::scripts::{CallContext, Script, ScriptHost};
use rhai::Dynamic;
use rust_decimal::Decimal;
use serde_json::Value as Json;

use crate::{percentiles, time_each, us};

const FORMULA: &str = include_str!("formula.rhai");
const FORMULA_FILE: &str = "pbg/formula.rhai";

/// The formula's per-call times, and a note on every stage.
pub struct Floor {
    pub median: Duration,
    pub p99: Duration,
    pub note: String,
}

/// One script called alone: what it is, its function and median time.
struct Stage<'a> {
    what: &'static str,
    script: &'a Script,
    func: &'static str,
    median: Duration,
}

/// Times each stage `n` times on `data` (which must be valid), after checking that the
/// formula gives `total`, the plain-Rust levy's.
pub fn measure(
    release: &Release,
    limits: &Limits,
    data: &Json,
    total: Decimal,
    n: usize,
) -> Result<Floor> {
    let permit = release
        .permits
        .get("pbg")
        .ok_or_else(|| anyhow!("the rules have no pbg permit type"))?;
    let host = &release.host;
    let context = CallContext::default();
    let params = &permit.script_params;
    // The data as the pipeline hands it to the scripts: checked, then a script map.
    let checked = permit
        .check(host, &context, data, params, Language::default())
        .map_err(|e| anyhow!("checking the data: {e}"))?;
    if !checked.errors.is_empty() {
        bail!("the data is invalid: {:?}", checked.errors);
    }
    let map = record_to_map(&checked.data);
    let args = || {
        (
            Dynamic::from_map(map.clone()),
            Dynamic::from(params.clone()),
        )
    };
    let call = |host: &ScriptHost, script: &Script, func: &str| {
        host.call(&context, script, func, args())
            .map_err(|e| anyhow!("{}: {e}", script.file()))
    };

    let formula = host
        .compile(FORMULA_FILE, FORMULA)
        .map_err(|d| anyhow!("{FORMULA_FILE} does not compile: {d:?}"))?;
    let answer = call(host, &formula, "levy")?
        .as_decimal()
        .map_err(|t| anyhow!("the formula answered a {t}, not a decimal"))?;
    if answer != total {
        bail!("the formula alone gives {answer}, the plain-Rust levy {total}");
    }
    let (median, p99) = percentiles(time_each(n, || call(host, &formula, "levy").map(|_| ()))?)?;

    let mut stages = Vec::new();
    for (what, script, func) in [
        ("validate.rhai alone", permit.validate.as_ref(), "validate"),
        ("levy.rhai alone", permit.levy.as_ref(), "levy"),
    ] {
        let script = script.ok_or_else(|| anyhow!("pbg has no {what}"))?;
        let times = time_each(n, || call(host, script, func).map(|_| ()))?;
        stages.push(Stage {
            what,
            script,
            func,
            median: percentiles(times)?.0,
        });
    }
    stages.push(Stage {
        what: "the formula alone",
        script: &formula,
        func: "levy",
        median,
    });

    // The same formula in a plain Rhai engine, without what Pintu's engine adds for the
    // sandbox: the progress callback of the wall-clock limit, the rejecting operators and the
    // resolution of every operator they need (fast operators off), the other limits.
    let mut plain = rhai::Engine::new();
    // Rhai's default depth limit is lower in debug builds than the formula needs.
    plain.set_max_expr_depths(0, 0);
    pintu::scripts::api::register(&mut plain);
    pintu::scripts::shared::register(&mut plain);
    let ast = plain
        .compile(FORMULA)
        .map_err(|e| anyhow!("{FORMULA_FILE} in a plain engine: {e}"))?;
    let in_plain = || {
        plain
            .call_fn::<Dynamic>(&mut rhai::Scope::new(), &ast, "levy", args())
            .map_err(|e| anyhow!("{FORMULA_FILE} in a plain engine: {e}"))
    };
    if in_plain()?.as_decimal().ok() != Some(total) {
        bail!("the formula alone in a plain Rhai engine does not give {total}");
    }
    let plain_median = percentiles(time_each(n, || in_plain().map(|_| ()))?)?.0;

    let mut parts = Vec::new();
    let mut per_op = Vec::new();
    for s in &stages {
        let ops = operations(host, limits, s, &args)?;
        parts.push(format!(
            "{} {} ({ops} engine operations)",
            s.what,
            us(s.median)
        ));
        per_op.push(s.median.as_secs_f64() * 1e9 / ops.max(1) as f64);
    }
    let (lo, hi) = per_op
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    Ok(Floor {
        median,
        p99,
        note: format!(
            "in-process levy by stage, medians of {n} calls in Pintu's engine: {}; \
             {lo:.0}–{hi:.0} ns per engine operation. The formula alone in a plain Rhai engine \
             (Rhai's defaults: no progress callback, no rejecting operators, fast operators on): {}",
            parts.join(", "),
            us(plain_median),
        ),
    })
}

/// How many operations the engine counts for one call of `stage`: the fewest
/// `max_operations` under which the call completes.
fn operations(
    host: &ScriptHost,
    limits: &Limits,
    stage: &Stage,
    args: &dyn Fn() -> (Dynamic, Dynamic),
) -> Result<u64> {
    let completes = |max_operations: u64| {
        host.with_limits(&Limits {
            max_operations,
            ..limits.clone()
        })
        .call(&CallContext::default(), stage.script, stage.func, args())
        .is_ok()
    };
    let (mut lo, mut hi) = (1, limits.max_operations);
    if !completes(hi) {
        bail!(
            "{} does not complete under the default limits",
            stage.script.file()
        );
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if completes(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(hi)
}
