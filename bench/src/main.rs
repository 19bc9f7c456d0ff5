//! `pintu-bench`: measures each Pintu figure next to its baseline on this machine and prints a
//! markdown table with the ratio. `--quick` runs every measurement briefly (for CI: it proves
//! the harness runs, its figures mean nothing). See docs/benchmarks.md.

mod connector;
mod durable;
mod endpoint;
mod engine;
mod generate;
mod http;
mod load;
mod native;
mod scale;
mod server;
mod submissions;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use pintu::config::{Language, Limits};
use pintu::release::{build, SourceTree};
use pintu::services::evaluator::{run, Evaluation, Kind};
use serde_json::{json, Value as Json};

/// The allocator of the `pintu` binary: the native baselines served and run by this process
/// then differ from Pintu in the rules engine only.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    quick: bool,
    rules: PathBuf,
    work_dir: PathBuf,
    /// Set: serve the native endpoint with its store in this folder (the HTTP rows' baseline,
    /// run by the harness itself as a separate process).
    serve_native: Option<PathBuf>,
    /// Set: measure only these groups of rows (`--only levy,scale`).
    only: Option<Vec<String>>,
}

/// The groups of rows `--only` can pick, in the order the table prints them.
const GROUPS: &[&str] = &[
    "levy",
    "connector",
    "http",
    "scale",
    "writes",
    "submissions",
];

impl Args {
    /// Whether the run measures `group`.
    fn wants(&self, group: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|g| g == group))
    }
}

