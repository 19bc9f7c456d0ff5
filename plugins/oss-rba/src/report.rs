//! Reports to OSS: an application's progress (`receiveLicenseStatus`) and the issued permit
//! (`receiveLicense`), built from an outbox event, and how OSS's answer decides the delivery.

use pintu_connector_sdk::LocalTime;
use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::text::field;

/// The guide's `kd_status` codes with their names (`nama_status`).
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

/// `status_izin` of an issued permit.
pub const STATUS_IZIN_TERBIT: &str = "50";

/// What to do with one event.
#[derive(Debug, PartialEq)]
pub enum Report {
    /// Nothing to send (not an OSS application, or a step the office does not report).
    Skip(String),
    /// POST `body` to `<base_url>/<method>`.
    Send { method: &'static str, body: Value },
    /// The event can never be reported (e.g. an issued permit without a number).
    Impossible(String),
}

/// The report for event `kind` with its `data`, of the application `snapshot`, at local time
/// `at`.
pub fn report(
    kind: &str,
    data: &Value,
    snapshot: &Value,
    at: &LocalTime,
    config: &Config,
) -> Report {
    let oss = &snapshot["external"]["oss-rba"];
    if field(oss, "id_izin").is_empty() {
        return Report::Skip("not an OSS application (no external[\"oss-rba\"].id_izin)".into());
    }
    let permit = first_text(&[field(data, "permit"), field(snapshot, "permit")]);
    let step = first_text(&[
        field(data, "to"),
        field(data, "step"),
        field(snapshot, "step"),
    ]);
    let code = match kind {
        "permit.issued" => return license(data, snapshot, oss, &permit, at, config),
        "application.submitted" | "application.advanced" => config.status_for_step(&permit, &step),
        "application.returned" => config
            .status_for(&permit, "returned")
            .or_else(|| config.status_for_step(&permit, &step)),
        "application.rejected" => config.status_for(&permit, "rejected"),
        "application.completed" => config.status_for(&permit, "completed"),
        other => return Report::Skip(format!("event `{other}` is not reported")),
    };
    let Some(code) = code else {
        return Report::Skip(format!(
            "no kd_status for `{kind}` at step `{step}` of `{permit}` in [config.status_map]"
        ));
    };
    let nama_status = KD_STATUS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, n)| *n)
        .unwrap_or_default();
    Report::Send {
        method: "receiveLicenseStatus",
        body: json!({"IZINSTATUS": {
            "nib": field(oss, "nib"),
            "id_produk": field(oss, "id_produk"),
            "id_proyek": field(oss, "id_proyek"),
            "oss_id": field(oss, "oss_id"),
            "id_izin": field(oss, "id_izin"),
            "kd_izin": field(oss, "kd_izin"),
            "kd_instansi": config.kd_instansi,
            "kd_status": code,
            "tgl_status": at.datetime(),
            "nip_status": "",
            "nama_status": nama_status,
            "keterangan": keterangan(snapshot, &step),
            "file_lampiran": "",
        }}),
    }
}

fn first_text(candidates: &[String]) -> String {
    candidates
        .iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default()
}

/// What staff see in OSS: the office's application id, registration number and step, and the
/// note of the last change when there is one.
fn keterangan(snapshot: &Value, step: &str) -> String {
    let mut text = format!("Permohonan {}", field(snapshot, "id"));
    let registration = field(snapshot, "registration_number");
    if !registration.is_empty() {
        text.push_str(&format!(" ({registration})"));
    }
    if !step.is_empty() {
        text.push_str(&format!(", langkah {step}"));
    }
    let note = snapshot["history"]
        .as_array()
        .and_then(|h| h.last())
        .map(|h| field(h, "note"))
        .unwrap_or_default();
    if !note.is_empty() {
        text.push_str(&format!(": {note}"));
    }
    text
}

