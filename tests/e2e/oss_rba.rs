//! The `oss-rba` connector end to end: the real server with the sample connector's component,
//! a fake OSS RBA over real HTTP (`pintu_tests::fake_oss`), and OSS's side of `receiveNIB`
//! sent with the `Token` OSS computes.

use pintu_tests::applications::{id_of, office_today};
use pintu_tests::fake_oss::{
    nib_of, receive_nib_token, sample_receive_nib, send_receive_nib, FakeOss,
};
use pintu_tests::sample_connectors::{all_applications, install, point_at, write_secrets, Setup};
use pintu_tests::Server;
use serde_json::{json, Value};

const USERNAME: &str = "pemda-metro";
const PASSWORD: &str = "sandi-oss-uji";
const USER_KEY: &str = "kunci-oss-uji";
const PBG_IZIN: &str = "I-202611271210000000000001";
const SEWA_IZIN: &str = "I-202611271210000000000002";

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
