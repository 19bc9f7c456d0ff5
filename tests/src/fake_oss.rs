//! A fake OSS RBA (the national business-licensing system) speaking the shapes of its
//! integration guide (PIA OSS RBA 4.3.22, `/work`'s domain notes: `oss-rba.md`): the methods a
//! region calls — `receiveLicenseStatus`, `receiveLicense`, `checkLicenseStatus` — under
//! `/stg/v1/kl/rba/<method>` (staging) and `/v1/kl/rba/<method>` (production), each checking the
//! `user_key` header and the documented body shape. It records every request and fails on demand.
//!
//! The other direction (OSS calling the region's `receiveNIB`) is a client helper:
//! [`receive_nib_token`] and [`send_receive_nib`].
//!
//! `GET /_fake/received` lists what it received (for the README tour); `GET /_fake/licenses`
//! what it holds per `id_izin` (latest status and issued permit).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use chrono::NaiveDate;
use serde_json::{json, Map, Value};
use sha1::{Digest, Sha1};

use crate::fake::{fail_if_asked, json_response, Failure, Incoming, Journal, Received, Running};

/// The `kd_status` codes of the guide.
pub const KD_STATUS: [(&str, &str); 12] = [
    ("10", "Dokumen lengkap"),
    ("11", "Dokumen tidak lengkap"),
    ("20", "Validasi"),
    ("30", "Verifikasi pembayaran"),
    ("33", "Pembayaran disetujui"),
    ("40", "Pemeriksaan lapangan"),
    ("45", "Persyaratan diverifikasi instansi teknis"),
    ("50", "Disetujui"),
    ("52", "Disetujui sementara"),
    ("57", "Disetujui otomatis"),
    ("90", "Ditolak"),
    ("93", "Persyaratan ditolak"),
];

/// Keys of `IZINSTATUS` (all present; those in [`IZINSTATUS_FILLED`] non-empty).
const IZINSTATUS_KEYS: [&str; 13] = [
    "nib",
    "id_produk",
    "id_proyek",
    "oss_id",
    "id_izin",
    "kd_izin",
    "kd_instansi",
    "kd_status",
    "tgl_status",
    "nip_status",
    "nama_status",
    "keterangan",
    "file_lampiran",
];
const IZINSTATUS_FILLED: [&str; 6] = [
    "nib",
    "id_izin",
    "kd_izin",
    "oss_id",
    "kd_status",
    "tgl_status",
];

const IZINFINAL_KEYS: [&str; 17] = [
    "nib",
    "id_proyek",
    "oss_id",
    "id_izin",
    "kd_izin",
    "kd_daerah",
    "nomor_izin",
    "tgl_terbit_izin",
    "tgl_berlaku_izin",
    "nama_ttd",
    "nip_ttd",
    "jabatan_ttd",
    "status_izin",
    "file_izin",
    "keterangan",
    "file_lampiran",
    "jenis_perizinan",
];
const IZINFINAL_FILLED: [&str; 7] = [
    "nib",
    "id_izin",
    "kd_izin",
    "oss_id",
    "nomor_izin",
    "tgl_terbit_izin",
    "status_izin",
];
const DATA_TEKNIS_KEYS: [&str; 5] = [
    "luas_bangunan_disetujui",
    "jumlah_lantai_disetujui",
    "tinggi_bangunan_disetujui",
    "luas_basement_disetujui",
    "jumlah_lantai_basement_disetujui",
];

/// What OSS knows of one permit (`id_izin`) from what the region sent.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct License {
    /// Every accepted `IZINSTATUS`, in order.
    pub statuses: Vec<Value>,
    /// The accepted `IZINFINAL`, if any (the latest).
    pub final_license: Option<Value>,
}

struct OssState {
    user_key: String,
    journal: Arc<Journal>,
    licenses: Mutex<BTreeMap<String, License>>,
}

/// A running fake OSS RBA; stops when dropped.
pub struct FakeOss {
    running: Running,
    state: Arc<OssState>,
}

impl FakeOss {
    /// On an ephemeral port, accepting `user_key`.
    pub fn start(user_key: &str) -> Self {
        Self::start_on(0, user_key).expect("fake OSS binds 127.0.0.1:0")
    }

    /// On `127.0.0.1:port`.
    pub fn start_on(port: u16, user_key: &str) -> std::io::Result<Self> {
        let state = Arc::new(OssState {
            user_key: user_key.to_owned(),
            journal: Arc::new(Journal::default()),
            licenses: Mutex::new(BTreeMap::new()),
        });
        let router = Router::new()
            .route("/stg/v1/kl/rba/{method}", post(method))
            .route("/v1/kl/rba/{method}", post(method))
            .route("/_fake/received", get(list_received))
            .route("/_fake/licenses", get(list_licenses))
            .with_state(state.clone());
        Ok(Self {
            running: Running::spawn(router, port)?,
            state,
        })
    }

