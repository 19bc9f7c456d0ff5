//! The `oss-rba` connector end to end: the real server with the sample connector's component,
//! a fake OSS RBA over real HTTP (`pintu_tests::fake_oss`), and OSS's side of `receiveNIB`
//! sent with the `Token` OSS computes.

use std::time::Duration;

use pintu_tests::applications::{advance_pbg, id_of, office_today, pbg_data, Office, PBG_STEPS};
use pintu_tests::fake::Failure;
use pintu_tests::fake_oss::{
    nib_of, receive_nib_token, sample_receive_nib, send_receive_nib, FakeOss,
};
use pintu_tests::sample_connectors::{
    all_applications, install, point_at, wait_until, write_secrets, Setup,
};
use pintu_tests::Server;
use serde_json::{json, Value};

const USERNAME: &str = "pemda-metro";
const PASSWORD: &str = "sandi-oss-uji";
const USER_KEY: &str = "kunci-oss-uji";
const PBG_IZIN: &str = "I-202611271210000000000001";
const SEWA_IZIN: &str = "I-202611271210000000000002";
/// A connector call, a delivery with retries: generous for a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// A server with `oss-rba` pointed at `oss` (with `user_key`), and its secrets.
async fn serve(oss: &FakeOss, user_key: &str) -> (Setup, Server) {
    let setup = Setup::new();
    install(&setup.plugins(), "oss-rba", |m| {
        point_at(m, &oss.origin(), "/stg/v1/kl/rba");
        // A call that waits on a silent OSS ends after this (the retry test's "timeout").
        m["limits"]["timeout_ms"] = toml_edit::value(5000);
    });
    write_secrets(
        &setup.data(),
        &format!(
            "[oss-rba]\nusername = \"{USERNAME}\"\npassword = \"{PASSWORD}\"\nuser_key = \"{user_key}\"\n"
        ),
    );
    let server = setup.serve().await;
    (setup, server)
}

async fn push_nib(server: &Server, body: &Value) -> (u16, Value) {
    let token = receive_nib_token(USERNAME, PASSWORD, &nib_of(body), office_today());
    send_receive_nib(&server.http, &server.base, &token, body).await
}

/// The drafts `oss-rba` created, by `id_izin`.
async fn oss_drafts(server: &Server) -> Vec<Value> {
    let mut drafts: Vec<Value> = all_applications(server, "&status=draft")
        .await
        .into_iter()
        .filter(|a| a["external"]["oss-rba"].is_object())
        .collect();
    drafts.sort_by_key(|a| a["external"]["oss-rba"]["id_izin"].to_string());
    drafts
}

#[tokio::test]
async fn receive_nib_creates_one_draft_per_handled_checklist_item_once() {
    let oss = FakeOss::start(USER_KEY);
    let (_setup, server) = serve(&oss, USER_KEY).await;
    let body = sample_receive_nib();

    let (status, answer) = push_nib(&server, &body).await;
    assert_eq!(status, 200, "{answer}\n{}", server.log());
    assert_eq!(answer["responreceiveNIB"]["status"], "1", "{answer}");
    let keterangan = answer["responreceiveNIB"]["keterangan"].as_str().unwrap();
    assert!(keterangan.contains(PBG_IZIN), "{keterangan}");
    assert!(
        keterangan.contains("058000030002"),
        "the unmapped SLF is named: {keterangan}"
    );

    let drafts = oss_drafts(&server).await;
    let summary: Vec<(&str, &str)> = drafts
        .iter()
        .map(|d| {
            (
                d["permit"].as_str().unwrap(),
                d["external"]["oss-rba"]["id_izin"].as_str().unwrap(),
            )
        })
        .collect();
    // The ministry's item (kewenangan 00), Bandar Lampung's (kd_daerah 1871) and the unmapped
    // SLF are not Kota Metro's to process.
    assert_eq!(summary, [("pbg", PBG_IZIN), ("sewa-tanah", SEWA_IZIN)]);
    let pbg = &drafts[0];
    assert_eq!(pbg["status"], "draft");
    let ext = &pbg["external"]["oss-rba"];
    assert_eq!(ext["nib"], "9120301234567");
    assert_eq!(ext["id_proyek"], "R-202611270912345678900001");
    assert_eq!(ext["oss_id"], "P-202611270912345678901234");
    assert_eq!(ext["kd_izin"], "058000010001");
    assert_eq!(pbg["applicant"]["name"], "PT Klinik Sehat Sentosa");
    assert_eq!(pbg["applicant"]["nik"], "1872012505800001");

    // OSS delivers again (as it does after a timeout on its side): nothing new.
    let (status, again) = push_nib(&server, &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["responreceiveNIB"]["status"], "1");
    let after = oss_drafts(&server).await;
    assert_eq!(
        after.iter().map(id_of).collect::<Vec<_>>(),
        drafts.iter().map(id_of).collect::<Vec<_>>()
    );
    assert!(oss.received().is_empty(), "a draft reports nothing to OSS");
}

