//! The command line: `check`, `token create`, graceful shutdown.

use pintu_tests::{run_pintu, write_file, write_uji, Server};

/// `pintu token create --role ROLE --data DATA`, run in `cwd`.
fn token_create(
    role: &str,
    data: &std::path::Path,
    cwd: &std::path::Path,
) -> (i32, String, String) {
    run_pintu(
        &[
            "token",
            "create",
            "--role",
            role,
            "--data",
            data.to_str().unwrap(),
        ],
        cwd,
    )
}

#[test]
fn check_prints_located_diagnostics_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_uji(&rules, "0.1");
    let (code, out, _) = run_pintu(&["check", rules.to_str().unwrap()], dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 permit types, 2 fixtures passed, 0 failed"),
        "{out}"
    );

    write_file(
        &rules.join("uji/levy.rhai"),
        "fn levy(data, params) {\n  nope + 1\n}\n",
    );
    write_file(
        &rules.join("uji/tests/salah.json"),
        r#"{"data": {"x": "1"}, "expect": {"valid": false}}"#,
    );
    let (code, out, _) = run_pintu(&["check", rules.to_str().unwrap()], dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("uji/levy.rhai:2:")),
        "{out}"
    );
    assert!(out.contains("problems"), "{out}");
}

#[test]
fn failing_fixture_shows_expected_and_actual() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_uji(&rules, "0.1");
    write_file(
        &rules.join("uji/tests/total.json"),
        r#"{"data": {"x": "7"}, "expect": {"total": "7"}}"#,
    );
    let (code, out, _) = run_pintu(&["check", rules.to_str().unwrap()], dir.path());
    assert_eq!(code, 1);
    assert!(
        out.contains("uji/tests/total.json:1:1: expected total 7, got 0.7"),
        "{out}"
    );
    assert!(out.contains("1 failed"), "{out}");
}

#[tokio::test]
async fn tokens_from_the_command_line_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    let data = dir.path().join("data");
    write_uji(&rules, "0.1");

    let (code, token, err) = token_create("admin", &data, dir.path());
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_owned();
    assert!(token.starts_with("pintu_"));
    let (code, _, err) = token_create("raja", &data, dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("unknown role `raja`"), "{err}");

    let s = Server::start(&rules, &data, &[]);
    // An admin exists already, so no admin.token file is written.
    assert!(!data.join("admin.token").exists());
    assert_eq!(s.get_as("/admin/releases", &token).await.0, 200);

    // While the server holds the database, the CLI says so instead of corrupting anything.
    let (code, _, err) = token_create("admin", &data, dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("in use by another pintu process"), "{err}");

    let r = s
        .http
        .post(s.url("/v1/permits/uji/levy"))
        .json(&serde_json::json!({"data": {"x": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let log_before = s.log();
    assert!(log_before.contains("listening on"), "{log_before}");
    let data_dir = s.data.clone();
    assert_eq!(s.terminate(), Some(0), "SIGTERM ends the server cleanly");

    // The acknowledged decision survived the shutdown.
    let s = Server::start(&rules, &data_dir, &[]);
    let (_, v) = s.get_as("/admin/decisions", &token).await;
    assert_eq!(v["decisions"].as_array().unwrap().len(), 1, "{v}");
}

#[test]
fn check_warns_about_permit_types_without_fixtures_but_passes() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_uji(&rules, "0.1");
    write_file(
        &rules.join("lain/permit.toml"),
        "name = \"Izin Lain\"\n[[fields]]\nname = \"y\"\ntype = \"text\"\n",
    );
    let (code, out, _) = run_pintu(&["check", rules.to_str().unwrap()], dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("lain/permit.toml:1:1: warning:") && l.contains("no fixtures")),
        "{out}"
    );
    assert!(!out.contains("uji/permit.toml:1:1: warning"), "{out}");
    assert!(out.contains("1 warning"), "{out}");
}
