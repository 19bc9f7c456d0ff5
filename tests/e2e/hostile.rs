//! Hostile scripts stop at their limits with a clear error while the server keeps answering.

use pintu_tests::{write_tree, Server};
use serde_json::json;

const PERMIT: &str = r#"name = "Izin Nakal"
[[fields]]
name = "mode"
type = "enum"
values = ["aman", "loop", "rekursi", "string", "array", "peta"]
required = true
"#;

// Every hostile branch is reachable only by input no fixture sends, as a careless rule would be.
const LEVY: &str = r#"fn deep(n) { deep(n + 1) }

fn levy(data, params) {
    if data.mode == "loop" {
        let i = 0;
        loop { i += 1; }
    }
    if data.mode == "rekursi" { deep(0); }
    if data.mode == "string" {
        let s = "x";
        loop { s += s; }
    }
    if data.mode == "array" {
        let a = [];
        loop { a.push(1); }
    }
    if data.mode == "peta" {
        let m = #{};
        let i = 0;
        loop { m[`k${i}`] = i; i += 1; }
    }
    #{ items: [#{ code: "biaya", label: "Biaya", amount: 1000 }] }
}
"#;

/// A temp folder holding `rules/nakal`, whose one fixture takes the harmless path.
fn nakal_rules() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_tree(
        &rules,
        &[
            ("nakal/permit.toml", PERMIT),
            ("nakal/levy.rhai", LEVY),
            (
                "nakal/tests/aman.json",
                r#"{"data": {"mode": "aman"}, "expect": {"total": "1000"}}"#,
            ),
        ],
    );
    (dir, rules)
}

#[tokio::test]
async fn hostile_scripts_fail_within_limits() {
    let (dir, rules) = nakal_rules();
    let s = Server::start(&rules, &dir.path().join("data"), &[]);
    for (mode, needle) in [
        ("loop", "limit"),
        ("rekursi", "call depth"),
        ("string", "size limit"),
        ("array", "size limit"),
        // Growing a map is slow enough that the clock may stop it before its size limit.
        ("peta", "limit"),
    ] {
        let started = std::time::Instant::now();
        let (status, v) = s
            .post("/v1/permits/nakal/levy", json!({"data": {"mode": mode}}))
            .await;
        println!(
            "hostile `{mode}` stopped after {} ms",
            started.elapsed().as_millis()
        );
        assert_eq!(status, 500, "{mode}: {v}");
        assert_eq!(v["error"]["code"], "script_limit", "{mode}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{mode}: {message}");
        assert!(message.contains("nakal/levy.rhai:"), "{mode}: {message}");
        // The server still answers, with the same release.
        let (status, ok) = s
            .post("/v1/permits/nakal/levy", json!({"data": {"mode": "aman"}}))
            .await;
        assert_eq!((status, ok["total"].as_str()), (200, Some("1000")));
    }
    let (_, d) = s
        .admin_get("/admin/decisions?permit=nakal&limit=1000")
        .await;
    let limited = d["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["output"]["error"].is_string())
        .count();
    assert_eq!(limited, 5, "every failed evaluation is in the decision log");
}

#[tokio::test]
async fn wall_clock_limit_from_pintu_toml() {
    let (dir, rules) = nakal_rules();
    let config = dir.path().join("pintu.toml");
    // No operation limit: only the clock can stop the loop.
    std::fs::write(
        &config,
        "[limits]\nmax_operations = 0\nscript_timeout_ms = 200\n",
    )
    .unwrap();
    let s = Server::start(
        &rules,
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let started = std::time::Instant::now();
    let (status, v) = s
        .post("/v1/permits/nakal/levy", json!({"data": {"mode": "loop"}}))
        .await;
    println!(
        "wall-clock limit of 200 ms stopped the loop after {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(status, 500);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wall-clock"),
        "{v}"
    );
    assert_eq!(s.get("/health").await.0, 200);
}
