#![allow(
    clippy::panic,
    reason = "a benchmark without its sample rules has nothing to measure"
)]

//! In-process evaluation speed on the sample rules: one PBG levy (worked example B, with two
//! prasarana items), one PBG validation, one release build. Run with
//! `cargo bench -p pintu --bench evaluate`; criterion prints time per evaluation, from which
//! evaluations per second follow (single thread; the server runs them on a blocking pool).

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pintu::config::{Language, Limits};
use pintu::release::{build, SourceTree};
use pintu::services::evaluator::{run, Kind};
use serde_json::json;

fn rules() -> SourceTree {
    // PINTU_BENCH_RULES measures another rules folder (e.g. a region's own).
    let dir = std::env::var_os("PINTU_BENCH_RULES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules"));
    match SourceTree::read_dir(&dir, &Limits::default()) {
        Ok(t) => t,
        Err(d) => panic!("sample rules unreadable: {d:?}"),
    }
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let release = match build(rules(), &limits) {
        Ok(r) => r,
        Err(report) => panic!("sample rules do not build: {:?}", report.diagnostics),
    };
    let case_b = json!({
        "fungsi": "usaha", "kompleksitas": "tidak_sederhana", "permanensi": "permanen",
        "jumlah_lantai": 5, "luas_lantai_total": "1250.5", "kepemilikan": "badan_usaha",
        "kegiatan": "baru",
        "prasarana": [{"jenis": "pagar", "volume": "120"}, {"jenis": "parkir", "volume": "300.5"}]
    });
    let mut g = c.benchmark_group("evaluate");
    g.throughput(Throughput::Elements(1));
    g.bench_function("pbg_levy_case_b", |b| {
        b.iter(|| run(&release, "pbg", Kind::Levy, &case_b, Language::Id))
    });
    g.bench_function("pbg_validate_case_b", |b| {
        b.iter(|| run(&release, "pbg", Kind::Validate, &case_b, Language::Id))
    });
    g.finish();
    let mut g = c.benchmark_group("release");
    g.sample_size(10);
    g.bench_function("build_sample_rules", |b| {
        b.iter(|| build(rules(), &limits).is_ok())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