fn license(
    data: &Value,
    snapshot: &Value,
    oss: &Value,
    permit: &str,
    at: &LocalTime,
    config: &Config,
) -> Report {
    let nomor = first_text(&[
        field(data, "permit_number"),
        field(snapshot, "permit_number"),
    ]);
    if nomor.is_empty() {
        return Report::Impossible("permit.issued without a permit number".into());
    }
    let berlaku = config
        .masa_berlaku_tahun
        .get(permit)
        .map(|years| add_years(at, *years))
        .unwrap_or_default();
    let id = field(snapshot, "id");
    let file_izin = config
        .file_izin_url
        .replace("{id}", &url_encode(&id))
        .replace("{nomor}", &url_encode(&nomor));
    let kd_daerah = first_text(&[field(oss, "kd_daerah"), config.kd_daerah.clone()]);
    let mut izin = json!({
        "nib": field(oss, "nib"),
        "id_proyek": field(oss, "id_proyek"),
        "oss_id": field(oss, "oss_id"),
        "id_izin": field(oss, "id_izin"),
        "kd_izin": field(oss, "kd_izin"),
        "kd_daerah": kd_daerah,
        "nomor_izin": nomor,
        "tgl_terbit_izin": at.date(),
        "tgl_berlaku_izin": berlaku,
        "nama_ttd": config.penandatangan.nama,
        "nip_ttd": config.penandatangan.nip,
        "jabatan_ttd": config.penandatangan.jabatan,
        "status_izin": STATUS_IZIN_TERBIT,
        "file_izin": file_izin,
        "keterangan": keterangan(snapshot, ""),
        "file_lampiran": "",
        "jenis_perizinan": field(oss, "nama_izin"),
    });
    if config.data_teknis_permits.iter().any(|p| p == permit) {
        if let Some(map) = izin.as_object_mut() {
            map.insert("data_teknis".into(), data_teknis(&snapshot["data"]));
        }
    }
    Report::Send {
        method: "receiveLicense",
        body: json!({ "IZINFINAL": izin }),
    }
}

/// The approved building figures of a PBG (the `pbg` form's fields); what the form does not
/// hold (height, basement) is sent empty.
fn data_teknis(form: &Value) -> Value {
    let mut teknis = Map::new();
    teknis.insert(
        "luas_bangunan_disetujui".into(),
        Value::String(field(form, "luas_lantai_total")),
    );
    teknis.insert(
        "jumlah_lantai_disetujui".into(),
        Value::String(field(form, "jumlah_lantai")),
    );
    for key in [
        "tinggi_bangunan_disetujui",
        "luas_basement_disetujui",
        "jumlah_lantai_basement_disetujui",
    ] {
        teknis.insert(key.into(), Value::String(String::new()));
    }
    Value::Object(teknis)
}

