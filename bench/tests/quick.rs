#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Runs the harness end to end in `--quick` mode: it must finish and print every row of its
//! table with a ratio. Timings are never asserted; a quick run's figures mean nothing.

use std::process::Command;

#[test]
fn quick_run_prints_every_row_with_a_ratio() {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pintu-bench"))
        .args(["--quick", "--work-dir"])
        .arg(work.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "harness failed:\n{stdout}\n{stderr}");
    println!("{stdout}");

    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| measurement"))
        .collect();
    let native = "native endpoint";
    let mut expected: Vec<(String, &str)> = vec![
        (
            "PBG levy in-process (example B + 2 prasarana), median".into(),
            "plain Rust levy",
        ),
        (
            "PBG levy in-process (example B + 2 prasarana), p99".into(),
            "plain Rust levy",
        ),
    ];
    for q in ["median", "p99"] {
        expected.push((
            format!(
                "PBG levy formula alone, one Rhai function (no checks, labels, trace or helpers), {q}"
            ),
            "plain Rust levy",
        ));
    }
    for q in ["p50", "p99"] {
        expected.push((
            format!("connector call: instantiate + handle-event (echo, kv history of 300), {q}"),
            "the same logic in native Rust",
        ));
    }
    for clients in [1, 16, 64] {
        let what = format!("HTTP levy (example B + 2 prasarana), {clients} client(s)");
        for figure in ["throughput", "p50 latency", "p99 latency"] {
            expected.push((format!("{what}, {figure}"), native));
        }
    }
    // --quick generates 20 permit types instead of 1,000, and says so in the row.
    let big = "20 generated permit types (--quick)";
    for baseline in ["the same, 3 sample permit types", "target 2 s"] {
        expected.push((format!("cold start to /health ok, {big}"), baseline));
    }
    for baseline in ["cold start", "target 2 s"] {
        expected.push((
            format!("restart on the same data and rules to /health ok, {big}"),
            baseline,
        ));
    }
    for baseline in ["the same, 3 sample permit types", "target 300 MB"] {
        expected.push((format!("RSS after start, {big}"), baseline));
    }
    for tree in ["3 sample permit types", big] {
        for q in ["p50", "p99"] {
            expected.push((
                format!("reload, save → /health new release, {tree}, {q}"),
                "target 150 ms",
            ));
        }
    }
    for writers in [1, 16, 64] {
        let what = format!("durable decision writes, {writers} writer(s)");
        expected.push((what.clone(), "SQLite"));
        expected.push((what, "raw write + fsync"));
    }
    for clients in [1, 16, 64] {
        expected.push((
            format!("durable submissions (POST /v1/applications), {clients} client(s)"),
            "SQLite WAL, synchronous=FULL: counter + application + event",
        ));
    }
    assert_eq!(rows.len(), expected.len(), "rows:\n{stdout}");
    for (row, (what, baseline)) in rows.iter().zip(&expected) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 5, "row {row:?}");
        assert_eq!(cells[0], what, "row {row:?}");
        assert!(!cells[1].is_empty(), "row without a figure: {row:?}");
        assert!(cells[2].starts_with(baseline), "row {row:?}");
        // Failed requests are counted and shown (how many is a figure, not asserted).
        if what.contains("HTTP levy") && what.ends_with("throughput") {
            for cell in [cells[1], cells[3]] {
                assert!(
                    cell.contains(" ok, ")
                        && cell.contains(" non-2xx, ")
                        && cell.ends_with(" errors)"),
                    "throughput without its request counts: {row:?}"
                );
            }
        }
        // Submissions count what was created and what failed, like the levy throughput.
        if what.starts_with("durable submissions") {
            assert!(
                cells[1].contains(" created, ")
                    && cells[1].contains(" non-2xx, ")
                    && cells[1].ends_with(" errors)"),
                "submissions without their request counts: {row:?}"
            );
        }
        if what.starts_with("reload") {
            assert!(
                cells[1].contains("levy requests failed"),
                "reload without its failed-request count: {row:?}"
            );
        }
        // A ratio is a number followed by ×.
        let ratio = cells[4].split('×').next().unwrap();
        assert!(
            cells[4].contains('×') && ratio.trim().parse::<f64>().is_ok(),
            "row without a ratio: {row:?}"
        );
    }
}

#[test]
fn only_measures_the_groups_asked_for_and_names_the_groups_when_one_is_unknown() {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let run = |only: &str| {
        Command::new(env!("CARGO_BIN_EXE_pintu-bench"))
            .args(["--quick", "--only", only, "--work-dir"])
            .arg(work.path())
            .output()
            .unwrap()
    };
    let out = run("levy");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| measurement"))
        .collect();
    assert_eq!(
        rows.len(),
        4,
        "only the four in-process levy rows:\n{stdout}"
    );
    assert!(rows.iter().all(|r| r.starts_with("| PBG levy ")));
    // The breakdown by stage counts each script's engine operations.
    let stages = stdout
        .lines()
        .find(|l| l.starts_with("- in-process levy by stage"))
        .unwrap_or_else(|| panic!("no breakdown by stage:\n{stdout}"));
    for stage in [
        "validate.rhai alone",
        "levy.rhai alone",
        "the formula alone",
    ] {
        assert!(
            stages.contains(stage) && stages.contains("engine operations)"),
            "{stages}"
        );
    }

    let out = run("levy,speed");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown group \"speed\"") && stderr.contains("submissions"),
        "{stderr}"
    );
}
