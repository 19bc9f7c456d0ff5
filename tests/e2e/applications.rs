//! Applications over HTTP, a first smoke: a PBG application submitted by the front office and
//! carried through Kota Metro's flow by users in each role, with its numbers, history and
//! events. The large suites (every refusal, numbering under load, listing under
//! concurrent inserts, crashes) are `flows.rs`, `numbering.rs`, `listing.rs`, `app_crash.rs`.

use pintu_tests::{copy_dir, into_json, repo_root, Server};
use serde_json::{json, Value};

fn serve(dir: &std::path::Path) -> Server {
    let rules = dir.join("rules");
    copy_dir(&repo_root().join("rules"), &rules);
    Server::start(&rules, &dir.join("data"), &[])
}

/// A user `username` holding `role` for every permit type, a token of theirs, and the actor
/// name their changes carry.
async fn user(s: &Server, username: &str, role: &str) -> (String, String) {
    let (status, v) = s
        .admin_post(
            "/admin/users",
            json!({ "username": username, "name": username, "roles": [role], "permits": ["*"] }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = s
        .admin_post(&format!("/admin/users/{username}/tokens"), json!({}))
        .await;
    assert_eq!(status, 201, "{v}");
    (v["token"].as_str().unwrap().to_owned(), username.to_owned())
}

fn pbg_data() -> Value {
    let text =
        std::fs::read_to_string(repo_root().join("rules/pbg/tests/a_hunian_tidak_sederhana.json"))
            .unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    fixture["data"].clone()
}

async fn put_as(s: &Server, path: &str, token: &str, body: Value) -> (u16, Value) {
    let r = s
        .http
        .put(s.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    into_json(r).await
}

fn roman(month: u32) -> &'static str {
    [
        "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII",
    ][month as usize - 1]
}

#[tokio::test]
async fn a_pbg_application_goes_through_the_flow_with_each_role() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path());
    let (fo, fo_actor) = user(&s, "fo.ani", "front_office").await;
    let (bo, _) = user(&s, "bo.budi", "back_office").await;
    let (tt, _) = user(&s, "tt.citra", "tim_teknis").await;
    let (kb, _) = user(&s, "kabid.dedi", "kabid_pelayanan").await;
    let (kd, kd_actor) = user(&s, "kadis.eka", "kepala_dinas").await;

    let (status, app) = s
        .post_as(
            "/v1/applications",
            &fo,
            json!({
                "permit": "pbg",
                "applicant": { "name": "Siti Aminah", "nik": "1871010101010001" },
                "data": pbg_data(),
            }),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    assert_eq!(app["status"], "in_progress");
    assert_eq!(app["step"], "pendaftaran");
    assert_eq!(app["kind"], "baru");
    assert_eq!(app["version"], 1);
    assert_eq!(app["permit_number"], Value::Null);
    let on = app["submitted_on"].as_str().unwrap().to_owned();
    let year = &on[..4];
    assert_eq!(
        app["registration_number"],
        format!("REG/PBG/{year}/00001"),
        "{app}"
    );
    assert!(app["step_due_on"].as_str().unwrap() > on.as_str(), "{app}");

    // The wrong role is refused, naming the step's role, and nothing changes.
    let (status, v) = s
        .post_as(
            &format!("/v1/applications/{id}/transitions"),
            &bo,
            json!({ "action": "advance", "version": 1 }),
        )
        .await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "forbidden");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("front_office"),
        "{v}"
    );

    // Each step by its role; the back office corrects the data on the way.
    let steps = [
        (&fo, "entri_data"),
        (&bo, "konsultasi_teknis"),
        (&tt, "verifikasi_kabid"),
        (&kb, "penetapan"),
        (&kd, "penyerahan"),
    ];
    let mut version = 1;
    for (token, next) in steps {
        let (status, v) = s
            .post_as(
                &format!("/v1/applications/{id}/transitions"),
                token,
                json!({ "action": "advance", "version": version, "note": "lanjut" }),
            )
            .await;
        assert_eq!(status, 200, "to {next}: {v}");
        assert_eq!(v["step"], next);
        version = v["version"].as_u64().unwrap();
    }
    // A stale version is a conflict.
    let (status, v) = s
        .post_as(
            &format!("/v1/applications/{id}/transitions"),
            &fo,
            json!({ "action": "advance", "version": 1 }),
        )
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "conflict");

    let (status, v) = s.get_as(&format!("/v1/applications/{id}"), &kd).await;
    assert_eq!(status, 200);
    let month: u32 = on[5..7].parse().unwrap();
    assert_eq!(
        v["permit_number"],
        format!("503/0001/PBG/DPMPTSP/{}/{year}", roman(month)),
        "{v}"
    );
    // The last step completes it.
    let (status, done) = s
        .post_as(
            &format!("/v1/applications/{id}/transitions"),
            &fo,
            json!({ "action": "advance", "version": version }),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["step"], Value::Null);
    assert_eq!(done["step_due_on"], Value::Null);
    let actions: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "submitted",
            "advanced",
            "advanced",
            "advanced",
            "advanced",
            "advanced",
            "completed"
        ]
    );
    assert_eq!(done["history"][1]["by"], fo_actor.as_str());
    assert_eq!(done["history"][1]["note"], "lanjut");
    // Completed: no more edits.
    let (status, v) = put_as(
        &s,
        &format!("/v1/applications/{id}/data"),
        &bo,
        json!({ "data": pbg_data() }),
    )
    .await;
    assert_eq!(status, 422, "{v}");

    // The outbox has every change, in order, without gaps.
    let (status, ev) = s.admin_get("/admin/events?after=0").await;
    assert_eq!(status, 200, "{ev}");
    let events = ev["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "application.submitted",
            "application.advanced",
            "application.advanced",
            "application.advanced",
            "application.advanced",
            "application.advanced",
            "permit.issued",
            "application.completed"
        ]
    );
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<u64>>());
    assert_eq!(ev["next"], 8);
    assert!(events.iter().all(|e| e["application"] == id.as_str()));
    assert_eq!(events[6]["data"]["permit_number"], done["permit_number"]);
    assert_eq!(events[0]["data"]["by"], fo_actor.as_str());
    assert_eq!(events[6]["data"]["by"], kd_actor.as_str());
    let (_, later) = s.admin_get("/admin/events?after=8").await;
    assert_eq!(later["events"].as_array().unwrap().len(), 0);
    assert_eq!(later["next"], 8);

    // Listed, newest first, by filter.
    let (status, list) = s
        .get_as("/v1/applications?status=completed&permit=pbg", &tt)
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["applications"][0]["id"], id.as_str());
    assert_eq!(list["next_cursor"], Value::Null);
    let (_, list) = s.get_as("/v1/applications?status=in_progress", &tt).await;
    assert_eq!(list["applications"].as_array().unwrap().len(), 0);
    let (_, found) = s.get_as("/v1/applications?q=siti", &tt).await;
    assert_eq!(found["applications"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_draft_is_stored_incomplete_then_submitted_and_refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path());
    let (fo, _) = user(&s, "fo.ani", "front_office").await;
    let (bo, _) = user(&s, "bo.budi", "back_office").await;
    let mut partial = pbg_data();
    partial.as_object_mut().unwrap().remove("luas_lantai_total");
    let (status, draft) = s
        .post_as(
            "/v1/applications",
            &fo,
            json!({ "permit": "pbg", "draft": true, "applicant": { "name": "Budi" }, "data": partial }),
        )
        .await;
    assert_eq!(status, 201, "{draft}");
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["registration_number"], Value::Null);
    assert_eq!(draft["step"], Value::Null);
    let id = draft["id"].as_str().unwrap().to_owned();

    // A present field of the wrong type is refused even in a draft.
    let mut wrong = partial.clone();
    wrong["jumlah_lantai"] = json!("dua");
    let (status, v) = put_as(
        &s,
        &format!("/v1/applications/{id}/data"),
        &bo,
        json!({ "data": wrong }),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["errors"][0]["field"], "jumlah_lantai", "{v}");

    // Submitting the incomplete draft names what is missing.
    let (status, v) = s
        .post_as(&format!("/v1/applications/{id}/submit"), &fo, json!({}))
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "invalid_data");
    assert!(
        v["error"]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == "luas_lantai_total"),
        "{v}"
    );
    // Completed by the back office, then submitted.
    let (status, v) = put_as(
        &s,
        &format!("/v1/applications/{id}/data"),
        &bo,
        json!({ "data": pbg_data(), "version": 1 }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], 2);
    let (status, v) = s
        .post_as(
            &format!("/v1/applications/{id}/submit"),
            &fo,
            json!({ "version": 1 }),
        )
        .await;
    assert_eq!(status, 409, "a stale version: {v}");
    let (status, v) = s
        .post_as(
            &format!("/v1/applications/{id}/submit"),
            &fo,
            json!({ "version": 2 }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "in_progress");
    assert_eq!(v["step"], "pendaftaran");
    assert!(
        v["registration_number"]
            .as_str()
            .unwrap()
            .ends_with("/00001"),
        "{v}"
    );

    // A paper application from the future is refused; nothing is stored.
    let (status, v) = s
        .post_as(
            "/v1/applications",
            &fo,
            json!({ "permit": "pbg", "applicant": { "name": "X" }, "data": pbg_data(), "submitted_on": "2999-01-01" }),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("submitted_on"),
        "{v}"
    );
    // Invalid data: the errors of /validate, nothing stored.
    let (status, v) = s
        .post_as(
            "/v1/applications",
            &fo,
            json!({ "permit": "pbg", "applicant": { "name": "X" }, "data": { "fungsi": "kastil" } }),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "invalid_data");
    let (_, list) = s.get_as("/v1/applications", &fo).await;
    assert_eq!(list["applications"].as_array().unwrap().len(), 1, "{list}");
    // The back office may not create applications; the route table says so.
    let (status, _) = s
        .post_as(
            "/v1/applications",
            &bo,
            json!({ "permit": "pbg", "applicant": { "name": "X" }, "data": pbg_data() }),
        )
        .await;
    assert_eq!(status, 403);
    // Storing the draft was no event; its data change and its submission were.
    let (_, ev) = s.admin_get("/admin/events").await;
    let types: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["application.data_changed", "application.submitted"]);
}

