//! `pintu-bench`: measures each Pintu figure next to its baseline on this machine and prints a
//! markdown table with the ratio. `--quick` runs every measurement briefly (for CI: it proves
//! the harness runs, its figures mean nothing). See docs/benchmarks.md.

mod durable;
mod native;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use pintu::app::{run, Evaluation, Kind};
use pintu::config::{Language, Limits};
use pintu::release::{build, SourceTree};
use serde_json::{json, Value as Json};

struct Args {
    quick: bool,
    rules: PathBuf,
    work_dir: PathBuf,
}

fn parse_args() -> Result<Args> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut args = Args {
        quick: false,
        rules: root.join("rules"),
        work_dir: root.join("target").join("pintu-bench"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--rules" => args.rules = it.next().context("--rules needs a folder")?.into(),
            "--work-dir" => args.work_dir = it.next().context("--work-dir needs a folder")?.into(),
            "-h" | "--help" => {
                println!(
                    "usage: pintu-bench [--quick] [--rules DIR] [--work-dir DIR]\n\
                     --rules     rules folder with the pbg permit type (default: the repository's rules/)\n\
                     --work-dir  where the databases are written; put it on the disk to measure\n\
                     \x20           (default: target/pintu-bench)"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(args)
}

/// One table row: what is measured, Pintu's figure, the baseline's, and Pintu ÷ baseline.
struct Row {
    what: String,
    pintu: String,
    baseline_name: String,
    baseline: String,
    ratio: String,
}

/// Median and 99th percentile of per-call times.
fn percentiles(mut samples: Vec<Duration>) -> Result<(Duration, Duration)> {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).copied().ok_or_else(|| anyhow!("no samples"))
    };
    Ok((at(0.5)?, at(0.99)?))
}

fn time_each(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        out.push(t.elapsed());
    }
    Ok(out)
}

fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

/// Worked example B with two prasarana lines, as the existing criterion bench uses it.
fn case_b() -> Json {
    json!({
        "fungsi": "usaha", "kompleksitas": "tidak_sederhana", "permanensi": "permanen",
        "jumlah_lantai": 5, "luas_lantai_total": "1250.5", "kepemilikan": "badan_usaha",
        "kegiatan": "baru",
        "prasarana": [{"jenis": "pagar", "volume": "120"}, {"jenis": "parkir", "volume": "300.5"}]
    })
}

fn levy_rows(args: &Args) -> Result<Vec<Row>> {
    let limits = Limits::default();
    let tree = SourceTree::read_dir(&args.rules, &limits)
        .map_err(|d| anyhow!("rules in {} unreadable: {d:?}", args.rules.display()))?;
    let release =
        build(tree, &limits).map_err(|r| anyhow!("rules do not build: {:?}", r.diagnostics))?;
    let toml_path = args.rules.join("pbg").join("permit.toml");
    let plain = native::PbgRules::from_toml(
        &std::fs::read_to_string(&toml_path)
            .with_context(|| format!("reading {}", toml_path.display()))?,
    )?;
    let data = case_b();

    let script_levy = || -> Result<Json> {
        match run(&release, "pbg", Kind::Levy, &data, Language::default())? {
            Evaluation::Valid { output } => Ok(output),
            Evaluation::Invalid { errors, .. } => bail!("case B is invalid: {errors}"),
        }
    };
    // Both must compute the same levy, or the comparison means nothing.
    let from_script = native::from_output(&script_levy()?)?;
    let from_rust = plain.levy(&data)?;
    if from_script != from_rust {
        bail!(
            "plain-Rust levy differs from the script: script {from_script:?}, Rust {from_rust:?}"
        );
    }

    let n = if args.quick { 50 } else { 20_000 };
    let script = time_each(n, || script_levy().map(|_| ()))?;
    let rust = time_each(n * 10, || {
        std::hint::black_box(plain.levy(std::hint::black_box(&data))?);
        Ok(())
    })?;
    let (s50, s99) = percentiles(script)?;
    let (r50, r99) = percentiles(rust)?;
    let ratio = |a: Duration, b: Duration| {
        format!(
            "{:.0}× slower",
            a.as_secs_f64() / b.as_secs_f64().max(1e-12)
        )
    };
    Ok(vec![
        Row {
            what: "PBG levy in-process (example B + 2 prasarana), median".into(),
            pintu: us(s50),
            baseline_name: "plain Rust levy".into(),
            baseline: us(r50),
            ratio: ratio(s50, r50),
        },
        Row {
            what: "PBG levy in-process (example B + 2 prasarana), p99".into(),
            pintu: us(s99),
            baseline_name: "plain Rust levy".into(),
            baseline: us(r99),
            ratio: ratio(s99, r99),
        },
    ])
}

fn per_sec(r: durable::Rate) -> String {
    format!("{:.0} /s ({} writes)", r.per_sec(), r.writes)
}

fn ratio_rate(p: durable::Rate, b: durable::Rate) -> String {
    format!("{:.2}×", p.per_sec() / b.per_sec().max(f64::MIN_POSITIVE))
}

fn durable_rows(args: &Args) -> Result<Vec<Row>> {
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("creating {}", args.work_dir.display()))?;
    let run_for = if args.quick {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(5)
    };
    let fresh = || {
        tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&args.work_dir)
            .with_context(|| format!("temp dir in {}", args.work_dir.display()))
    };
    let fsync_dir = fresh()?;
    let fsync = durable::raw_fsync(fsync_dir.path(), run_for)?;
    let mut rows = Vec::new();
    for writers in [1, 16, 64] {
        let (pd, sd) = (fresh()?, fresh()?);
        let pintu = durable::pintu_store(pd.path(), writers, run_for)?;
        let sqlite = durable::sqlite(sd.path(), writers, run_for)?;
        rows.push(Row {
            what: format!("durable decision writes, {writers} writer(s)"),
            pintu: per_sec(pintu),
            baseline_name: "SQLite WAL, synchronous=FULL".into(),
            baseline: per_sec(sqlite),
            ratio: ratio_rate(pintu, sqlite),
        });
        rows.push(Row {
            what: format!("durable decision writes, {writers} writer(s)"),
            pintu: per_sec(pintu),
            baseline_name: "raw write + fsync, 1 writer".into(),
            baseline: per_sec(fsync),
            ratio: ratio_rate(pintu, fsync),
        });
    }
    Ok(rows)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    eprintln!(
        "pintu-bench{}: rules {}, work dir {} ({} build)",
        if args.quick { " --quick" } else { "" },
        args.rules.display(),
        args.work_dir.display(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    );
    let mut rows = levy_rows(&args)?;
    rows.extend(durable_rows(&args)?);
    println!("| measurement | Pintu | baseline | baseline figure | Pintu ÷ baseline |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.what, r.pintu, r.baseline_name, r.baseline, r.ratio
        );
    }
    Ok(())
}
