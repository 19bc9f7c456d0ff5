//! Applications through the configured flows, over HTTP with users of every role: Kota Metro's
//! PBG flow from submission to handover, the refusals (wrong role, wrong scope, deactivated
//! user, stale version, guard), `return` and `reject`, drafts and data edits, and a flow changed
//! while applications are in flight.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use pintu_tests::applications::sample_server;
use pintu_tests::applications::{
    advance_pbg, all_events, applicant, create_user, date_of, edit_flow, id_of, office_today,
    parse_number, pbg_data, submit_pbg, transition, transitions_path, Calendar, Office, PBG_STEPS,
};
use pintu_tests::Server;
use serde_json::{json, Value};

const REGISTRATION: &str = "REG/PBG/{YYYY}/{NNNNN}";
const PERMIT: &str = "503/{NNNN}/PBG/DPMPTSP/{MM}/{YYYY}";

/// The sla_days of each pbg step (design of the sample flow).
fn sla_days(step: &str) -> u32 {
    match step {
        "konsultasi_teknis" => 5,
        _ => 1,
    }
}

/// `step_due_on` is `sla_days` working days after the office date the application entered its
/// step; `entered` brackets that date (the days before and after the request: equal except
/// around midnight).
fn assert_due(app: &Value, cal: &Calendar, entered: (NaiveDate, NaiveDate), sla: u32) {
    let due = date_of(&app["step_due_on"]);
    let expected: BTreeSet<NaiveDate> = [entered.0, entered.1]
        .into_iter()
        .map(|d| cal.add_working_days(d, sla))
        .collect();
    assert!(
        expected.contains(&due),
        "step {} entered on {entered:?} with sla_days {sla}: due {due}, expected {expected:?}",
        app["step"]
    );
    assert!(cal.is_working_day(due), "due on a day off: {due}");
}

/// A number of `format` dated on one of the `days`; its sequence.
fn number_on(format: &str, days: (NaiveDate, NaiveDate), text: &Value) -> u64 {
    let text = text
        .as_str()
        .unwrap_or_else(|| panic!("a number of {format}, got {text}"));
    [days.0, days.1]
        .into_iter()
        .find_map(|d| parse_number(format, d, text))
        .unwrap_or_else(|| panic!("`{text}` is not of the format {format} on {days:?}"))
}

/// The events of one application, in outbox order.
async fn events_of(s: &Server, app: &Value) -> Vec<Value> {
    let id = id_of(app);
    all_events(s)
        .await
        .into_iter()
        .filter(|e| e["application"] == id.as_str())
        .collect()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// The outbox as a whole: `seq` 1, 2, 3, ... with no gap.
async fn assert_outbox_gap_free(s: &Server) -> Vec<Value> {
    let events = all_events(s).await;
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, want, "event seqs are not 1..=n");
    events
}