/// A flow change that removes the step where an application waits is accepted, says so in the
/// reload log, and holds the application until an admin re-routes it.
#[tokio::test]
async fn a_removed_step_is_reported_at_reload_and_only_an_admin_moves_the_application_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path());
    let (fo, _) = user(&s, "fo.ani", "front_office").await;
    let (bo, _) = user(&s, "bo.budi", "back_office").await;
    let (tt, _) = user(&s, "tt.citra", "tim_teknis").await;
    let (admin, _) = user(&s, "root", "admin").await;
    let (status, app) = s
        .post_as(
            "/v1/applications",
            &fo,
            json!({ "permit": "pbg", "applicant": { "name": "Siti", "nik": "1871" }, "data": pbg_data() }),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    for (token, version) in [(&fo, 1), (&bo, 2)] {
        let (status, v) = s
            .post_as(
                &format!("/v1/applications/{id}/transitions"),
                token,
                json!({ "action": "advance", "version": version }),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }

    // Drop `konsultasi_teknis` from the flow.
    let path = s.rules.join("pbg/permit.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    let block = "[[flow]]\nstep = \"konsultasi_teknis\"\n";
    let start = toml.find(block).expect("the step in the sample flow");
    let end = start + block.len() + toml[start + block.len()..].find("[[flow]]").unwrap();
    let before = s.release().await.unwrap();
    std::fs::write(&path, format!("{}{}", &toml[..start], &toml[end..])).unwrap();
    let (status, v) = s.admin_post("/admin/reload", json!({})).await;
    assert_eq!(status, 200, "{v}");
    let after = s.release().await.unwrap();
    assert_ne!(before, after, "the new flow serves");
    // Whichever reload activated it (this one or the watcher's) carries the warning.
    let (_, reloads) = s.admin_get("/admin/reloads").await;
    let notes: Vec<&str> = reloads["reloads"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["note"].as_str())
        .filter(|n| n.contains("warning"))
        .collect();
    assert_eq!(notes.len(), 1, "{reloads}");
    assert!(
        notes[0].contains("1 application(s)") && notes[0].contains("pbg `konsultasi_teknis` (1)"),
        "{}",
        notes[0]
    );

    let (_, held) = s.get_as(&format!("/v1/applications/{id}"), &tt).await;
    assert_eq!(held["step"], "konsultasi_teknis");
    assert_eq!(held["step_removed"], true, "{held}");
    assert_eq!(held["step_due_on"], Value::Null);
    let (status, v) = s
        .post_as(
            &format!("/v1/applications/{id}/transitions"),
            &tt,
            json!({ "action": "advance", "version": 3 }),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("step_removed")),
        "{v}"
    );
    let (status, v) = s
        .post_as(
            &format!("/v1/applications/{id}/transitions"),
            &fo,
            json!({ "action": "return", "to": "entri_data", "version": 3 }),
        )
        .await;
    assert_eq!(status, 403, "{v}");
    let (status, v) = s
        .post_as(
            &format!("/v1/applications/{id}/transitions"),
            &admin,
            json!({ "action": "return", "to": "verifikasi_kabid", "version": 3, "note": "alur baru" }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["step"], "verifikasi_kabid");
    assert!(v.get("step_removed").is_none(), "{v}");
    assert_eq!(v["release"], after.as_str());
    let last = v["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["by"], "root");
    assert_eq!(last["from"], "konsultasi_teknis");
    assert_eq!(last["release"], after.as_str());
}