    /// `http://127.0.0.1:<port>`, the `[allow] hosts` entry.
    pub fn origin(&self) -> String {
        self.running.origin()
    }

    /// The staging base URL a connector appends method names to.
    pub fn base_url(&self) -> String {
        format!("{}/stg/v1/kl/rba", self.origin())
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.journal.received()
    }

    /// Requests to `method` (e.g. `receiveLicenseStatus`), answered or not.
    pub fn received_by(&self, method: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path.ends_with(&format!("/{method}")))
            .collect()
    }

    /// What OSS holds for `id_izin` (accepted statuses and final permit).
    pub fn license(&self, id_izin: &str) -> License {
        self.state
            .licenses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id_izin)
            .cloned()
            .unwrap_or_default()
    }

    /// The `kd_status` of every accepted `IZINSTATUS` for `id_izin`, in order.
    pub fn kd_statuses(&self, id_izin: &str) -> Vec<String> {
        self.license(id_izin)
            .statuses
            .iter()
            .map(|s| s["kd_status"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The next `times` requests fail with `failure`.
    pub fn fail_next(&self, times: usize, failure: Failure) {
        self.state.journal.faults().push(times, failure);
    }

    /// Every request fails with `failure` until `None`.
    pub fn fail_always(&self, failure: Option<Failure>) {
        self.state.journal.faults().set_always(failure);
    }

    /// Polls until `pred` holds for the received requests (bounded); see [`Journal::wait_for`].
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        self.state.journal.wait_for(what, timeout, pred)
    }

    /// Polls (bounded) until OSS holds a final permit for `id_izin`; returns it.
    pub fn wait_for_license(&self, id_izin: &str, timeout: Duration) -> Value {
        self.wait_for(&format!("receiveLicense of {id_izin}"), timeout, |_| {
            self.license(id_izin).final_license.is_some()
        });
        self.license(id_izin).final_license.unwrap_or_default()
    }

    /// Blocks until the server stops (the standalone example).
    pub fn join(self) {
        self.running.join();
    }
}

async fn method(
    State(state): State<Arc<OssState>>,
    Path(name): Path<String>,
    incoming: Incoming,
) -> Response {
    let reply_key = format!("respon{name}");
    let refuse = |incoming: Incoming, status: u16, why: String| {
        incoming.answer(
            &state.journal,
            status,
            json!({ reply_key.clone(): {"kode": status, "keterangan": why} }),
        )
    };
    let incoming = match fail_if_asked(&state.journal, incoming, |status| {
        json!({ reply_key.clone(): {"kode": status, "keterangan": format!("gagal (disengaja): {status}")} })
    })
    .await
    {
        Ok(failed) => return failed,
        Err(incoming) => incoming,
    };
    if incoming.header("user_key") != Some(state.user_key.as_str()) {
        return refuse(
            incoming,
            401,
            "user_key tidak valid (invalid access)".into(),
        );
    }
    let body = incoming.body();
    let checked = match name.as_str() {
        "receiveLicenseStatus" => check_status(&body),
        "receiveLicense" => check_final(&body),
        "checkLicenseStatus" => check_query(&state, &body),
        other => return refuse(incoming, 404, format!("service `{other}` not found")),
    };
    match checked {
        Err(why) => refuse(incoming, 400, why),
        Ok(Accepted::Status(id_izin, status)) => {
            state
                .licenses
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(id_izin)
                .or_default()
                .statuses
                .push(status);
            incoming.answer(
                &state.journal,
                200,
                json!({ reply_key: {"kode": 200, "keterangan": "Status izin berhasil diterima"} }),
            )
        }
        Ok(Accepted::Final(id_izin, license)) => {
            state
                .licenses
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(id_izin.clone())
                .or_default()
                .final_license = Some(license);
            incoming.answer(
                &state.journal,
                200,
                json!({ reply_key: {"kode": 200, "keterangan": "Izin final berhasil diterima", "id_izin": id_izin} }),
            )
        }
        Ok(Accepted::Query(data)) => incoming.answer(
            &state.journal,
            200,
            json!({ reply_key: {"kode": 200, "keterangan": "OK", "dataIZIN": data} }),
        ),
    }
}

enum Accepted {
    Status(String, Value),
    Final(String, Value),
    Query(Value),
}

fn object<'a>(body: &'a Value, key: &str) -> Result<&'a Map<String, Value>, String> {
    body.get(key)
        .and_then(Value::as_object)
        .ok_or_else(|| format!("body must be {{\"{key}\": {{...}}}}"))
}

