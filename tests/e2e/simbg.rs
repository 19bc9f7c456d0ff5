//! The `simbg` connector end to end: the real server with the sample connector's component and
//! a fake SIMBG over real HTTP (`pintu_tests::fake_simbg`). Syncs are started through the
//! connector's on-demand route (`POST /v1/connectors/simbg/inbound/sync` with its trigger
//! token) so that each test says when one runs; the schedule (`sync_every`) calls the same code.

use std::time::Duration;

use pintu_tests::fake::Failure;
use pintu_tests::fake_simbg::{sample_applications, FakeSimbg};
use pintu_tests::sample_connectors::{
    all_applications, install, point_at, wait_until, write_secrets, Setup,
};
use pintu_tests::Server;
use serde_json::Value;

const EMAIL: &str = "operator@metrokota.go.id";
const PASSWORD: &str = "sandi-simbg-uji";
const TRIGGER: &str = "pemicu-uji";
const HOUSE: &str = "3f6d1c52-8a4e-4f3b-9b1e-0a7d5e2c4b11";
const SHOP: &str = "9b2e7a10-44c1-4d8e-a6f2-5c3b8e9d0f22";

async fn serve(
    simbg: &FakeSimbg,
    edit: impl FnOnce(&mut toml_edit::DocumentMut),
) -> (Setup, Server) {
    let setup = Setup::new();
    install(&setup.plugins(), "simbg", |m| {
        point_at(m, &simbg.origin(), "");
        // No schedule unless a test sets one: a scheduled sync at start would race the one
        // the test triggers.
        m.remove("sync_every");
        edit(m);
    });
    write_secrets(
        &setup.data(),
        &format!(
            "[simbg]\nemail = \"{EMAIL}\"\npassword = \"{PASSWORD}\"\ntrigger_token = \"{TRIGGER}\"\n"
        ),
    );
    let server = setup.serve().await;
    (setup, server)
}

async fn trigger(server: &Server, token: &str) -> (u16, Value) {
    let response = server
        .http
        .post(server.url("/v1/connectors/simbg/inbound/sync"))
        .bearer_auth(token)
        .send()
        .await
        .expect("POST sync");
    pintu_tests::into_json(response).await
}

/// The applications `simbg` created, by SIMBG uid.
async fn imported(server: &Server) -> Vec<Value> {
    let mut apps: Vec<Value> = all_applications(server, "")
        .await
        .into_iter()
        .filter(|a| a["external"]["simbg"].is_object())
        .collect();
    apps.sort_by_key(|a| a["external"]["simbg"]["uid"].to_string());
    apps
}

fn by_uid<'a>(apps: &'a [Value], uid: &str) -> &'a Value {
    apps.iter()
        .find(|a| a["external"]["simbg"]["uid"] == uid)
        .unwrap_or_else(|| panic!("no application of SIMBG {uid} in {apps:?}"))
}

fn notes(app: &Value) -> Vec<String> {
    app["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["note"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_sync_imports_pbg_applications_that_the_region_assesses_and_flags_levy_mismatches() {
    let simbg = FakeSimbg::start(EMAIL, PASSWORD, sample_applications());
    let (_setup, server) = serve(&simbg, |_| {}).await;

    let (status, summary) = trigger(&server, TRIGGER).await;
    assert_eq!(status, 200, "{summary}\n{}", server.log());
    assert_eq!(
        summary["imported"].as_array().unwrap().len(),
        2,
        "{summary}"
    );
    assert_eq!(
        summary["mismatches"],
        serde_json::json!([SHOP]),
        "{summary}"
    );
    // The cancelled warehouse (status 3) is not imported.
    assert_eq!(summary["skipped"].as_array().unwrap().len(), 1, "{summary}");

    let apps = imported(&server).await;
    assert_eq!(apps.len(), 2);
    let house = by_uid(&apps, HOUSE);
    assert_eq!(house["permit"], "pbg");
    assert_eq!(house["status"], "draft");
    assert_eq!(house["applicant"]["name"], "Budi Santoso");
    assert_eq!(house["data"]["fungsi"], "hunian_tidak_sederhana");
    assert_eq!(house["data"]["jumlah_lantai"], 2);
    let ext = &house["external"]["simbg"];
    assert_eq!(ext["registration_number"], "PBG-187201-27112026-01");
    // Worked example A of the levy guide: the region's rules agree with SIMBG's SKRD.
    assert_eq!(ext["levy_pintu"], "1183500");
    assert_eq!(ext["skrd_amount"], "1183500");
    assert_eq!(ext["levy_mismatch"], false);

    // The UMKM shop: SIMBG priced its gate (gapura) at 0; Kota Metro's table says Rp 12 000/m².
    let shop = by_uid(&apps, SHOP);
    let ext = &shop["external"]["simbg"];
    assert_eq!(ext["levy_pintu"], "1696250");
    assert_eq!(ext["skrd_amount"], "1624250");
    assert_eq!(ext["levy_mismatch"], true);
    assert_eq!(ext["levy_difference"], "72000");
    let shop_notes = notes(shop);
    assert!(
        shop_notes
            .iter()
            .any(|n| n.contains("Rp 1624250") && n.contains("Rp 1696250")),
        "{shop_notes:?}"
    );
    assert!(notes(house)
        .iter()
        .all(|n| !n.contains("Retribusi berbeda")));

    // The levy Pintu states for the imported data is the same through its own API.
    let (status, levy) = server
        .post(
            "/v1/permits/pbg/levy",
            serde_json::json!({"data": shop["data"]}),
        )
        .await;
    assert_eq!(status, 200, "{levy}");
    assert_eq!(levy["total"], "1696250");

    // A second sync finds nothing new.
    let (status, again) = trigger(&server, TRIGGER).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["imported"], serde_json::json!([]), "{again}");
    assert_eq!(imported(&server).await.len(), 2);

    // SIMBG's API takes no status reports: the connector only read (and logged in).
    for r in simbg.received() {
        assert!(
            r.method == "GET" || r.path.starts_with("/api/user/v1/auth/"),
            "unexpected {} {}",
            r.method,
            r.path
        );
    }
}