async fn get_app(s: &Server, token: &str, app: &Value) -> (u16, Value) {
    s.get_as(&format!("/v1/applications/{}", id_of(app)), token)
        .await
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn error_message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pbg_application_goes_through_every_step_with_each_role() {
    let (_dir, s) = sample_server().await;
    let cal = Calendar::read(&s.rules);
    let office = Office::create(&s).await;
    let release = s.release().await.unwrap();

    let before = office_today();
    let (status, mut app) = submit_pbg(&s, &office.front_office, "Budi Santoso").await;
    let after = office_today();
    assert_eq!(status, 201, "{app}");
    for key in [
        "id",
        "permit",
        "kind",
        "registration_number",
        "submitted_on",
        "status",
        "step",
        "step_due_on",
        "version",
        "applicant",
        "data",
        "permit_number",
        "release",
        "external",
        "history",
    ] {
        assert!(app.get(key).is_some(), "no `{key}` in {app}");
    }
    assert_eq!(app["permit"], "pbg");
    assert_eq!(app["kind"], "baru");
    assert_eq!(app["status"], "in_progress");
    assert_eq!(app["step"], "pendaftaran");
    assert_eq!(app["permit_number"], Value::Null);
    assert_eq!(app["release"], release.as_str());
    assert_eq!(app["applicant"]["name"], "Budi Santoso");
    assert_eq!(app["data"]["luas_lantai_total"], 180);
    let submitted_on = date_of(&app["submitted_on"]);
    assert!([before, after].contains(&submitted_on), "{app}");
    // The registration says when the office registered it: the first of this year.
    assert_eq!(
        number_on(
            REGISTRATION,
            (submitted_on, submitted_on),
            &app["registration_number"]
        ),
        1,
        "{app}"
    );
    let registration = app["registration_number"].clone();
    assert_due(&app, &cal, (before, after), 1);
    assert_eq!(app["history"].as_array().unwrap().len(), 1, "{app}");
    assert_eq!(app["history"][0]["by"], "fo", "{app}");
    assert_eq!(app["history"][0]["action"], "submitted", "{app}");

    // Each step: every other role, and an admin, is refused naming the step's role; the step's
    // role advances it.
    let others = [
        "front_office",
        "back_office",
        "tim_teknis",
        "kabid_pelayanan",
        "kepala_dinas",
        "admin",
    ];
    let mut expected_history = vec![("pendaftaran".to_owned(), "fo")];
    let mut permit_number = None;
    for (i, (step, role)) in PBG_STEPS.iter().enumerate() {
        assert_eq!(app["step"], *step, "{app}");
        for other in others.iter().filter(|r| *r != role) {
            let (status, v) = transition(&s, office.token(other), &app, "advance", None).await;
            assert_eq!(status, 403, "{other} advancing at {step}: {v}");
            assert_eq!(error_code(&v), "forbidden", "{v}");
            assert!(
                error_message(&v).contains(role),
                "the refusal of {other} at {step} does not name `{role}`: {v}"
            );
        }
        let (status, unchanged) = get_app(&s, office.token(role), &app).await;
        assert_eq!(status, 200, "{unchanged}");
        assert_eq!(unchanged["version"], app["version"], "a refusal changed it");

        let version = app["version"].as_u64().unwrap();
        let before = office_today();
        let (status, v) = transition(&s, office.token(role), &app, "advance", None).await;
        let after = office_today();
        assert_eq!(status, 200, "{role} advancing at {step}: {v}");
        assert!(v["version"].as_u64().unwrap() > version, "{v}");
        app = v;
        let user = match *role {
            "front_office" => "fo",
            "back_office" => "bo",
            "tim_teknis" => "teknis",
            "kabid_pelayanan" => "kabid",
            _ => "kadis",
        };
        expected_history.push((step.to_string(), user));
        if *step == "penetapan" {
            // issue_permit: the first permit number, dated on the day it was issued.
            assert_eq!(number_on(PERMIT, (before, after), &app["permit_number"]), 1);
            permit_number = Some(app["permit_number"].clone());
        } else if i < 4 {
            assert_eq!(app["permit_number"], Value::Null, "{app}");
        }
        match PBG_STEPS.get(i + 1) {
            Some((next, _)) => {
                assert_eq!(app["status"], "in_progress");
                assert_eq!(app["step"], *next);
                assert_due(&app, &cal, (before, after), sla_days(next));
            }
            None => {
                assert_eq!(app["status"], "completed", "{app}");
                assert_eq!(app["step_due_on"], Value::Null, "{app}");
            }
        }
    }
    assert_eq!(app["permit_number"], permit_number.unwrap());
    assert_eq!(
        app["registration_number"], registration,
        "the registration number never changes"
    );

    // An ended application takes no more transitions.
    let (status, v) = transition(&s, &office.front_office, &app, "advance", None).await;
    assert!(
        (400..500).contains(&status) && status != 403,
        "{status} {v}"
    );

    // History: the submission, then one entry per step, each by its user and under the release.
    let history = app["history"].as_array().unwrap();
    assert_eq!(history.len(), expected_history.len(), "{app}");
    for (n, (entry, (from, by))) in history.iter().zip(&expected_history).enumerate().skip(1) {
        // Advancing from the last step completes the application.
        let action = if n == PBG_STEPS.len() {
            "completed"
        } else {
            "advanced"
        };
        assert!(
            entry["action"] == action || entry["action"] == "advanced",
            "{entry}"
        );
        assert_eq!(entry["from"], from.as_str(), "{entry}");
        assert_eq!(entry["by"], *by, "{entry}");
        assert_eq!(entry["release"], release.as_str(), "{entry}");
        assert!(entry["at"].is_string(), "{entry}");
    }
    for (entry, next) in history.iter().skip(1).zip(PBG_STEPS.iter().skip(1)) {
        assert_eq!(entry["to"], next.0, "{entry}");
    }

    // Every role sees the same application.
    for role in others {
        let (status, v) = get_app(&s, office.token(role), &app).await;
        assert_eq!(status, 200, "{role}: {v}");
        assert_eq!(v, app, "GET as {role}");
    }

    // Events: every change in order, each carrying what a connector needs.
    let events = assert_outbox_gap_free(&s).await;
    let mine: Vec<Value> = events
        .iter()
        .filter(|e| e["application"] == app["id"])
        .cloned()
        .collect();
    println!("{:#?}", types(&mine));
    assert_eq!(mine.first().unwrap()["type"], "application.submitted");
    assert_eq!(
        mine[0]["data"]["registration_number"],
        app["registration_number"]
    );
    assert_eq!(mine[0]["data"]["permit"], "pbg");
    assert_eq!(mine.last().unwrap()["type"], "application.completed");
    let advanced: Vec<&Value> = mine
        .iter()
        .filter(|e| e["type"] == "application.advanced")
        .collect();
    assert!(advanced.len() >= 5, "{:?}", types(&mine));
    for (e, (step, next)) in advanced
        .iter()
        .zip(PBG_STEPS.iter().zip(PBG_STEPS.iter().skip(1)))
    {
        assert_eq!(e["data"]["from"], step.0, "{e}");
        assert_eq!(e["data"]["to"], next.0, "{e}");
    }
    let issued: Vec<&Value> = mine
        .iter()
        .filter(|e| e["type"] == "permit.issued")
        .collect();
    assert_eq!(issued.len(), 1, "{:?}", types(&mine));
    assert_eq!(issued[0]["data"]["permit_number"], app["permit_number"]);
    for e in &mine {
        assert!(e["at"].is_string(), "{e}");
        assert!(e["data"]["by"].is_string(), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_scope_deactivated_user_and_stale_version_are_refused() {
    let (_dir, s) = sample_server().await;
    let office = Office::create(&s).await;
    let (status, app) = submit_pbg(&s, &office.front_office, "Siti Aminah").await;
    assert_eq!(status, 201, "{app}");

    // No token at all.
    let (status, v) = s
        .post(
            "/v1/applications",
            json!({"permit": "pbg", "applicant": applicant("X", None), "data": pbg_data()}),
        )
        .await;
    assert_eq!(status, 401, "{v}");

    // Scope: a front office and a back office handling only sip-dokter.
    let fo_sip = create_user(&s, "fo.sip", &["front_office"], &["sip-dokter"]).await;
    let bo_sip = create_user(&s, "bo.sip", &["back_office"], &["sip-dokter"]).await;
    let (status, v) = submit_pbg(&s, &fo_sip, "Di luar lingkup").await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(error_code(&v), "forbidden");
    assert!(error_message(&v).contains("pbg"), "{v}");
    let (status, v) = get_app(&s, &fo_sip, &app).await;
    assert_eq!(status, 403, "{v}");
    assert!(error_message(&v).contains("pbg"), "{v}");
    let (status, v) = s.get_as("/v1/applications", &fo_sip).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["applications"], json!([]), "pbg shown out of scope: {v}");
    let (status, v) = s.get_as("/v1/applications?permit=pbg", &fo_sip).await;
    assert!(
        status == 403 || v["applications"] == json!([]),
        "pbg listed out of scope: {status} {v}"
    );

    let (status, app) = transition(&s, &office.front_office, &app, "advance", None).await;
    assert_eq!(status, 200, "{app}");
    assert_eq!(app["step"], "entri_data");
    let (status, v) = transition(&s, &bo_sip, &app, "advance", None).await;
    assert_eq!(status, 403, "{v}");
    assert!(error_message(&v).contains("pbg"), "{v}");

    // Stale version: the answer is 409 and nothing changes; of two racing advances at the same
    // version exactly one wins.
    let stale = json!({"action": "advance", "version": app["version"].as_u64().unwrap() - 1});
    let (status, v) = s
        .post_as(&transitions_path(&app), &office.back_office, stale)
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(error_code(&v), "conflict");
    let (_, now) = get_app(&s, &office.back_office, &app).await;
    assert_eq!(now, app, "a stale transition changed the application");
    let (a, b) = tokio::join!(
        transition(&s, &office.back_office, &app, "advance", None),
        transition(&s, &office.back_office, &app, "advance", None),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{} / {}", a.1, b.1);
    let won = if a.0 == 200 { a.1 } else { b.1 };
    assert_eq!(won["step"], "konsultasi_teknis");
    let (_, now) = get_app(&s, &office.tim_teknis, &app).await;
    assert_eq!(now, won);
    assert_eq!(
        now["history"].as_array().unwrap().len(),
        3,
        "one entry per change, none lost or doubled: {now}"
    );
    // A data edit at a stale version is refused the same way.
    let (status, v) = s
        .put_as(
            &format!("/v1/applications/{}/data", id_of(&now)),
            &office.back_office,
            json!({"data": pbg_data(), "version": app["version"]}),
        )
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(error_code(&v), "conflict");

    // Deactivation: the user's token works, then stops at once.
    let fo2 = create_user(&s, "fo2", &["front_office"], &["pbg"]).await;
    let (status, v) = submit_pbg(&s, &fo2, "Sebelum nonaktif").await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = s
        .patch_as("/admin/users/fo2", &s.admin_token, json!({"active": false}))
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = submit_pbg(&s, &fo2, "Sesudah nonaktif").await;
    assert_eq!(status, 401, "a deactivated user's token still works: {v}");
    assert_eq!(error_code(&v), "invalid_token", "{v}");
    let (status, v) = get_app(&s, &fo2, &now).await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(error_code(&v), "invalid_token", "{v}");
    // A deactivated user may be given a token (it works once the user is active again), but
    // not before.
    let (status, v) = s.admin_post("/admin/users/fo2/tokens", json!({})).await;
    assert_eq!(status, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let (status, v) = submit_pbg(&s, &token, "Token baru").await;
    assert_eq!(status, 401, "{v}");
    let (status, v) = s
        .patch_as("/admin/users/fo2", &s.admin_token, json!({"active": true}))
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = submit_pbg(&s, &token, "Sesudah aktif lagi").await;
    assert_eq!(status, 201, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_refuses_advancing_without_a_nik() {
    let (_dir, s) = sample_server().await;
    let office = Office::create(&s).await;
    for nik in [None, Some("")] {
        let mut who = applicant("Tanpa NIK", None);
        if let Some(nik) = nik {
            who["nik"] = json!(nik);
        }
        let (status, app) = s
            .post_as(
                "/v1/applications",
                &office.front_office,
                json!({"permit": "pbg", "applicant": who, "data": pbg_data()}),
            )
            .await;
        assert_eq!(status, 201, "{app}");
        assert_eq!(app["kind"], "baru", "the default kind");
        let (status, v) = transition(&s, &office.front_office, &app, "advance", None).await;
        assert_eq!(status, 422, "{v}");
        assert_eq!(error_code(&v), "guard_refused", "{v}");
        assert!(error_message(&v).contains("NIK pemohon belum diisi"), "{v}");
        let (_, now) = get_app(&s, &office.front_office, &app).await;
        assert_eq!(now, app, "a refused advance changed the application");

        // The front office completes the applicant; then the guard lets it pass.
        let (status, edited) = s
            .put_as(
                &format!("/v1/applications/{}/data", id_of(&app)),
                &office.front_office,
                json!({"data": pbg_data(), "applicant": applicant("Tanpa NIK", Some("1872012505800001")), "version": app["version"]}),
            )
            .await;
        assert_eq!(status, 200, "{edited}");
        assert_eq!(edited["applicant"]["nik"], "1872012505800001");
        assert_eq!(edited["step"], "pendaftaran");
        assert!(edited["version"].as_u64() > app["version"].as_u64());
        assert_eq!(
            edited["history"].as_array().unwrap().len(),
            2,
            "the edit is in the history: {edited}"
        );
        let (status, v) = transition(&s, &office.front_office, &edited, "advance", None).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["step"], "entri_data");
        let types: Vec<String> = events_of(&s, &app)
            .await
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            types,
            [
                "application.submitted",
                "application.data_changed",
                "application.advanced"
            ],
            "the refusal wrote no event"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn return_goes_back_for_revision_and_reject_ends_it() {
    let (_dir, s) = sample_server().await;
    let office = Office::create(&s).await;
    let (status, app) = submit_pbg(&s, &office.front_office, "Agus Salim").await;
    assert_eq!(status, 201, "{app}");
    let app = advance_pbg(&s, &office, app, Some("konsultasi_teknis")).await;

    // Not forward, not to an unknown step, not without a target.
    for to in [
        Some("penetapan"),
        Some("konsultasi_teknis"),
        Some("tidak_ada"),
        None,
    ] {
        let (status, v) = transition(&s, &office.tim_teknis, &app, "return", to).await;
        assert_eq!(status, 422, "return to {to:?}: {v}");
    }
    // The step's role is needed for a return too.
    let (status, v) = transition(&s, &office.back_office, &app, "return", Some("entri_data")).await;
    assert_eq!(status, 403, "{v}");

    let (status, back) =
        transition(&s, &office.tim_teknis, &app, "return", Some("entri_data")).await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(back["status"], "in_progress");
    assert_eq!(back["step"], "entri_data");
    let last = back["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "returned", "{last}");
    assert_eq!(last["from"], "konsultasi_teknis");
    assert_eq!(last["to"], "entri_data");
    assert_eq!(last["by"], "teknis");
    assert_eq!(last["note"], "return oleh uji");

    // The back office now rejects it: it ends, and nothing more happens to it.
    let (status, ended) = transition(&s, &office.back_office, &back, "reject", None).await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["status"], "rejected");
    assert_eq!(ended["step_due_on"], Value::Null);
    assert_eq!(ended["permit_number"], Value::Null);
    for (role, action) in [
        ("back_office", "advance"),
        ("back_office", "reject"),
        ("front_office", "advance"),
    ] {
        let (status, v) = transition(&s, office.token(role), &ended, action, None).await;
        assert!(
            (400..500).contains(&status),
            "{action} after reject: {status} {v}"
        );
        let (_, now) = get_app(&s, &office.front_office, &ended).await;
        assert_eq!(now, ended);
    }
    let types: Vec<String> = events_of(&s, &app)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "application.submitted",
            "application.advanced",
            "application.advanced",
            "application.returned",
            "application.rejected"
        ]
    );
    let events = events_of(&s, &app).await;
    assert_eq!(events[3]["data"]["from"], "konsultasi_teknis");
    assert_eq!(events[3]["data"]["to"], "entri_data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_is_completed_and_submitted_and_edits_are_revalidated() {
    let (_dir, s) = sample_server().await;
    let office = Office::create(&s).await;
    let events_at_start = all_events(&s).await.len();

    // Invalid data is refused with the errors of /validate, and nothing is stored.
    let mut bad = pbg_data();
    bad["luas_lantai_total"] = json!(0);
    let (status, v) = s
        .post_as(
            "/v1/applications",
            &office.front_office,
            json!({"permit": "pbg", "applicant": applicant("A", Some("1872012505800001")), "data": bad}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    let fields: Vec<&str> = v["error"]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors in {v}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["luas_lantai_total"], "{v}");
    // submitted_on may not be in the future.
    let tomorrow = office_today().succ_opt().unwrap().succ_opt().unwrap();
    let (status, v) = s
        .post_as(
            "/v1/applications",
            &office.front_office,
            json!({"permit": "pbg", "applicant": applicant("A", None), "data": pbg_data(), "submitted_on": tomorrow.to_string()}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(error_message(&v).contains("submitted_on"), "{v}");
    let (_, list) = s.get_as("/v1/applications", &office.front_office).await;
    assert_eq!(
        list["applications"],
        json!([]),
        "a refused application was stored"
    );
    assert_eq!(all_events(&s).await.len(), events_at_start);

    // A draft: present fields are checked, missing ones allowed; no number, not in the flow.
    let (status, v) = s
        .post_as(
            "/v1/applications",
            &office.front_office,
            json!({"permit": "pbg", "draft": true, "applicant": applicant("Dewi", None), "data": {"jumlah_lantai": "dua"}}),
        )
        .await;
    assert_eq!(
        status, 422,
        "a draft's present fields are type-checked: {v}"
    );
    let (status, draft) = s
        .post_as(
            "/v1/applications",
            &office.front_office,
            json!({"permit": "pbg", "draft": true, "applicant": applicant("Dewi", None), "data": {"fungsi": "hunian_tidak_sederhana"}}),
        )
        .await;
    assert_eq!(status, 201, "{draft}");
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["registration_number"], Value::Null);
    assert_eq!(draft["step"], Value::Null);
    assert_eq!(draft["step_due_on"], Value::Null);
    let id = id_of(&draft);
    let (status, v) = transition(&s, &office.front_office, &draft, "advance", None).await;
    assert!(
        (400..500).contains(&status),
        "a draft is not in the flow: {status} {v}"
    );

    // Submitting it incomplete names the missing fields.
    let (status, v) = s
        .post_as(
            &format!("/v1/applications/{id}/submit"),
            &office.front_office,
            json!({}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    let missing: BTreeSet<&str> = v["error"]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors in {v}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(missing.contains("luas_lantai_total"), "{v}");
    let (_, still) = get_app(&s, &office.front_office, &draft).await;
    assert_eq!(still, draft);

    // The back office completes it; the front office submits it.
    let (status, edited) = s
        .put_as(
            &format!("/v1/applications/{id}/data"),
            &office.back_office,
            json!({"data": pbg_data(), "applicant": applicant("Dewi", Some("1872012505800001"))}),
        )
        .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["status"], "draft");
    assert_eq!(edited["data"], pbg_data());
    let (status, sub) = s
        .post_as(
            &format!("/v1/applications/{id}/submit"),
            &office.front_office,
            json!({"version": edited["version"]}),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {sub}");
    assert_eq!(sub["status"], "in_progress");
    assert_eq!(sub["step"], "pendaftaran");
    let today = date_of(&sub["submitted_on"]);
    assert_eq!(
        number_on(REGISTRATION, (today, today), &sub["registration_number"]),
        1,
        "{sub}"
    );
    assert!(!sub["step_due_on"].is_null());

    // In progress, an edit is validated fully: bad data is refused and changes nothing.
    let mut bad = pbg_data();
    bad["fungsi"] = json!("pabrik");
    let (status, v) = s
        .put_as(
            &format!("/v1/applications/{id}/data"),
            &office.back_office,
            json!({"data": bad, "version": sub["version"]}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["errors"][0]["field"], "fungsi", "{v}");
    let (_, now) = get_app(&s, &office.back_office, &sub).await;
    assert_eq!(now, sub);
    let mut better = pbg_data();
    better["luas_lantai_total"] = json!(200);
    let (status, v) = s
        .put_as(
            &format!("/v1/applications/{id}/data"),
            &office.back_office,
            json!({"data": better, "version": sub["version"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["luas_lantai_total"], 200);
    assert_eq!(v["step"], "pendaftaran", "an edit does not move it");
    assert_eq!(
        v["history"].as_array().unwrap().len(),
        sub["history"].as_array().unwrap().len() + 1,
        "{v}"
    );
    // Other roles may not edit data.
    let (status, v2) = s
        .put_as(
            &format!("/v1/applications/{id}/data"),
            &office.kepala_dinas,
            json!({"data": pbg_data()}),
        )
        .await;
    assert_eq!(status, 403, "{v2}");

    // A paper application received earlier keeps its date; its number is registered today.
    let earlier = office_today().pred_opt().unwrap();
    let (status, paper) = s
        .post_as(
            "/v1/applications",
            &office.front_office,
            json!({"permit": "pbg", "kind": "perpanjangan", "applicant": applicant("Kertas", Some("1872012505800001")),
                   "data": pbg_data(), "submitted_on": earlier.to_string()}),
        )
        .await;
    assert_eq!(status, 201, "{paper}");
    assert_eq!(paper["submitted_on"], earlier.to_string());
    assert_eq!(paper["kind"], "perpanjangan");
    let today = office_today();
    assert_eq!(
        number_on(REGISTRATION, (today, today), &paper["registration_number"]),
        2,
        "{paper}"
    );

    let types: Vec<String> = events_of(&s, &draft)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        types.ends_with(&[
            "application.submitted".to_owned(),
            "application.data_changed".to_owned()
        ]),
        "{types:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_change_applies_at_once_to_applications_in_flight() {
    let (_dir, s) = sample_server().await;
    let cal = Calendar::read(&s.rules);
    let office = Office::create(&s).await;
    let old = s.release().await.unwrap();
    let submit = |name: &'static str| {
        let s = &s;
        let office = &office;
        async move {
            let (status, app) = submit_pbg(s, &office.front_office, name).await;
            assert_eq!(status, 201, "{app}");
            app
        }
    };
    let at_data_entry = advance_pbg(&s, &office, submit("Satu").await, Some("entri_data")).await;
    let at_removed = advance_pbg(&s, &office, submit("Dua").await, Some("konsultasi_teknis")).await;
    let at_kabid = advance_pbg(&s, &office, submit("Tiga").await, Some("verifikasi_kabid")).await;
    let stuck = advance_pbg(
        &s,
        &office,
        submit("Empat").await,
        Some("konsultasi_teknis"),
    )
    .await;

    // The office drops the technical consultation and gives data entry 3 working days.
    edit_flow(&s.rules, "pbg", |flow| {
        let at = (0..flow.len())
            .find(|&i| {
                flow.get(i)
                    .and_then(|t| t.get("step"))
                    .and_then(|v| v.as_str())
                    == Some("konsultasi_teknis")
            })
            .expect("the konsultasi_teknis step");
        flow.remove(at);
        for t in flow.iter_mut() {
            if t.get("step").and_then(|v| v.as_str()) == Some("entri_data") {
                t["sla_days"] = toml_edit::value(3);
            }
        }
    });
    let (new, took) = s
        .wait_for_new_release(Some(&old), std::time::Duration::from_secs(60))
        .await;
    println!("new release {new} served after {took:?}");
    let (_, health) = s.get("/health").await;
    assert_eq!(
        health["status"], "ok",
        "the changed flow was rejected: {health}"
    );
    let (status, permit) = s.get("/v1/permits/pbg").await;
    assert_eq!(status, 200);
    let steps: Vec<&str> = permit["flow"]
        .as_array()
        .unwrap_or_else(|| panic!("flow in {permit}"))
        .iter()
        .map(|st| st["step"].as_str().unwrap())
        .collect();
    assert!(!steps.contains(&"konsultasi_teknis"), "{steps:?}");

    // At a step that still exists: its due date follows the new sla, advancing follows the new
    // flow (straight to the Kabid), under the new release.
    let (_, app) = get_app(&s, &office.back_office, &at_data_entry).await;
    assert_eq!(app["step"], "entri_data");
    assert!(app.get("step_removed").is_none_or(|v| v == false), "{app}");
    let entered = at_data_entry["history"].as_array().unwrap().last().unwrap()["at"].clone();
    println!("entered entri_data at {entered}");
    let due = date_of(&app["step_due_on"]);
    let old_due = date_of(&at_data_entry["step_due_on"]);
    assert!(
        (1..=2).contains(&(cal_diff(&cal, old_due, due))),
        "entri_data due {old_due} under 1 working day, {due} under 3"
    );
    let (status, moved) = transition(&s, &office.back_office, &app, "advance", None).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["step"], "verifikasi_kabid");
    assert_eq!(moved["release"], new.as_str());
    let history = moved["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["release"], new.as_str());
    assert_eq!(history.first().unwrap()["release"], old.as_str());

    // The application further on is unaffected.
    let (status, v) = transition(&s, &office.kabid_pelayanan, &at_kabid, "advance", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["step"], "penetapan");

    // At the removed step: it stays there, shown as removed, without a due date; only an admin
    // may re-route it (return to a step of the new flow, or reject); everything else is 409.
    let (status, app) = get_app(&s, &office.tim_teknis, &at_removed).await;
    assert_eq!(status, 200, "{app}");
    assert_eq!(app["step"], "konsultasi_teknis");
    assert_eq!(app["step_removed"], true, "{app}");
    assert_eq!(app["step_due_on"], Value::Null, "{app}");
    for (role, action, to) in [
        ("tim_teknis", "advance", None),
        ("tim_teknis", "reject", None),
        ("tim_teknis", "return", Some("entri_data")),
        ("admin", "advance", None),
    ] {
        let (status, v) = transition(&s, office.token(role), &app, action, to).await;
        assert!(
            status == 409 || status == 403,
            "{role} {action} at a removed step: {status} {v}"
        );
        if status == 409 {
            assert_eq!(error_code(&v), "step_removed", "{v}");
        }
    }
    let (status, v) = transition(&s, &office.tim_teknis, &app, "advance", None).await;
    assert_eq!((status, error_code(&v)), (409, "step_removed"), "{v}");
    let (_, still) = get_app(&s, &office.admin, &app).await;
    assert_eq!(still["version"], app["version"]);
    let (status, rerouted) =
        transition(&s, &office.admin, &app, "return", Some("entri_data")).await;
    assert_eq!(status, 200, "{rerouted}");
    assert_eq!(rerouted["step"], "entri_data");
    assert!(rerouted.get("step_removed").is_none_or(|v| v == false));
    assert!(!rerouted["step_due_on"].is_null());
    let (status, v) = transition(&s, &office.back_office, &rerouted, "advance", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["step"], "verifikasi_kabid");
    // Or an admin rejects it.
    let (status, v) = transition(&s, &office.admin, &stuck, "reject", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "rejected");
    assert_outbox_gap_free(&s).await;
}

/// Working days from `a` to `b` (b after a).
fn cal_diff(cal: &Calendar, a: NaiveDate, b: NaiveDate) -> i64 {
    let mut n = 0;
    let mut day = a;
    while day < b {
        day = day.succ_opt().unwrap();
        if cal.is_working_day(day) {
            n += 1;
        }
    }
    n
}
