//! Where the in-process levy's time goes. The levy rows time the whole pipeline; this takes it
//! apart: `validate.rhai` and `levy.rhai` each called alone, and the PBG formula alone as one
//! Rhai function (`formula.rhai`) in the same engine, each with the number of engine
//! operations it runs. The formula holds nothing but the levy's table reads and arithmetic, so
//! its time is the engine's floor for this levy: what rules as readable as the samples cost on
//! top of it is the rest.

use std::collections::BTreeMap;
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

/// One script called alone: its file, function and median time.
struct Stage {
    what: &'static str,
    file: String,
    source: String,
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
    let compile = |host: &ScriptHost, file: &str, source: &str| -> Result<Script> {
        host.compile(file, source)
            .map_err(|d| anyhow!("{file} does not compile: {d:?}"))
    };
    let call = |host: &ScriptHost, script: &Script, func: &str| {
        host.call(&context, script, func, args())
            .map_err(|e| anyhow!("{}: {e}", script.file()))
    };

    let formula = compile(host, FORMULA_FILE, FORMULA)?;
    let answer = call(host, &formula, "levy")?
        .as_decimal()
        .map_err(|t| anyhow!("the formula answered a {t}, not a decimal"))?;
    if answer != total {
        bail!("the formula alone gives {answer}, the plain-Rust levy {total}");
    }
    let (median, p99) = percentiles(time_each(n, || call(host, &formula, "levy").map(|_| ()))?)?;

    let source = |file: &str| {
        release
            .sources
            .files()
            .get(file)
            .map(|t| t.to_string())
            .ok_or_else(|| anyhow!("no {file} in the rules"))
    };
    let mut stages = Vec::new();
    for (what, script, func) in [
        ("validate.rhai alone", permit.validate.as_ref(), "validate"),
        ("levy.rhai alone", permit.levy.as_ref(), "levy"),
    ] {
        let script = script.ok_or_else(|| anyhow!("pbg has no {what}"))?;
        let times = time_each(n, || call(host, script, func).map(|_| ()))?;
        stages.push(Stage {
            what,
            file: script.file().to_owned(),
            source: source(script.file())?,
            func,
            median: percentiles(times)?.0,
        });
    }
    stages.push(Stage {
        what: "the formula alone",
        file: FORMULA_FILE.to_owned(),
        source: FORMULA.to_owned(),
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

    let libs = libs(release);
    let mut parts = Vec::new();
    let mut per_op = Vec::new();
    for s in &stages {
        let ops = operations(limits, &libs, s, &args)?;
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

/// The library modules of `release`, as the script host takes them.
fn libs(release: &Release) -> BTreeMap<String, (String, String)> {
    release
        .sources
        .files()
        .iter()
        .filter_map(|(path, text)| {
            let name = path.strip_prefix("lib/")?.strip_suffix(".rhai")?;
            (!name.contains('/')).then(|| (name.to_owned(), (path.clone(), text.to_string())))
        })
        .collect()
}

/// How many operations the engine counts for one call of `stage`: the fewest
/// `max_operations` under which the call completes.
fn operations(
    limits: &Limits,
    libs: &BTreeMap<String, (String, String)>,
    stage: &Stage,
    args: &dyn Fn() -> (Dynamic, Dynamic),
) -> Result<u64> {
    let completes = |max_operations: u64| -> Result<bool> {
        let limits = Limits {
            max_operations,
            ..limits.clone()
        };
        let host = ScriptHost::new(&limits, libs.clone());
        let script = host
            .compile(&stage.file, &stage.source)
            .map_err(|d| anyhow!("{} does not compile: {d:?}", stage.file))?;
        Ok(host
            .call(&CallContext::default(), &script, stage.func, args())
            .is_ok())
    };
    let (mut lo, mut hi) = (1, limits.max_operations);
    if !completes(hi)? {
        bail!("{} does not complete under the default limits", stage.file);
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if completes(mid)? {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(hi)
}