#[tokio::test]
async fn an_expired_token_is_refreshed_and_status_changes_reach_the_application() {
    let simbg = FakeSimbg::start(EMAIL, PASSWORD, sample_applications());
    let (_setup, server) = serve(&simbg, |_| {}).await;
    assert_eq!(trigger(&server, TRIGGER).await.0, 200);
    assert_eq!(simbg.tokens_issued(), 1, "one login");

    simbg.expire_access_tokens();
    simbg.set_status(HOUSE, 14, "Menunggu Pembayaran");
    let (status, summary) = trigger(&server, TRIGGER).await;
    assert_eq!(status, 200, "{summary}\n{}", server.log());
    assert_eq!(summary["updated"], serde_json::json!([HOUSE]), "{summary}");
    let list_calls: Vec<u16> = simbg
        .received_at("/api/pbg/v1/list/")
        .iter()
        .map(|r| r.status)
        .collect();
    // First sync: 200; second: 401 with the expired token, then 200 after the refresh.
    assert_eq!(list_calls, [200, 401, 200]);
    assert_eq!(
        simbg.received_at("/api/user/v1/auth/token/refresh/").len(),
        1
    );
    assert_eq!(simbg.received_at("/api/user/v1/auth/login/").len(), 1);

    let apps = imported(&server).await;
    let house = by_uid(&apps, HOUSE);
    assert_eq!(house["external"]["simbg"]["status"], 14);
    assert_eq!(
        house["external"]["simbg"]["status_name"],
        "Menunggu Pembayaran"
    );
    assert!(
        notes(house)
            .iter()
            .any(|n| n.contains("Perhitungan Retribusi → Menunggu Pembayaran")),
        "{:?}",
        notes(house)
    );

    // Refresh refused too: a new login.
    simbg.expire_all_tokens();
    assert_eq!(trigger(&server, TRIGGER).await.0, 200);
    assert_eq!(simbg.received_at("/api/user/v1/auth/login/").len(), 2);
}

#[tokio::test]
async fn a_failing_simbg_fails_the_sync_and_the_next_one_imports() {
    let simbg = FakeSimbg::start(EMAIL, PASSWORD, sample_applications());
    let (_setup, server) = serve(&simbg, |_| {}).await;

    simbg.fail_next(1, Failure::Status(500));
    let (status, answer) = trigger(&server, TRIGGER).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("500"),
        "{answer}"
    );
    assert!(imported(&server).await.is_empty());

    let (status, summary) = trigger(&server, TRIGGER).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(imported(&server).await.len(), 2);

    // The trigger needs its token.
    assert_eq!(trigger(&server, "salah").await.0, 401);
}

#[tokio::test]
async fn the_schedule_imports_without_being_asked() {
    let simbg = FakeSimbg::start(EMAIL, PASSWORD, sample_applications());
    let (_setup, server) = serve(&simbg, |m| {
        m["sync_every"] = toml_edit::value("1s");
    })
    .await;
    let apps = wait_until(
        &server,
        "the scheduled sync's drafts",
        Duration::from_secs(60),
        async || {
            let apps = imported(&server).await;
            (apps.len() == 2).then_some(apps)
        },
    )
    .await;
    assert_eq!(
        by_uid(&apps, SHOP)["external"]["simbg"]["levy_mismatch"],
        true
    );
}