#[tokio::test]
async fn a_wrong_or_missing_token_is_refused_and_creates_nothing() {
    let oss = FakeOss::start(USER_KEY);
    let (_setup, server) = serve(&oss, USER_KEY).await;
    let body = sample_receive_nib();
    let nib = nib_of(&body);
    let wrong_password = receive_nib_token(USERNAME, "salah", &nib, office_today());
    let last_week = receive_nib_token(
        USERNAME,
        PASSWORD,
        &nib,
        office_today() - chrono::Days::new(7),
    );
    let other_nib = receive_nib_token(USERNAME, PASSWORD, "9120301234568", office_today());
    for token in [
        wrong_password.as_str(),
        last_week.as_str(),
        other_nib.as_str(),
        "",
    ] {
        let (status, answer) = send_receive_nib(&server.http, &server.base, token, &body).await;
        assert_eq!(status, 401, "token `{token}`: {answer}");
        assert_eq!(answer["responreceiveNIB"]["status"], "2", "{answer}");
    }
    let response = server
        .http
        .post(server.url("/v1/connectors/oss-rba/inbound/receiveNIB"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401, "no Token header at all");
    assert!(oss_drafts(&server).await.is_empty());

    // A body that is no receiveNIB is a 400 naming what is missing, not a crash.
    let token = receive_nib_token(USERNAME, PASSWORD, &nib, office_today());
    let (status, answer) =
        send_receive_nib(&server.http, &server.base, &token, &json!({"nib": nib})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("dataNIB"), "{answer}");
}

/// Statuses OSS holds for `id_izin` once it holds at least `n`.
async fn wait_for_statuses(server: &Server, oss: &FakeOss, id_izin: &str, n: usize) -> Vec<String> {
    wait_until(
        server,
        &format!("{n} statuses of {id_izin} at OSS"),
        PATIENCE,
        async || {
            let got = oss.kd_statuses(id_izin);
            (got.len() >= n).then_some(got)
        },
    )
    .await
}

#[tokio::test]
async fn processing_an_oss_application_reports_its_statuses_and_the_final_permit() {
    let oss = FakeOss::start(USER_KEY);
    let (_setup, server) = serve(&oss, USER_KEY).await;
    let office = Office::create(&server).await;
    let (status, answer) = push_nib(&server, &sample_receive_nib()).await;
    assert_eq!(status, 200, "{answer}");
    let draft = oss_drafts(&server).await.remove(0);
    let path = format!("/v1/applications/{}", id_of(&draft));

    // The front office completes the form and submits it.
    let (status, app) = server
        .put_as(
            &format!("{path}/data"),
            &office.front_office,
            json!({"data": pbg_data()}),
        )
        .await;
    assert_eq!(status, 200, "{app}");
    let (status, app) = server
        .post_as(&format!("{path}/submit"), &office.front_office, json!({}))
        .await;
    assert_eq!(status, 200, "{app}");
    assert_eq!(app["step"], PBG_STEPS[0].0);
    assert_eq!(wait_for_statuses(&server, &oss, PBG_IZIN, 1).await, ["20"]);

    let app = advance_pbg(&server, &office, app, None).await;
    assert_eq!(app["status"], "completed", "{app}");
    let permit_number = app["permit_number"].as_str().unwrap().to_owned();

    // pendaftaran 20, entri_data 10, konsultasi_teknis 40, verifikasi_kabid 45, penetapan (no
    // code: the permit itself goes as receiveLicense), penyerahan 50; completion sends nothing.
    let license = wait_until(&server, "the IZINFINAL at OSS", PATIENCE, async || {
        oss.license(PBG_IZIN).final_license
    })
    .await;
    assert_eq!(
        wait_for_statuses(&server, &oss, PBG_IZIN, 5).await,
        ["20", "10", "40", "45", "50"]
    );
    assert_eq!(license["nomor_izin"], permit_number);
    assert_eq!(license["status_izin"], "50");
    assert_eq!(license["nib"], "9120301234567");
    assert_eq!(license["id_proyek"], "R-202611270912345678900001");
    assert_eq!(license["oss_id"], "P-202611270912345678901234");
    assert_eq!(license["kd_izin"], "058000010001");
    assert_eq!(license["kd_daerah"], "1872");
    assert_eq!(
        license["tgl_terbit_izin"],
        office_today().format("%Y-%m-%d").to_string()
    );
    assert_eq!(license["data_teknis"]["luas_bangunan_disetujui"], "180");
    assert_eq!(license["data_teknis"]["jumlah_lantai_disetujui"], "2");

    // Every report carried the user_key, and nothing was sent for the sewa-tanah draft.
    let received = oss.received();
    assert!(received
        .iter()
        .all(|r| r.header("user_key") == Some(USER_KEY)));
    assert!(oss.kd_statuses(SEWA_IZIN).is_empty());
    let statuses = oss.received_by("receiveLicenseStatus");
    let first = &statuses[0].body["IZINSTATUS"];
    assert_eq!(first["id_izin"], PBG_IZIN);
    assert_eq!(first["nama_status"], "Validasi");
    assert!(
        first["keterangan"]
            .as_str()
            .unwrap()
            .contains(&id_of(&draft)),
        "{first}"
    );
}

#[tokio::test]
async fn oss_failures_are_retried_until_it_accepts_and_refusals_become_dead_letters() {
    let oss = FakeOss::start(USER_KEY);
    let (_setup, server) = serve(&oss, USER_KEY).await;
    let office = Office::create(&server).await;
    push_nib(&server, &sample_receive_nib()).await;
    let draft = oss_drafts(&server).await.remove(0);
    let path = format!("/v1/applications/{}", id_of(&draft));
    server
        .put_as(
            &format!("{path}/data"),
            &office.front_office,
            json!({"data": pbg_data()}),
        )
        .await;

    // OSS answers 500 twice, then times out once (the call's deadline is the manifest's
    // timeout_ms), then accepts: the same status arrives once accepted.
    oss.fail_next(2, Failure::Status(500));
    oss.fail_next(1, Failure::Delay(Duration::from_secs(20)));
    let (status, _) = server
        .post_as(&format!("{path}/submit"), &office.front_office, json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(wait_for_statuses(&server, &oss, PBG_IZIN, 1).await, ["20"]);
    let attempts = oss.received_by("receiveLicenseStatus");
    let answered: Vec<u16> = attempts.iter().map(|r| r.status).collect();
    assert_eq!(answered, [500, 500, 504, 200], "{attempts:?}");
    assert!(
        attempts.iter().all(|a| a.body == attempts[0].body),
        "every attempt sends the same report"
    );

    // OSS refuses (400: e.g. it no longer knows the permit): sending again cannot help, so the
    // delivery is a dead letter at once, shown with OSS's reason.
    oss.fail_next(1, Failure::Status(400));
    let app = server.get_as(&path, &office.front_office).await.1;
    let (status, _) =
        pintu_tests::applications::transition(&server, &office.front_office, &app, "advance", None)
            .await;
    assert_eq!(status, 200);
    let dead = wait_until(&server, "a dead letter for oss-rba", PATIENCE, async || {
        let (_, v) = server
            .admin_get("/admin/outbox?connector=oss-rba&state=dead")
            .await;
        v["deliveries"].as_array().and_then(|d| d.first().cloned())
    })
    .await;
    assert_eq!(dead["attempts"], 1, "{dead}");
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("400"),
        "{dead}"
    );
    assert_eq!(oss.kd_statuses(PBG_IZIN), ["20"]);
}
