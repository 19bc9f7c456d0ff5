//! Hot reload: good changes go live, broken ones never do and say why, rollback, and restart
//! from the store when the folder is broken.

use std::time::Duration;

use pintu::release::SourceTree;
use pintu::store::records::{ActivationRecord, PinRecord, ReleaseRecord};
use pintu::store::{Op, Store};
use pintu_tests::{uji_server, uji_tree, write_file, write_slow_permit, write_uji, Server};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn levy_total(s: &Server) -> String {
    let (status, v) = s
        .post("/v1/permits/uji/levy", json!({"data": {"x": 100}}))
        .await;
    assert_eq!(status, 200, "{v}");
    v["total"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn saved_changes_go_live_and_broken_ones_never_do() {
    let (_dir, s) = uji_server("0.1");
    let rules = s.rules.clone();
    let first = s.release().await.unwrap();
    assert_eq!(levy_total(&s).await, "10");

    // A good change, saved the way editors save (temp file + rename).
    write_uji(&rules, "0.2");
    let (second, took) = s.wait_for_new_release(Some(&first), WAIT).await;
    println!("reload latency (save → served): {} ms", took.as_millis());
    assert_eq!(levy_total(&s).await, "20");

    // A syntax error: rejected, still serving the second release, reason located.
    write_file(
        &rules.join("uji/levy.rhai"),
        "fn levy(data, params) {\n    let amount = data.x * ;\n}\n",
    );
    let reloads = s.wait_for_reloads(3, WAIT).await;
    let rejected = &reloads[0];
    assert_eq!(rejected["accepted"], false, "{rejected}");
    let d = &rejected["diagnostics"][0];
    assert_eq!(d["file"], "uji/levy.rhai");
    assert_eq!(d["line"], 2);
    assert!(d["column"].as_u64().unwrap() > 0);
    assert!(
        d["message"].as_str().unwrap().contains("syntax error"),
        "{d}"
    );
    assert_eq!(s.release().await.as_deref(), Some(second.as_str()));
    assert_eq!(levy_total(&s).await, "20");

    // A change that compiles but breaks a fixture: rejected with expected vs actual.
    write_file(&rules.join("uji/levy.rhai"), pintu_tests::UJI_LEVY);
    write_file(
        &rules.join("uji/tests/angka.json"),
        r#"{"data": {"x": "3"}, "expect": {"total": "0.9"}}"#,
    );
    let reloads = s.wait_for_reloads(4, WAIT).await;
    let rejected = &reloads[0];
    assert_eq!(rejected["accepted"], false, "{rejected}");
    let d = &rejected["diagnostics"][0];
    assert_eq!(d["file"], "uji/tests/angka.json");
    assert_eq!(d["message"], "expected total 0.9, got 0.6");
    assert_eq!(d["expected"], "0.9");
    assert_eq!(d["actual"]["total"], "0.6");
    assert_eq!(levy_total(&s).await, "20");

    // Fix the fixture: the tree now builds and goes live.
    write_file(
        &rules.join("uji/tests/angka.json"),
        r#"{"data": {"x": "3"}, "expect": {"total": "0.6"}}"#,
    );
    let (third, _) = s.wait_for_new_release(Some(&second), WAIT).await;
    assert_ne!(third, first);

    // Roll back to the first release.
    let (status, v) = s
        .admin_post(&format!("/admin/releases/{first}/activate"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["unchanged"], false, "{v}");
    assert!(v["report"]["duration_ms"].is_u64(), "{v}");
    assert_eq!(v["report"]["duration"], v["report"]["duration_ms"], "{v}");
    assert_eq!(s.release().await.as_deref(), Some(first.as_str()));
    assert_eq!(levy_total(&s).await, "10");
    // Activating the release that is already active changes nothing, and says so.
    let (status, v) = s
        .admin_post(&format!("/admin/releases/{first}/activate"), json!({}))
        .await;
    assert_eq!((status, &v["unchanged"]), (200, &json!(true)), "{v}");
    let (status, v) = s
        .admin_post("/admin/releases/0000000000000000/activate", json!({}))
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("unknown_release"))
    );

    // A manual reload picks the folder up again.
    let (status, v) = s.admin_post("/admin/reload", json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.release().await.as_deref(), Some(third.as_str()));

    let (_, r) = s.admin_get("/admin/releases").await;
    assert_eq!(r["releases"].as_array().unwrap().len(), 3, "{r}");
    let (_, a) = s.admin_get("/admin/audit").await;
    let actions: Vec<&str> = a["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["reload", "activate", "activate"]);
}

/// `uji/permit.toml` with the levy's rate `rate`.
fn uji_permit(rate: &str) -> String {
    let tree = uji_tree(rate);
    let (_, text) = tree.iter().find(|(p, _)| p == "uji/permit.toml").unwrap();
    text.clone()
}

/// Waits for the save to go live and checks it went live whole: one new reload record, accepted
/// (a burst cut between the save's events would first build the folder half-saved: without
/// `permit.toml`, or with half of it), and the levy at the new rate.
async fn goes_live_as_one_release(s: &Server, before: &str, total: &str) -> String {
    let records = reload_count(s).await;
    let (release, _) = s.wait_for_new_release(Some(before), WAIT).await;
    let (_, v) = s.admin_get("/admin/reloads?limit=1000").await;
    let list = v["reloads"].as_array().unwrap();
    assert_eq!(list.len(), records + 1, "one save, one reload: {list:#?}");
    assert_eq!(list[0]["accepted"], true, "{}", list[0]);
    assert_eq!(levy_total(s).await, total);
    release
}

#[tokio::test]
async fn each_way_editors_save_a_file_goes_live_as_one_release() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_uji(&rules, "0.1");
    // The quiet period absorbs this test process being paused between two of its own writes
    // on a loaded machine; an editor does them within microseconds.
    let config = dir.path().join("pintu.toml");
    std::fs::write(&config, "[limits]\nreload_debounce_ms = 300\n").unwrap();
    let s = Server::start(
        &rules,
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let first = s.release().await.unwrap();
    let permit = rules.join("uji/permit.toml");

    // Vim, Emacs: the original renamed to a backup, the new text written, the backup removed.
    let backup = rules.join("uji/permit.toml~");
    std::fs::rename(&permit, &backup).unwrap();
    std::fs::write(&permit, uji_permit("0.2")).unwrap();
    std::fs::remove_file(&backup).unwrap();
    let second = goes_live_as_one_release(&s, &first, "20").await;

    // Written in place: truncated, then written in two parts.
    let text = uji_permit("0.3");
    let (head, tail) = text.split_at(text.len() / 2);
    let mut file = std::fs::File::create(&permit).unwrap();
    std::io::Write::write_all(&mut file, head.as_bytes()).unwrap();
    std::io::Write::flush(&mut file).unwrap();
    std::io::Write::write_all(&mut file, tail.as_bytes()).unwrap();
    drop(file);
    let third = goes_live_as_one_release(&s, &second, "30").await;

    // A temporary file renamed over the original.
    write_file(&permit, &uji_permit("0.4"));
    goes_live_as_one_release(&s, &third, "40").await;
}

#[tokio::test]
async fn restart_with_a_broken_folder_serves_the_last_good_release() {
    let (_dir, s) = uji_server("0.3");
    let (rules, data) = (s.rules.clone(), s.data.clone());
    let good = s.release().await.unwrap();
    assert_eq!(levy_total(&s).await, "30");
    assert_eq!(s.terminate(), Some(0));

    write_file(
        &rules.join("uji/permit.toml"),
        "name = \"Izin Uji\"\n[[fields]\n",
    );
    let s = Server::start(&rules, &data, &[]);
    assert_eq!(s.release().await.as_deref(), Some(good.as_str()));
    assert_eq!(levy_total(&s).await, "30");
    assert!(
        s.log().contains("serving the last good release"),
        "{}",
        s.log()
    );
    // The newest entry is the folder's failure, naming what still serves; the restore of the
    // stored release before it says it is a fallback.
    let (_, reloads) = s.admin_get("/admin/reloads?limit=1").await;
    let latest = &reloads["reloads"][0];
    assert_eq!(latest["accepted"], false, "{reloads}");
    assert_eq!(latest["trigger"], "startup");
    assert_eq!(latest["active"], good.as_str());
    assert_eq!(latest["diagnostics"][0]["file"], "uji/permit.toml");
    assert_eq!(latest["diagnostics"][0]["line"], 2);
    let (_, reloads) = s.admin_get("/admin/reloads").await;
    let restore = &reloads["reloads"][1];
    assert_eq!(restore["accepted"], true, "{reloads}");
    assert_eq!(restore["release"], good.as_str());
    assert!(
        restore["note"].as_str().unwrap().contains("does not build"),
        "{restore}"
    );
    // Health is honest: serving, but not the folder.
    let (status, h) = s.get("/health").await;
    assert_eq!(
        (status, h["status"].as_str()),
        (200, Some("degraded")),
        "{h}"
    );
    assert_eq!(h["release"], good.as_str());
    assert!(
        h["reason"].as_str().unwrap().contains("uji/permit.toml:2:"),
        "{h}"
    );

    // Fixing the folder back to the served content: healthy again, and the record says why.
    write_uji(&rules, "0.3");
    let reloads = s.wait_for_reloads(4, WAIT).await;
    let back = &reloads[0];
    assert_eq!(
        (&back["accepted"], &back["unchanged"]),
        (&json!(true), &json!(true)),
        "{back}"
    );
    assert_eq!(back["release"], good.as_str());
    assert!(
        back["note"]
            .as_str()
            .unwrap()
            .contains("equals the active release"),
        "{back}"
    );
    let (status, h) = s.get("/health").await;
    assert_eq!((status, h["status"].as_str()), (200, Some("ok")), "{h}");
}

#[tokio::test]
async fn a_broken_save_makes_health_degraded_until_the_file_is_put_back() {
    let (_dir, s) = uji_server("0.1");
    let rules = s.rules.clone();
    let good = s.release().await.unwrap();
    let permit = rules.join("uji/permit.toml");
    let original = std::fs::read_to_string(&permit).unwrap();
    write_file(&permit, "name = \"Izin Uji\"\n[[fields]\n");
    let reloads = s.wait_for_reloads(2, WAIT).await;
    assert_eq!(reloads[0]["accepted"], false, "{}", reloads[0]);
    assert_eq!(reloads[0]["active"], good.as_str(), "{}", reloads[0]);
    let (status, h) = s.get("/health").await;
    assert_eq!(
        (status, h["status"].as_str()),
        (200, Some("degraded")),
        "{h}"
    );
    assert_eq!(h["release"], good.as_str());

    write_file(&permit, &original);
    let reloads = s.wait_for_reloads(3, WAIT).await;
    assert_eq!(reloads[0]["unchanged"], true, "{}", reloads[0]);
    assert_eq!(reloads[0]["release"], good.as_str());
    let (status, h) = s.get("/health").await;
    assert_eq!((status, h["status"].as_str()), (200, Some("ok")), "{h}");
    assert_eq!(s.release().await.as_deref(), Some(good.as_str()));
}

#[tokio::test]
async fn a_forced_reload_rebuilds_a_tree_the_watcher_rejected() {
    let (_dir, s) = uji_server("0.1");
    let rules = s.rules.clone();
    write_file(
        &rules.join("uji/tests/angka.json"),
        r#"{"data": {"x": "3"}, "expect": {"total": "0.9"}}"#,
    );
    let reloads = s.wait_for_reloads(2, WAIT).await;
    assert_eq!(reloads[0]["accepted"], false, "{}", reloads[0]);

    // The same tree again, on an admin's request: built again, and the answer says why.
    let (status, v) = s.admin_post("/admin/reload", json!({})).await;
    assert_eq!(status, 422, "{v}");
    let d = &v["error"]["diagnostics"][0];
    assert_eq!(d["file"], "uji/tests/angka.json", "{v}");
    assert_eq!(d["message"], "expected total 0.9, got 0.3", "{v}");
    let (_, list) = s.admin_get("/admin/reloads").await;
    let list = list["reloads"].as_array().unwrap();
    assert_eq!(
        list.len(),
        3,
        "the forced reload is a new attempt: {list:?}"
    );
    assert!(list[0]["trigger"].as_str().unwrap().starts_with("token:"));
    assert_eq!(list[0]["fixtures_failed"], 1);

    // Once the folder is back to the active release, a forced reload says there was nothing to do.
    std::fs::remove_file(rules.join("uji/tests/angka.json")).unwrap();
    let reloads = s.wait_for_reloads(4, WAIT).await;
    assert_eq!(reloads[0]["unchanged"], true, "{}", reloads[0]);
    let (status, v) = s.admin_post("/admin/reload", json!({})).await;
    assert_eq!((status, &v["unchanged"]), (200, &json!(true)), "{v}");
    assert_eq!(reload_count(&s).await, 5);
}

async fn reload_count(s: &Server) -> usize {
    let (_, v) = s.admin_get("/admin/reloads?limit=1000").await;
    v["reloads"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_restart_with_an_unchanged_folder_does_not_claim_a_change() {
    let (_dir, s) = uji_server("0.1");
    let (rules, data) = (s.rules.clone(), s.data.clone());
    assert_eq!(s.terminate(), Some(0));
    let s = Server::start(&rules, &data, &[]);
    s.release().await.unwrap();
    let (_, r) = s.admin_get("/admin/releases").await;
    let reasons: Vec<&str> = r["activations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{r}");
    assert_eq!(reasons[0], "start-up: the rules folder is unchanged");
}

/// The newest entry of the reload log: an accepted start-up.
async fn startup_entry(s: &Server) -> serde_json::Value {
    let (_, v) = s.admin_get("/admin/reloads?limit=1").await;
    let latest = v["reloads"][0].clone();
    assert_eq!(latest["trigger"], "startup", "{v}");
    assert_eq!(latest["accepted"], true, "{v}");
    latest
}

#[tokio::test]
async fn a_restart_does_not_run_again_fixtures_that_passed_under_the_same_settings() {
    let (dir, s) = uji_server("0.1");
    let (rules, data) = (s.rules.clone(), s.data.clone());
    let first = startup_entry(&s).await;
    assert_eq!(first["passed_before"], false, "{first}");
    let fixtures = first["fixtures_passed"].as_u64().unwrap();
    assert!(fixtures > 0, "{first}");
    assert_eq!(s.terminate(), Some(0));

    // Same files, same binary, same settings: compiled, its fixtures counted, not run.
    let s = Server::start(&rules, &data, &[]);
    let again = startup_entry(&s).await;
    assert_eq!(again["passed_before"], true, "{again}");
    assert_eq!(again["fixtures_passed"], fixtures, "{again}");
    assert_eq!(again["fixtures_reused"], fixtures, "{again}");
    assert_eq!(levy_total(&s).await, "10");
    assert!(s.log().contains("not run again"), "{}", s.log());
    assert_eq!(s.terminate(), Some(0));

    // Another limit is another test condition: every fixture runs again.
    let config = dir.path().join("pintu.toml");
    std::fs::write(&config, "[limits]\nmax_operations = 123456\n").unwrap();
    let s = Server::start(&rules, &data, &["--config", config.to_str().unwrap()]);
    let retested = startup_entry(&s).await;
    assert_eq!(retested["passed_before"], false, "{retested}");
    assert_eq!(retested["fixtures_reused"], 0, "{retested}");
    assert_eq!(retested["fixtures_passed"], fixtures, "{retested}");
    assert_eq!(s.terminate(), Some(0));

    // A changed folder is another release: its fixtures run.
    write_uji(&rules, "0.2");
    let s = Server::start(&rules, &data, &[]);
    let changed = startup_entry(&s).await;
    assert_eq!(changed["passed_before"], false, "{changed}");
    assert_eq!(levy_total(&s).await, "20");
}

#[tokio::test]
async fn a_first_start_with_a_broken_folder_serves_nothing_but_answers() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_file(&rules.join("uji/permit.toml"), "name = 3\n");
    let s = Server::start(&rules, &dir.path().join("data"), &[]);
    let (status, v) = s.get("/health").await;
    assert_eq!((status, v["status"].as_str()), (503, Some("unavailable")));
    let (status, v) = s
        .post("/v1/permits/uji/levy", json!({"data": {"x": 1}}))
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("no_release"))
    );
    // Fixing the folder brings the service up without a restart.
    write_uji(&rules, "0.5");
    s.wait_for_new_release(None, WAIT).await;
    assert_eq!(levy_total(&s).await, "50");
}

#[tokio::test]
async fn a_rollback_survives_restart_until_the_folder_changes() {
    let (_dir, s) = uji_server("0.1");
    let (rules, data) = (s.rules.clone(), s.data.clone());
    let old = s.release().await.unwrap();
    write_uji(&rules, "0.2");
    let (new, _) = s.wait_for_new_release(Some(&old), WAIT).await;
    let (status, v) = s
        .admin_post(&format!("/admin/releases/{old}/activate"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.terminate(), Some(0));

    // The folder still holds the newer rules, but the admin's choice stands.
    let s = Server::start(&rules, &data, &[]);
    assert_eq!(
        s.release().await.as_deref(),
        Some(old.as_str()),
        "{}",
        s.log()
    );
    assert_eq!(levy_total(&s).await, "10");

    // A real change to the folder supersedes the rollback.
    write_uji(&rules, "0.3");
    let (newest, _) = s.wait_for_new_release(Some(&old), WAIT).await;
    assert_ne!(newest, new);
    assert_eq!(levy_total(&s).await, "30");
    assert_eq!(s.terminate(), Some(0));
    let s = Server::start(&rules, &data, &[]);
    assert_eq!(s.release().await.as_deref(), Some(newest.as_str()));
}

/// A data folder written before release ids were made of each file's hash: its releases keep
/// the ids they were stored under, and an admin's rollback stands while the folder stays as it
/// was when the rollback was made.
#[tokio::test]
async fn releases_and_a_rollback_stored_under_former_ids_outlive_the_change_of_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (rules, data) = (dir.path().join("rules"), dir.path().join("data"));
    let tree = |rate: &str| SourceTree::from_files(uji_tree(rate).into_iter().collect());
    let (old, new) = (tree("0.1"), tree("0.2"));
    let (old_id, new_id) = (old.former_id(), new.former_id());
    assert_ne!(old_id, old.id());
    {
        // What an earlier version left: both releases stored, the older one reactivated by an
        // admin while the folder held the newer, the folder named by its former id.
        let store = Store::open(&data, 64).unwrap();
        let release = |t: &SourceTree, id: &str| Op::Release {
            record: ReleaseRecord {
                id: id.to_owned(),
                created_at: chrono::Utc::now(),
                created_by: "startup".to_owned(),
                permits: vec!["uji".to_owned()],
                fixtures: 1,
                files: t.files().len(),
            },
            sources: t.files().clone(),
        };
        let activation = |id: &str, by: &str| {
            Op::Activate(ActivationRecord {
                release: id.to_owned(),
                at: chrono::Utc::now(),
                by: by.to_owned(),
                reason: "test".to_owned(),
            })
        };
        store
            .write(vec![
                release(&old, &old_id),
                activation(&old_id, "startup"),
                release(&new, &new_id),
                activation(&new_id, "watch"),
                activation(&old_id, "admin"),
                Op::Pin(Some(PinRecord {
                    release: old_id.clone(),
                    folder: new_id.clone(),
                })),
            ])
            .await
            .unwrap();
        store.close();
    }
    write_uji(&rules, "0.2");
    let s = Server::start(&rules, &data, &[]);
    assert_eq!(s.release().await, Some(old_id.clone()), "{}", s.log());
    assert_eq!(levy_total(&s).await, "10");
    // The pin now names the folder by today's id, which every reload compares; a restart keeps
    // the rollback.
    assert_eq!(s.terminate(), Some(0));
    {
        let store = Store::open(&data, 64).unwrap();
        let pin = store.pin().unwrap().unwrap();
        assert_eq!(
            (pin.release, pin.folder),
            (old_id.clone(), new.id().to_owned())
        );
        store.close();
    }
    let s = Server::start(&rules, &data, &[]);
    assert_eq!(s.release().await, Some(old_id.clone()), "{}", s.log());

    // The other stored release comes back under its stored id.
    let (status, v) = s
        .admin_post(&format!("/admin/releases/{new_id}/activate"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.release().await, Some(new_id.clone()));
    assert_eq!(levy_total(&s).await, "20");

    // A change to the folder is a release under today's id.
    write_uji(&rules, "0.3");
    let (newest, _) = s.wait_for_new_release(Some(&new_id), WAIT).await;
    assert_eq!(newest, tree("0.3").id());
    assert_eq!(levy_total(&s).await, "30");
}

/// `uji` with a one-step flow acting as `role`.
fn uji_with_role(role: &str) -> String {
    format!(
        "name = \"Izin Uji\"\n\n[[fields]]\nname = \"x\"\ntype = \"decimal\"\nrequired = true\n\
         greater_than = \"0\"\n\n[params]\nrate = \"0.1\"\n\n[[flow]]\nstep = \"bayar\"\n\
         label = \"Pembayaran\"\nrole = \"{role}\"\nsla_days = 2\n"
    )
}

/// Flows are checked against the roles of the office that serves them (`roles` in
/// `pintu.toml`), on start and on every reload; a flow naming a role the office does not have
/// is rejected with its location while the last good release keeps serving, and the calendar
/// reloads like any rule file.
#[tokio::test]
async fn flows_name_the_serving_offices_roles_and_the_calendar_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_uji(&rules, "0.1");
    write_file(&rules.join("uji/permit.toml"), &uji_with_role("kasir"));
    let config = dir.path().join("pintu.toml");
    write_file(&config, "roles = [\"front_office\", \"kasir\"]\n");
    let s = Server::start(
        &rules,
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let first = s.release().await.expect("the flow's role is the office's");
    let (status, v) = s.get("/v1/permits/uji").await;
    assert_eq!(
        (status, &v["flow"][0]["role"]),
        (200, &json!("kasir")),
        "{v}"
    );

    // `tim_teknis` is a default role, but not this office's.
    write_file(&rules.join("uji/permit.toml"), &uji_with_role("tim_teknis"));
    let reloads = s.wait_for_reloads(2, WAIT).await;
    let rejected = &reloads[0];
    assert_eq!(rejected["accepted"], false, "{rejected}");
    let d = &rejected["diagnostics"][0];
    assert_eq!(
        (&d["file"], &d["line"]),
        (&json!("uji/permit.toml"), &json!(15)),
        "{d}"
    );
    assert_eq!(
        d["message"],
        "step `bayar`: unknown role `tim_teknis` (the office's roles: admin, front_office, kasir)"
    );
    assert_eq!(s.release().await.as_deref(), Some(first.as_str()));

    // A calendar, while the flow is still broken: a new candidate, rejected for the flow.
    write_file(
        &rules.join("calendar.toml"),
        "weekend = [\"friday\"]\n[[holiday]]\ndate = \"2026-08-17\"\nname = \"Hari Kemerdekaan\"\n",
    );
    let reloads = s.wait_for_reloads(3, WAIT).await;
    assert_eq!(reloads[0]["accepted"], false, "{}", reloads[0]);
    // Back to the office's role: the release that goes live holds the calendar.
    write_file(&rules.join("uji/permit.toml"), &uji_with_role("kasir"));
    let (served, _) = s.wait_for_new_release(Some(&first), WAIT).await;
    assert_ne!(served, first, "the calendar is part of the release");
    // A broken calendar is rejected with its location.
    write_file(&rules.join("calendar.toml"), "weekend = [\"jumat\"]\n");
    let count = s.admin_get("/admin/reloads").await.1["reloads"]
        .as_array()
        .unwrap()
        .len();
    let reloads = s.wait_for_reloads(count + 1, WAIT).await;
    let d = &reloads[0]["diagnostics"][0];
    assert_eq!(d["file"], "calendar.toml", "{}", reloads[0]);
    assert_eq!((&d["line"], &d["column"]), (&json!(1), &json!(12)), "{d}");
    assert_eq!(s.release().await.as_deref(), Some(served.as_str()));
}

#[tokio::test]
async fn a_save_made_while_the_start_up_builds_goes_live_once_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_uji(&rules, "0.1");
    // Its fixtures make the start-up's build last long enough to save a file while it runs;
    // many short ones rather than a few long ones, each far inside the 1 s wall-clock limit
    // however busy the machine (at 1 000 000 loops one took over a second beside a build).
    write_slow_permit(&rules, 16, 200_000);
    let saved = rules.clone();
    // The save lands after the start-up has read the folder, while it tests what it read.
    let s = Server::start_acting_at(
        &rules,
        &dir.path().join("data"),
        &[],
        "start-up: read the rules folder",
        move || write_uji(&saved, "0.2"),
    );
    let reloads = s.wait_for_reloads(2, WAIT).await;
    let (startup, saved) = (&reloads[1], &reloads[0]);
    assert_eq!(
        (&startup["trigger"], &startup["accepted"]),
        (&json!("startup"), &json!(true)),
        "{startup}"
    );
    assert_eq!(
        (&saved["trigger"], &saved["accepted"]),
        (&json!("watch"), &json!(true)),
        "{saved}"
    );
    assert_eq!(levy_total(&s).await, "20");
    // The slow permit type did not change: reused, its fixtures not run again.
    assert_eq!(saved["fixtures_reused"], 16, "{saved}");
}
