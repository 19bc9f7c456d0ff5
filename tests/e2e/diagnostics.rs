//! Snapshots of the diagnostics rule authors and admins read: `pintu check` for broken trees and
//! the entries of `/admin/reloads`. What varies from run to run (temporary paths, durations,
//! times, release ids) is replaced before comparing; the snapshots live in `e2e/snapshots/`.
//! A changed or new snapshot fails the test; review it with `cargo insta review`.

use std::time::Duration;

use pintu_tests::{run_pintu, uji_tree, write_file, write_tree, Server};
use serde_json::Value;

/// `pintu check` on a copy of the `uji` tree with `changes` written over it: (exit code, output)
/// with the run's duration and the folder's path replaced.
fn check_with(changes: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    for (path, text) in uji_tree("0.1") {
        write_file(&rules.join(path), &text);
    }
    write_tree(&rules, changes);
    let (code, out, err) = run_pintu(&["check", rules.to_str().unwrap()], dir.path());
    assert!(!err.contains("panicked"), "{err}");
    (code, out)
}

/// Replaces what varies between runs in `pintu check` output.
fn check_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\(\d+ ms\)", "([duration] ms)");
    settings.add_filter(r"release [0-9a-f]{16}", "release [id]");
    settings.set_prepend_module_to_snapshot(false);
    settings
}

#[test]
fn check_reports_bad_toml_at_its_line() {
    let (code, out) = check_with(&[(
        "uji/permit.toml",
        "name = \"Izin Uji\"\n\n[[fields]]\nname = \"x\"\ntype = \"decimal\n",
    )]);
    assert_eq!(code, 1, "{out}");
    check_settings().bind(|| insta::assert_snapshot!("check_bad_toml", out));
}

#[test]
fn check_reports_a_bad_field_at_its_declaration() {
    // The field's name also appears earlier, in the description: the problem is still located
    // at the field's own declaration.
    let toml = "name = \"Izin Uji\"\ndescription = \"isi `x` dengan luas\"\n\n[[fields]]\n\
                name = \"x\"\ntype = \"decimal\"\nrequired = true\n\n[[fields]]\nname = \"jenis\"\n\
                type = \"enum\"\n\n[params]\nrate = \"0.1\"\n";
    let (code, out) = check_with(&[("uji/permit.toml", toml)]);
    assert_eq!(code, 1, "{out}");
    check_settings().bind(|| insta::assert_snapshot!("check_bad_field", out));
}

#[test]
fn check_shows_a_failing_fixture_with_expected_and_actual() {
    let (code, out) = check_with(&[(
        "uji/tests/salah.json",
        r#"{"data": {"x": "7"}, "expect": {"total": "7"}}"#,
    )]);
    assert_eq!(code, 1, "{out}");
    check_settings().bind(|| insta::assert_snapshot!("check_failing_fixture", out));
}

#[test]
fn check_locates_a_script_error() {
    let levy = "fn levy(data, params) {\n    let amount = data.x * decimal(params.rate);\n    \
                #{ items: [#{ code: \"uji\", label: \"Retribusi\", amount: amount + \"satu\" }] }\n}\n";
    let (code, out) = check_with(&[("uji/levy.rhai", levy)]);
    assert_eq!(code, 1, "{out}");
    check_settings().bind(|| insta::assert_snapshot!("check_script_error", out));
}

/// `uji` with a flow: two steps, the first guarded by `ada_x` of `flow.rhai`, the second
/// issuing the permit number; `extra` is appended to `permit.toml`.
fn uji_with_flow(extra: &str) -> String {
    format!(
        "name = \"Izin Uji\"\n\n[[fields]]\nname = \"x\"\ntype = \"decimal\"\nrequired = true\n\
         greater_than = \"0\"\n\n[params]\nrate = \"0.1\"\n\n[numbering]\nregistration = \"REG/UJI/{{YYYY}}/{{NNNN}}\"\n\
         permit = \"503/{{NNNN}}/UJI/{{MM}}/{{YYYY}}\"\n\n[[flow]]\nstep = \"periksa\"\nlabel = \"Periksa\"\n\
         role = \"front_office\"\nsla_days = 1\nguard = \"ada_x\"\n\n[[flow]]\nstep = \"tetapkan\"\n\
         label = \"Tetapkan\"\nrole = \"kepala_dinas\"\neffects = [\"issue_permit\"]\n{extra}"
    )
}