/// `YYYY-MM-DD` `years` after `at` (29 February becomes 28 February in a common year).
fn add_years(at: &LocalTime, years: u32) -> String {
    let year = at.year + i64::from(years);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let day = if at.month == 2 && at.day == 29 && !leap {
        28
    } else {
        at.day
    };
    format!("{year:04}-{:02}-{day:02}", at.month)
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Milliseconds since the epoch of an RFC 3339 time (`2026-11-30T02:10:00Z`, fractions and
/// offsets allowed), as the outbox writes `at`.
pub fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = std::str::from_utf8(b.get(from..from + len)?).ok()?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = std::str::from_utf8(b.get(start..i)?).ok()?;
        let first3: String = digits.chars().chain("000".chars()).take(3).collect();
        millis = first3.parse().ok()?;
    }
    let offset_secs = match b.get(i) {
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let secs = num(i + 1, 2)? * 3600 + num(i + 4, 2)? * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// How a delivery ends, from OSS's answer.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Ok,
    /// Worth another attempt: OSS is down, slow or overloaded.
    Retry(String),
    /// OSS refused what was sent; sending it again cannot help.
    Failed(String),
}

/// OSS answers with an HTTP status and, in the body, `respon<method>.kode` (sometimes an error
/// code inside a 200): the code decides when there is one.
pub fn verdict(method: &str, status: u16, body: &[u8]) -> Verdict {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let answer = &parsed[format!("respon{method}")];
    let kode = match &answer["kode"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    let effective = if (200..300).contains(&status) {
        kode.and_then(|k| u16::try_from(k).ok()).unwrap_or(status)
    } else {
        status
    };
    if (200..300).contains(&effective) {
        return Verdict::Ok;
    }
    let detail = match field(answer, "keterangan") {
        k if k.is_empty() => String::from_utf8_lossy(body).chars().take(300).collect(),
        k => k,
    };
    let why = format!("OSS {method} answered {effective}: {detail}");
    if effective >= 500 || effective == 408 || effective == 429 {
        Verdict::Retry(why)
    } else {
        Verdict::Failed(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config() -> Config {
        Config {
            base_url: "http://oss/stg/v1/kl/rba/".into(),
            kd_daerah: "1872".into(),
            kd_instansi: "1872".into(),
            data_teknis_permits: vec!["pbg".into()],
            status_map: BTreeMap::from(
                [
                    ("pendaftaran", "20"),
                    ("entri_data", "10"),
                    ("pbg.penyerahan", "50"),
                    ("penyerahan", "52"),
                    ("returned", "11"),
                    ("rejected", "90"),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            ),
            ..Config::default()
        }
    }

    fn snapshot() -> Value {
        json!({
            "id": "APP-3", "permit": "pbg", "registration_number": "REG/PBG/2026/00001",
            "step": "entri_data", "permit_number": null,
            "data": {"luas_lantai_total": "180", "jumlah_lantai": 2},
            "external": {"oss-rba": {"nib": "9120301234567", "id_izin": "I-1", "id_proyek": "R-1",
                "oss_id": "P-1", "kd_izin": "058000010001", "id_produk": "PR-1",
                "nama_izin": "Persetujuan Bangunan Gedung"}},
            "history": [{"note": null}, {"note": "berkas lengkap"}]
        })
    }

    fn at() -> LocalTime {
        LocalTime::from_unix_millis(parse_rfc3339_millis("2026-11-30T02:10:05Z").unwrap(), 420)
    }

    #[test]
    fn rfc3339_times_read_with_fractions_and_offsets() {
        let z = parse_rfc3339_millis("2026-11-30T02:10:05Z").unwrap();
        assert_eq!(
            LocalTime::from_unix_millis(z, 420).datetime(),
            "2026-11-30 09:10:05"
        );
        assert_eq!(
            parse_rfc3339_millis("2026-11-30T09:10:05.250+07:00"),
            Some(z + 250)
        );
        assert_eq!(
            parse_rfc3339_millis("2026-11-30T02:10:05.123456789Z"),
            Some(z + 123)
        );
        assert_eq!(parse_rfc3339_millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_millis("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        assert_eq!(parse_rfc3339_millis("30/11/2026"), None);
        assert_eq!(parse_rfc3339_millis("2026-11-30T02:10:05"), None);
    }

    #[test]
    fn an_advance_reports_the_status_of_the_step_entered() {
        let data = json!({"permit": "pbg", "from": "pendaftaran", "to": "entri_data"});
        let Report::Send { method, body } =
            report("application.advanced", &data, &snapshot(), &at(), &config())
        else {
            panic!("a report")
        };
        assert_eq!(method, "receiveLicenseStatus");
        let s = &body["IZINSTATUS"];
        assert_eq!(s["kd_status"], "10");
        assert_eq!(s["nama_status"], "Dokumen lengkap");
        assert_eq!(s["tgl_status"], "2026-11-30 09:10:05");
        assert_eq!(s["id_izin"], "I-1");
        assert_eq!(s["id_produk"], "PR-1");
        assert_eq!(s["kd_instansi"], "1872");
        assert_eq!(
            s["keterangan"],
            "Permohonan APP-3 (REG/PBG/2026/00001), langkah entri_data: berkas lengkap"
        );
        assert_eq!(
            config().url("receiveLicenseStatus"),
            "http://oss/stg/v1/kl/rba/receiveLicenseStatus"
        );
    }

    #[test]
    fn permit_qualified_steps_returns_and_rejections_have_their_codes() {
        let code =
            |kind: &str, data: Value| match report(kind, &data, &snapshot(), &at(), &config()) {
                Report::Send { body, .. } => {
                    body["IZINSTATUS"]["kd_status"].as_str().unwrap().to_owned()
                }
                other => format!("{other:?}"),
            };
        assert_eq!(
            code(
                "application.advanced",
                json!({"permit": "pbg", "to": "penyerahan"})
            ),
            "50"
        );
        assert_eq!(
            code(
                "application.advanced",
                json!({"permit": "sip-dokter", "to": "penyerahan"})
            ),
            "52"
        );
        assert_eq!(
            code(
                "application.returned",
                json!({"permit": "pbg", "to": "pendaftaran"})
            ),
            "11"
        );
        assert_eq!(code("application.rejected", json!({"permit": "pbg"})), "90");
        assert_eq!(
            code(
                "application.submitted",
                json!({"permit": "pbg", "to": "pendaftaran"})
            ),
            "20"
        );
        assert!(code(
            "application.advanced",
            json!({"permit": "pbg", "to": "konsultasi_teknis"})
        )
        .starts_with("Skip"));
        assert!(code("application.completed", json!({"permit": "pbg"})).starts_with("Skip"));
        let mut local = snapshot();
        local["external"] = json!({});
        assert!(matches!(
            report(
                "application.advanced",
                &json!({"to": "entri_data"}),
                &local,
                &at(),
                &config()
            ),
            Report::Skip(_)
        ));
    }

    #[test]
    fn an_issued_pbg_reports_izinfinal_with_data_teknis() {
        let mut config = config();
        config.file_izin_url = "https://izin.example/{id}/{nomor}.pdf".into();
        config.masa_berlaku_tahun.insert("pbg".into(), 5);
        config.penandatangan.jabatan = "Kepala DPMPTSP".into();
        let data = json!({"permit": "pbg", "permit_number": "503/0001/PBG/DPMPTSP/XI/2026"});
        let Report::Send { method, body } =
            report("permit.issued", &data, &snapshot(), &at(), &config)
        else {
            panic!("a report")
        };
        assert_eq!(method, "receiveLicense");
        let f = &body["IZINFINAL"];
        assert_eq!(f["nomor_izin"], "503/0001/PBG/DPMPTSP/XI/2026");
        assert_eq!(f["tgl_terbit_izin"], "2026-11-30");
        assert_eq!(f["tgl_berlaku_izin"], "2031-11-30");
        assert_eq!(f["status_izin"], "50");
        assert_eq!(f["kd_daerah"], "1872");
        assert_eq!(f["jabatan_ttd"], "Kepala DPMPTSP");
        assert_eq!(f["jenis_perizinan"], "Persetujuan Bangunan Gedung");
        assert_eq!(
            f["file_izin"],
            "https://izin.example/APP-3/503%2F0001%2FPBG%2FDPMPTSP%2FXI%2F2026.pdf"
        );
        assert_eq!(f["data_teknis"]["luas_bangunan_disetujui"], "180");
        assert_eq!(f["data_teknis"]["jumlah_lantai_disetujui"], "2");
        assert_eq!(f["data_teknis"]["tinggi_bangunan_disetujui"], "");
        let mut other = snapshot();
        other["permit"] = json!("sip-dokter");
        let Report::Send { body, .. } = report(
            "permit.issued",
            &json!({"permit_number": "1"}),
            &other,
            &at(),
            &config,
        ) else {
            panic!("a report")
        };
        assert!(body["IZINFINAL"].get("data_teknis").is_none());
        assert!(matches!(
            report("permit.issued", &json!({}), &snapshot(), &at(), &config),
            Report::Impossible(_)
        ));
    }

    #[test]
    fn five_hundreds_retry_and_other_refusals_fail() {
        let ok = br#"{"responreceiveLicenseStatus": {"kode": 200, "keterangan": "ok"}}"#;
        assert_eq!(verdict("receiveLicenseStatus", 200, ok), Verdict::Ok);
        assert_eq!(verdict("receiveLicense", 200, b""), Verdict::Ok);
        let inner = br#"{"responreceiveLicense": {"kode": "500", "keterangan": "gagal proses"}}"#;
        assert_eq!(
            verdict("receiveLicense", 200, inner),
            Verdict::Retry("OSS receiveLicense answered 500: gagal proses".into())
        );
        assert!(matches!(
            verdict("receiveLicense", 504, b"<html>"),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            verdict("receiveLicense", 429, b""),
            Verdict::Retry(_)
        ));
        let refused =
            br#"{"responreceiveLicense": {"kode": 400, "keterangan": "IZINFINAL: missing nib"}}"#;
        assert_eq!(
            verdict("receiveLicense", 400, refused),
            Verdict::Failed("OSS receiveLicense answered 400: IZINFINAL: missing nib".into())
        );
        assert!(matches!(
            verdict("receiveLicense", 401, b"{}"),
            Verdict::Failed(_)
        ));
    }
}