/// Every key of `keys` present (text, possibly empty; numbers accepted as OSS does), and those
/// of `filled` non-empty.
fn check_keys(
    record: &Map<String, Value>,
    what: &str,
    keys: &[&str],
    filled: &[&str],
) -> Result<(), String> {
    let mut missing = Vec::new();
    let mut empty = Vec::new();
    for key in keys {
        match record.get(*key) {
            None => missing.push(*key),
            Some(Value::String(s)) if s.trim().is_empty() && filled.contains(key) => {
                empty.push(*key)
            }
            Some(Value::Null) if filled.contains(key) => empty.push(*key),
            Some(Value::String(_) | Value::Number(_) | Value::Null) => {}
            Some(other) => return Err(format!("{what}.{key} must be text, got {other}")),
        }
    }
    if !missing.is_empty() {
        return Err(format!("{what}: missing {}", missing.join(", ")));
    }
    if !empty.is_empty() {
        return Err(format!("{what}: empty {}", empty.join(", ")));
    }
    Ok(())
}

fn text<'a>(record: &'a Map<String, Value>, key: &str) -> &'a str {
    record.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM:SS`.
fn is_timestamp(s: &str) -> bool {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").is_ok()
}

fn is_date(s: &str) -> bool {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

fn check_status(body: &Value) -> Result<Accepted, String> {
    let record = object(body, "IZINSTATUS")?;
    check_keys(record, "IZINSTATUS", &IZINSTATUS_KEYS, &IZINSTATUS_FILLED)?;
    let kd_status = text(record, "kd_status");
    if !KD_STATUS.iter().any(|(code, _)| *code == kd_status) {
        return Err(format!(
            "IZINSTATUS.kd_status `{kd_status}` is not a status code"
        ));
    }
    let tgl = text(record, "tgl_status");
    if !is_timestamp(tgl) {
        return Err(format!(
            "IZINSTATUS.tgl_status `{tgl}` is not \"YYYY-MM-DD HH:MM:SS\""
        ));
    }
    Ok(Accepted::Status(
        text(record, "id_izin").to_owned(),
        Value::Object(record.clone()),
    ))
}

fn check_final(body: &Value) -> Result<Accepted, String> {
    let record = object(body, "IZINFINAL")?;
    check_keys(record, "IZINFINAL", &IZINFINAL_KEYS, &IZINFINAL_FILLED)?;
    for key in ["tgl_terbit_izin", "tgl_berlaku_izin"] {
        let value = text(record, key);
        if !value.is_empty() && !is_date(value) {
            return Err(format!("IZINFINAL.{key} `{value}` is not \"YYYY-MM-DD\""));
        }
    }
    match record.get("data_teknis") {
        None | Some(Value::Null) => {}
        Some(Value::Object(teknis)) => {
            check_keys(teknis, "IZINFINAL.data_teknis", &DATA_TEKNIS_KEYS, &[])?;
        }
        Some(other) => {
            return Err(format!(
                "IZINFINAL.data_teknis must be an object, got {other}"
            ))
        }
    }
    Ok(Accepted::Final(
        text(record, "id_izin").to_owned(),
        Value::Object(record.clone()),
    ))
}

fn check_query(state: &OssState, body: &Value) -> Result<Accepted, String> {
    let record = object(body, "CHECKLICENSESTATUS")?;
    let id_izin = text(record, "id_izin");
    if id_izin.is_empty() {
        return Err("CHECKLICENSESTATUS.id_izin is missing".into());
    }
    let licenses = state.licenses.lock().unwrap_or_else(|e| e.into_inner());
    let latest = licenses.get(id_izin).and_then(|l| l.statuses.last());
    let Some(latest) = latest else {
        return Err(format!("id_izin `{id_izin}` has no status"));
    };
    let kd_status = latest["kd_status"].as_str().unwrap_or_default();
    let uraian = KD_STATUS
        .iter()
        .find(|(code, _)| *code == kd_status)
        .map(|(_, name)| *name)
        .unwrap_or_default();
    Ok(Accepted::Query(json!({
        "nib": latest["nib"],
        "id_proyek": latest["id_proyek"],
        "id_izin": id_izin,
        "kd_status": kd_status,
        "uraian_status": uraian,
    })))
}

async fn list_received(State(state): State<Arc<OssState>>) -> Response {
    json_response(200, &json!({ "received": state.journal.received() }))
}

async fn list_licenses(State(state): State<Arc<OssState>>) -> Response {
    let licenses = state
        .licenses
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    json_response(200, &json!({ "licenses": licenses }))
}

/// The `Token` header OSS sends to a region's `receiveNIB`: lowercase hex
/// SHA1(username + password + NIB + date as `Ymd`).
pub fn receive_nib_token(username: &str, password: &str, nib: &str, on: NaiveDate) -> String {
    let mut hasher = Sha1::new();
    hasher.update(username.as_bytes());
    hasher.update(password.as_bytes());
    hasher.update(nib.as_bytes());
    hasher.update(on.format("%Y%m%d").to_string().as_bytes());
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sample `receiveNIB` body (`tests/fixtures/oss/receive_nib.json`): a full payload with
/// fields a connector ignores, nulls, empty strings and missing optional arrays.
pub fn sample_receive_nib() -> Value {
    let path = crate::repo_root().join("tests/fixtures/oss/receive_nib.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The NIB of a `receiveNIB` body.
pub fn nib_of(body: &Value) -> String {
    body["dataNIB"]["nib"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// POSTs `body` to Pintu's `receiveNIB` (`pintu_base` e.g. `http://127.0.0.1:8080`) with