const UJI_GUARD: &str =
    "fn ada_x(app, params) {\n    if \"x\" in app.data { () } else { \"x belum diisi\" }\n}\n";

#[test]
fn check_reports_an_inconsistent_flow_numbering_and_calendar_at_their_keys() {
    let extra = "\n[[flow]]\nstep = \"periksa\"\nlabel = \"Lagi\"\nrole = \"kasir\"\nsla_days = 0\n\
                 effects = [\"assess_levy\"]\nguard = \"tidak_ada\"\nreturns_to = [\"serahkan\"]\n\n\
                 [numbering.perpanjangan]\npermit = \"503/{NNNN/UJI-P\"\n";
    let (code, out) = check_with(&[
        ("uji/permit.toml", &uji_with_flow(extra)),
        ("uji/flow.rhai", UJI_GUARD),
        (
            "calendar.toml",
            "weekend = [\"saturday\", \"minggu\"]\n\n[[holiday]]\ndate = \"2026-02-30\"\nname = \"Tidak ada\"\n",
        ),
    ]);
    assert_eq!(code, 1, "{out}");
    check_settings().bind(|| insta::assert_snapshot!("check_inconsistent_flow", out));
}

#[test]
fn check_shows_a_failing_guard_fixture_with_expected_and_actual() {
    let (code, out) = check_with(&[
        ("uji/permit.toml", &uji_with_flow("")),
        ("uji/flow.rhai", UJI_GUARD),
        (
            "uji/tests/penjaga.json",
            r#"{"guard": "ada_x", "application": {"data": {}}, "expect": {"allowed": true}}"#,
        ),
    ]);
    assert_eq!(code, 1, "{out}");
    check_settings().bind(|| insta::assert_snapshot!("check_failing_guard_fixture", out));
}

/// The startup entry of an accepted folder and the entry of a rejected change, as
/// `/admin/reloads` lists them, with times, durations and ids replaced.
#[tokio::test]
async fn reload_entries_read_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    for (path, text) in uji_tree("0.1") {
        write_file(&rules.join(path), &text);
    }
    let s = Server::start(&rules, &dir.path().join("data"), &[]);
    let good = s
        .wait_for_new_release(None, Duration::from_secs(60))
        .await
        .0;
    // A field without a type, and a fixture that now fails.
    write_file(
        &rules.join("uji/permit.toml"),
        "name = \"Izin Uji\"\n\n[[fields]]\nname = \"x\"\ntype = \"decimal\"\nrequired = true\n\
         greater_than = \"0\"\n\n[[fields]]\nname = \"zona\"\ntype = \"list\"\n\n[params]\n\
         rate = \"0.1\"\n",
    );
    let rejected = wait_for_rejected(&s).await;
    let (_, v) = s.admin_get("/admin/reloads").await;
    let list = v["reloads"].as_array().unwrap();
    let startup = list.last().unwrap().clone();
    assert_eq!(startup["trigger"], "startup", "{v}");

    // As text: with exact numbers (`arbitrary_precision`) serde_json's values do not go
    // through insta's own serializer as plain numbers. The served release is named as such,
    // any other id as another release, so the snapshot still says which one an entry means.
    let text = |entry: &Value| {
        serde_json::to_string_pretty(entry)
            .unwrap()
            .replace(&good, "[the good release]")
    };
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(r#""at": "[^"]*""#, r#""at": "[at]""#);
    settings.add_filter(r#""duration_ms": \d+"#, r#""duration_ms": "[duration_ms]""#);
    settings.add_filter(r#""seq": \d+"#, r#""seq": "[seq]""#);
    settings.add_filter(r"\b[0-9a-f]{16}\b", "[another release]");
    settings.bind(|| {
        insta::assert_snapshot!("reload_startup_accepted", text(&startup));
        insta::assert_snapshot!("reload_rejected_change", text(&rejected));
    });
}

/// Polls `/admin/reloads` until an entry is rejected; returns it.
async fn wait_for_rejected(s: &Server) -> Value {
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let (_, v) = s.admin_get("/admin/reloads").await;
        let rejected = v["reloads"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["accepted"] == false);
        if let Some(r) = rejected {
            return r.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no rejected reload within 60 s; log:\n{}", s.log());
}
