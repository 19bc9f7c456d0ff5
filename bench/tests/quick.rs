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
    let expected = [
        (
            "PBG levy in-process (example B + 2 prasarana), median",
            "plain Rust levy",
        ),
        (
            "PBG levy in-process (example B + 2 prasarana), p99",
            "plain Rust levy",
        ),
        ("durable decision writes, 1 writer(s)", "SQLite"),
        ("durable decision writes, 1 writer(s)", "raw write + fsync"),
        ("durable decision writes, 16 writer(s)", "SQLite"),
        ("durable decision writes, 16 writer(s)", "raw write + fsync"),
        ("durable decision writes, 64 writer(s)", "SQLite"),
        ("durable decision writes, 64 writer(s)", "raw write + fsync"),
    ];
    assert_eq!(rows.len(), expected.len(), "rows:\n{stdout}");
    for (row, (what, baseline)) in rows.iter().zip(expected) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 5, "row {row:?}");
        assert_eq!(cells[0], what, "row {row:?}");
        assert!(cells[2].starts_with(baseline), "row {row:?}");
        // A ratio is a number followed by ×.
        let ratio = cells[4].split('×').next().unwrap();
        assert!(
            cells[4].contains('×') && ratio.trim().parse::<f64>().is_ok(),
            "row without a ratio: {row:?}"
        );
    }
}