fn parse_args() -> Result<Args> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut args = Args {
        quick: false,
        rules: root.join("rules"),
        work_dir: root.join("target").join("pintu-bench"),
        serve_native: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--rules" => args.rules = it.next().context("--rules needs a folder")?.into(),
            "--work-dir" => args.work_dir = it.next().context("--work-dir needs a folder")?.into(),
            "--only" => {
                let list = it.next().context("--only needs a list of groups")?;
                let groups: Vec<String> = list.split(',').map(|g| g.trim().to_owned()).collect();
                if let Some(bad) = groups.iter().find(|g| !GROUPS.contains(&g.as_str())) {
                    bail!(
                        "--only: unknown group {bad:?}; the groups are {}",
                        GROUPS.join(", ")
                    );
                }
                args.only = Some(groups);
            }
            "--serve-native" => {
                args.serve_native = Some(it.next().context("--serve-native needs a folder")?.into())
            }
            "-h" | "--help" => {
                println!(
                    "usage: pintu-bench [--quick] [--only GROUPS] [--rules DIR] [--work-dir DIR]\n\
                     --only      measure only these comma-separated groups of rows: levy,\n\
                     \x20           connector, http, scale (start and reload), writes, submissions\n\
                     --rules     rules folder with the pbg permit type (default: the repository's rules/)\n\
                     --work-dir  where the databases and generated trees are written; put it on\n\
                     \x20           the disk to measure (default: target/pintu-bench)\n\
                     PINTU_BIN   the pintu binary to measure (default: built by cargo for this\n\
                     \x20           harness's profile)"
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

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `a ÷ b` as a ratio cell.
fn times(a: f64, b: f64) -> String {
    format!("{:.2}×", a / b.max(f64::MIN_POSITIVE))
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

/// The engine's floor: the PBG formula alone as one Rhai function (`engine.rs`).
const FORMULA_ROW: &str =
    "PBG levy formula alone, one Rhai function (no checks, labels, trace or helpers), {q}";

fn levy_rows(args: &Args, notes: &mut Vec<String>) -> Result<Vec<Row>> {
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
            Evaluation::Invalid { errors, .. } => bail!("case B is invalid: {errors:?}"),
            answer => Ok(serde_json::to_value(answer)?),
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
    let floor = engine::measure(&release, &limits, &data, from_rust.total, n)?;
    notes.push(floor.note);
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
        Row {
            what: FORMULA_ROW.replace("{q}", "median"),
            pintu: us(floor.median),
            baseline_name: "plain Rust levy".into(),
            baseline: us(r50),
            ratio: ratio(floor.median, r50),
        },
        Row {
            what: FORMULA_ROW.replace("{q}", "p99"),
            pintu: us(floor.p99),
            baseline_name: "plain Rust levy".into(),
            baseline: us(r99),
            ratio: ratio(floor.p99, r99),
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

/// What the rows that run servers share.
struct Bench<'a> {
    args: &'a Args,
    /// The `pintu` binary measured.
    bin: PathBuf,
    /// The `pintu.toml` of every server the harness starts.
    config: PathBuf,
    rt: tokio::runtime::Runtime,
    /// Worked example B with two prasarana lines under the sample rules.
    case_b_total: rust_decimal::Decimal,
}

/// Settings of the harness's servers that differ from the defaults: a 1,000-type tree has
/// about 34,000 files.
const SERVER_CONFIG: &str = "[limits]\nmax_rule_files = 100000\n";

impl Bench<'_> {
    fn temp_dir(&self) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&self.args.work_dir)
            .with_context(|| format!("temp dir in {}", self.args.work_dir.display()))
    }
}

/// Start-up, memory and reload rows: the sample tree against a generated one.
fn scale_rows(bench: &Bench, notes: &mut Vec<String>) -> Result<Vec<Row>> {
    let quick = bench.args.quick;
    let (count, saves, clients) = if quick { (20, 3, 2) } else { (1_000, 50, 4) };
    let big = if quick {
        format!("{count} generated permit types (--quick)")
    } else {
        "1,000 generated permit types".to_owned()
    };

    let work = bench.temp_dir()?;
    let sample = work.path().join("sample");
    generate::copy_tree(&bench.args.rules, &sample)?;
    let generated = work.path().join("generated");
    let t = Instant::now();
    let made = generate::generate(&bench.args.rules, &generated, count)?;
    notes.push(format!(
        "generated tree: {} permit types, {} files, written in {:.1} s; reload clients: {clients} \
         concurrent levy clients in the harness process during the {saves} saves of each tree",
        made.permits,
        made.files,
        t.elapsed().as_secs_f64()
    ));
    let data = case_b();
    let pbg_big = generate::permit_id(0)?;
    let big_total = generate::case_b_total(&generated, &pbg_big, &data)?;

    eprintln!("start and reload: 3 sample permit types");
    let small = scale::measure(
        bench,
        &sample,
        "pbg",
        bench.case_b_total.to_string(),
        saves,
        clients,
    )?;
    eprintln!("start and reload: {big}");
    let large = scale::measure(
        bench,
        &generated,
        &pbg_big,
        big_total.to_string(),
        saves,
        clients,
    )?;

    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let mb = |kib: u64| format!("{:.1} MB", kib as f64 / 1024.0);
    // Each figure (what, shown, value) against its baselines (name, shown, value).
    let figures = [
        (
            format!("cold start to /health ok, {big}"),
            secs(large.start),
            large.start.as_secs_f64(),
            [
                (
                    "the same, 3 sample permit types",
                    secs(small.start),
                    small.start.as_secs_f64(),
                ),
                ("target 2 s", "2.00 s".to_owned(), 2.0),
            ],
        ),
        (
            format!("restart on the same data and rules to /health ok, {big}"),
            secs(large.restart),
            large.restart.as_secs_f64(),
            [
                ("cold start", secs(large.start), large.start.as_secs_f64()),
                ("target 2 s", "2.00 s".to_owned(), 2.0),
            ],
        ),
        (
            format!("RSS after start, {big}"),
            mb(large.rss_kib),
            large.rss_kib as f64,
            [
                (
                    "the same, 3 sample permit types",
                    mb(small.rss_kib),
                    small.rss_kib as f64,
                ),
                ("target 300 MB", "300.0 MB".to_owned(), 300.0 * 1024.0),
            ],
        ),
    ];
    let mut rows = Vec::new();
    for (what, shown, value, baselines) in figures {
        for (name, baseline, base) in baselines {
            rows.push(Row {
                what: what.clone(),
                pintu: shown.clone(),
                baseline_name: name.into(),
                baseline,
                ratio: times(value, base),
            });
        }
    }
    for (label, s) in [("3 sample permit types", &small), (big.as_str(), &large)] {
        let (p50, p99) = percentiles(s.reloads.clone())?;
        let failed = format!(
            "{} saves; {} of {} levy requests failed",
            s.reloads.len(),
            s.load.failed(),
            s.load.requests()
        );
        for (q, d) in [("p50", p50), ("p99", p99)] {
            rows.push(Row {
                what: format!("reload, save → /health new release, {label}, {q}"),
                pintu: format!("{} ({failed})", ms(d)),
                baseline_name: "target 150 ms".into(),
                baseline: "150.00 ms".into(),
                ratio: times(d.as_secs_f64(), 0.150),
            });
        }
    }
    Ok(rows)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if let Some(data) = &args.serve_native {
        return endpoint::serve(&args.rules, data);
    }
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
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("creating {}", args.work_dir.display()))?;
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    if args.wants("levy") {
        rows.extend(levy_rows(&args, &mut notes)?);
    }
    if args.wants("connector") {
        eprintln!("connector calls");
        rows.extend(connector::rows(&args)?);
    }

    rows.extend(server_rows(&args, &mut notes)?);
    println!("| measurement | Pintu | baseline | baseline figure | Pintu ÷ baseline |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.what, r.pintu, r.baseline_name, r.baseline, r.ratio
        );
    }
    println!();
    for n in notes {
        println!("- {n}");
    }
    Ok(())
}