/// `token` as the `Token` header, as OSS does; returns the status and the JSON answer.
pub async fn send_receive_nib(
    http: &reqwest::Client,
    pintu_base: &str,
    token: &str,
    body: &Value,
) -> (u16, Value) {
    let response = http
        .post(format!(
            "{pintu_base}/v1/connectors/oss-rba/inbound/receiveNIB"
        ))
        .header("Token", token)
        .json(body)
        .send()
        .await
        .expect("POST receiveNIB");
    crate::into_json(response).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(url: &str, user_key: Option<&str>, body: &Value) -> (u16, Value) {
        let client = reqwest::blocking::Client::new();
        let mut request = client.post(url).json(body);
        if let Some(key) = user_key {
            request = request.header("user_key", key);
        }
        let response = request.send().expect("POST to the fake");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    fn status_body(kd_status: &str) -> Value {
        json!({"IZINSTATUS": {
            "nib": "9120301234567", "id_produk": "P-1", "id_proyek": "R-1", "oss_id": "P-2",
            "id_izin": "I-1", "kd_izin": "058000010001", "kd_instansi": "1872",
            "kd_status": kd_status, "tgl_status": "2026-11-30 09:15:00", "nip_status": "",
            "nama_status": "Validasi", "keterangan": "", "file_lampiran": ""
        }})
    }

    #[test]
    fn the_token_is_the_lowercase_hex_sha1_of_username_password_nib_and_date() {
        let on = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        assert_eq!(
            receive_nib_token("pemdametro", "rahasia", "9120301234567", on),
            "1b09d8e04642e7b480d50bacd4d596603eb1a327"
        );
    }

    #[test]
    fn statuses_need_the_user_key_and_the_documented_shape() {
        let oss = FakeOss::start("kunci");
        let url = format!("{}/receiveLicenseStatus", oss.base_url());
        let (status, v) = post(&url, None, &status_body("20"));
        assert_eq!(status, 401, "{v}");
        assert_eq!(v["responreceiveLicenseStatus"]["kode"], 401);
        let (status, v) = post(&url, Some("kunci"), &status_body("21"));
        assert_eq!(status, 400, "{v}");
        let mut incomplete = status_body("20");
        incomplete["IZINSTATUS"]
            .as_object_mut()
            .unwrap()
            .remove("tgl_status");
        let (status, v) = post(&url, Some("kunci"), &incomplete);
        assert_eq!(status, 400, "{v}");
        assert!(v.to_string().contains("tgl_status"), "{v}");
        let (status, v) = post(&url, Some("kunci"), &status_body("20"));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["responreceiveLicenseStatus"]["kode"], 200);
        assert_eq!(oss.kd_statuses("I-1"), ["20"]);
        assert_eq!(oss.received_by("receiveLicenseStatus").len(), 4);
        let (status, v) = post(
            &format!("{}/checkLicenseStatus", oss.base_url()),
            Some("kunci"),
            &json!({"CHECKLICENSESTATUS": {"id_izin": "I-1"}}),
        );
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["responcheckLicenseStatus"]["dataIZIN"]["kd_status"], "20");
    }

    #[test]
    fn failures_come_in_the_order_they_were_asked_for() {
        let oss = FakeOss::start("kunci");
        let url = format!("{}/receiveLicenseStatus", oss.base_url());
        oss.fail_next(2, Failure::Status(500));
        assert_eq!(post(&url, Some("kunci"), &status_body("20")).0, 500);
        assert_eq!(post(&url, Some("kunci"), &status_body("20")).0, 500);
        assert_eq!(post(&url, Some("kunci"), &status_body("20")).0, 200);
        let statuses: Vec<u16> = oss.received().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [500, 500, 200]);
    }
}