/// The rows that run servers, and the durable writes, measured between them.
fn server_rows(args: &Args, notes: &mut Vec<String>) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    // The server groups need the `pintu` binary (built first when PINTU_BIN is not set).
    let servers = ["http", "scale", "submissions"]
        .iter()
        .any(|g| args.wants(g));
    let bench = if servers {
        Some(Bench::start(args, notes)?)
    } else {
        None
    };
    let group = |name: &str| bench.as_ref().filter(|_| args.wants(name));
    if let Some(bench) = group("http") {
        eprintln!("HTTP levy");
        rows.extend(http::rows(bench)?);
    }
    if let Some(bench) = group("scale") {
        rows.extend(scale_rows(bench, notes)?);
    }
    // Between the server groups, as before `--only` existed.
    if args.wants("writes") {
        eprintln!("durable writes");
        rows.extend(durable_rows(args)?);
    }
    if let Some(bench) = group("submissions") {
        eprintln!("durable submissions");
        rows.extend(submissions::rows(bench)?);
    }
    Ok(rows)
}

impl<'a> Bench<'a> {
    /// Settles what every server row shares: the binary, its settings, the expected total.
    fn start(args: &'a Args, notes: &mut Vec<String>) -> Result<Self> {
        let bin = server::pintu_bin()?;
        let config = args.work_dir.join("pintu.toml");
        std::fs::write(&config, SERVER_CONFIG)
            .with_context(|| format!("writing {}", config.display()))?;
        let toml_path = args.rules.join("pbg").join("permit.toml");
        let case_b_total = native::PbgRules::from_toml(
            &std::fs::read_to_string(&toml_path)
                .with_context(|| format!("reading {}", toml_path.display()))?,
        )?
        .levy(&case_b())?
        .total;
        notes.extend([
            format!("server: {}", bin.display()),
            format!(
                "settings of every server started (pintu.toml): {}",
                SERVER_CONFIG.trim().replace('\n', " ")
            ),
            "load generator: reqwest clients (one keep-alive connection each) in the harness \
             process, on the same 2 cores as the server under test"
                .to_owned(),
        ]);
        Ok(Bench {
            args,
            bin,
            config,
            rt: tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?,
            case_b_total,
        })
    }
}
