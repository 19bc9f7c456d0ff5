//! `receiveNIB`: OSS pushes a business's NIB with the checklist of permits it needs. Each
//! checklist item this region handles becomes one draft application.

use serde_json::{json, Map, Value};
use sha1::{Digest, Sha1};

use crate::config::Config;
use crate::text::{code2, field, list};

/// `kewenangan` of a regency or city (`00` central, `01` province).
pub const KEWENANGAN_KABUPATEN_KOTA: &str = "02";

/// One draft to create, for one checklist item.
#[derive(Debug, PartialEq)]
pub struct Planned {
    /// The draft's idempotency key: OSS's `id_izin`, unique per checklist item.
    pub key: String,
    pub permit: String,
    pub applicant: Value,
    pub external: Value,
}

/// What a `receiveNIB` body asks of this region.
#[derive(Debug, Default)]
pub struct Plan {
    pub nib: String,
    pub drafts: Vec<Planned>,
    /// Items of this region and authority whose `kd_izin` the office does not map, and items
    /// lacking an `id_izin`: the reply names them.
    pub unhandled: Vec<String>,
    /// `tipe_dokumen` 3 (revocation) or 4 (cancellation): no new drafts.
    pub withdrawn: bool,
}

/// Reads a `receiveNIB` body; `Err` names what makes it unusable (answered 400).
pub fn plan(body: &Value, config: &Config) -> Result<Plan, String> {
    let data = body
        .get("dataNIB")
        .filter(|d| d.is_object())
        .ok_or("body must be {\"dataNIB\": {...}}")?;
    let nib = field(data, "nib");
    if nib.is_empty() {
        return Err("dataNIB.nib is missing".into());
    }
    let tipe_dokumen = field(data, "tipe_dokumen");
    let mut plan = Plan {
        nib: nib.clone(),
        withdrawn: tipe_dokumen == "3" || tipe_dokumen == "4",
        ..Plan::default()
    };
    for item in list(data, "data_checklist") {
        if field(item, "kd_daerah") != config.kd_daerah
            || code2(&field(item, "kewenangan")) != KEWENANGAN_KABUPATEN_KOTA
        {
            continue;
        }
        let kd_izin = field(item, "kd_izin");
        let id_izin = field(item, "id_izin");
        let permit = config.izin_map.get(&kd_izin).filter(|p| !p.is_empty());
        let (Some(permit), false) = (permit, id_izin.is_empty()) else {
            plan.unhandled.push(format!(
                "{} (kd_izin {kd_izin}{})",
                or_dash(&field(item, "nama_izin")),
                if id_izin.is_empty() {
                    ", tanpa id_izin"
                } else {
                    ""
                }
            ));
            continue;
        };
        if plan.withdrawn {
            continue;
        }
        plan.drafts.push(Planned {
            key: id_izin.clone(),
            permit: permit.clone(),
            applicant: applicant(data),
            external: external(data, item, &nib, &tipe_dokumen),
        });
    }
    Ok(plan)
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// Puts `key: value` into `map` when the value is not empty.
fn put(map: &mut Map<String, Value>, key: &str, value: String) {
    if !value.is_empty() {
        map.insert(key.to_owned(), Value::String(value));
    }
}

/// The applicant as the applications API takes it: the business (name, NPWP, address, phone,
/// e-mail) and its responsible person's NIK when OSS gives an Indonesian identity number.
fn applicant(data: &Value) -> Value {
    let mut applicant = Map::new();
    let responsible = list(data, "penanggung_jwb").first();
    let name = [
        field(data, "nama_perseroan"),
        responsible
            .map(|p| field(p, "nama_penanggung_jwb"))
            .unwrap_or_default(),
    ]
    .into_iter()
    .find(|n| !n.is_empty())
    .unwrap_or_else(|| format!("NIB {}", field(data, "nib")));
    applicant.insert("name".into(), Value::String(name));
    if let Some(person) = responsible {
        let nik = field(person, "no_identitas_penanggung_jwb");
        if code2(&field(person, "jns_identitas_penanggung_jwb")) == "01"
            && nik.len() == 16
            && nik.bytes().all(|b| b.is_ascii_digit())
        {
            put(&mut applicant, "nik", nik);
        }
    }
    put(&mut applicant, "npwp", field(data, "npwp_perseroan"));
    put(&mut applicant, "address", field(data, "alamat_perseroan"));
    put(
        &mut applicant,
        "phone",
        field(data, "nomor_telpon_perseroan"),
    );
    put(&mut applicant, "email", field(data, "email_perusahaan"));
    Value::Object(applicant)
}

/// `external["oss-rba"]`: the OSS ids every later report needs, and what staff want to see of
/// the checklist item without opening OSS.
fn external(data: &Value, item: &Value, nib: &str, tipe_dokumen: &str) -> Value {
    let id_proyek = field(item, "id_proyek");
    let proyek = list(data, "data_proyek")
        .iter()
        .find(|p| field(p, "id_proyek") == id_proyek);
    let lokasi = proyek.and_then(|p| list(p, "data_lokasi_proyek").first());
    let persyaratan: Vec<Value> = list(item, "data_persyaratan")
        .iter()
        .filter(|s| !field(s, "id_syarat").is_empty())
        .map(|s| {
            let mut m = Map::new();
            for key in [
                "id_syarat",
                "no_dokumen",
                "tgl_dokumen",
                "file_dokumen",
                "keterangan",
            ] {
                put(&mut m, key, field(s, key));
            }
            Value::Object(m)
        })
        .collect();
    let mut external = json!({
        "nib": nib,
        "id_izin": field(item, "id_izin"),
        "id_proyek": id_proyek,
        "oss_id": field(data, "oss_id"),
        "kd_izin": field(item, "kd_izin"),
    });
    if let Some(map) = external.as_object_mut() {
        put(map, "id_produk", field(item, "id_produk"));
        put(map, "kd_daerah", field(item, "kd_daerah"));
        put(map, "nama_izin", field(item, "nama_izin"));
        put(map, "jenis_izin", field(item, "jenis_izin"));
        put(map, "flag_checklist", field(item, "flag_checklist"));
        put(map, "tipe_dokumen", tipe_dokumen.to_owned());
        put(map, "kbli", field(item, "kbli"));
        if let Some(p) = proyek {
            put(map, "uraian_usaha", field(p, "uraian_usaha"));
            put(map, "skala_resiko", field(p, "skala_resiko"));
        }
        if let Some(l) = lokasi {
            put(map, "alamat_usaha", field(l, "alamat_usaha"));
        }
        if !persyaratan.is_empty() {
            map.insert("persyaratan".into(), Value::Array(persyaratan));
        }
    }
    external
}

/// The `Token` OSS sends: lowercase hex SHA1(username + password + NIB + `Ymd`).
pub fn token(username: &str, password: &str, nib: &str, ymd: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(username.as_bytes());
    hasher.update(password.as_bytes());
    hasher.update(nib.as_bytes());
    hasher.update(ymd.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `given` is the token of one of `days` (`Ymd`): today and yesterday in office time,
/// so that a push sent just before midnight and received after it still counts. Compared
/// without an early exit, so that the time taken says nothing about the expected token.
pub fn token_matches(
    given: &str,
    username: &str,
    password: &str,
    nib: &str,
    days: &[String],
) -> bool {
    let given = given.trim().to_ascii_lowercase();
    days.iter().fold(false, |found, day| {
        let expected = token(username, password, nib, day);
        let same = given.len() == expected.len()
            && given
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        found | same
    })
}

/// The `responreceiveNIB` answer: status `1` accepted, `2` rejected.
pub fn reply(status: &str, keterangan: &str) -> Value {
    json!({"responreceiveNIB": {"status": status, "keterangan": keterangan}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config() -> Config {
        Config {
            kd_daerah: "1872".into(),
            izin_map: BTreeMap::from([
                ("058000010001".to_owned(), "pbg".to_owned()),
                ("058000020004".to_owned(), "sewa-tanah".to_owned()),
            ]),
            ..Config::default()
        }
    }

    fn sample() -> Value {
        serde_json::from_str(include_str!("../../../tests/fixtures/oss/receive_nib.json")).unwrap()
    }

    #[test]
    fn the_token_is_sha1_hex_of_username_password_nib_and_date() {
        // The same vector as the fake OSS's client helper (tests/src/fake_oss.rs).
        assert_eq!(
            token("pemdametro", "rahasia", "9120301234567", "20261130"),
            "1b09d8e04642e7b480d50bacd4d596603eb1a327"
        );
        let days = ["20261130".to_owned(), "20261129".to_owned()];
        let t = token("u", "p", "9120301234567", "20261129");
        assert!(token_matches(&t, "u", "p", "9120301234567", &days));
        assert!(token_matches(
            &t.to_uppercase(),
            "u",
            "p",
            "9120301234567",
            &days
        ));
        assert!(!token_matches(&t, "u", "p", "9120301234568", &days));
        assert!(!token_matches("", "u", "p", "9120301234567", &days));
        let old = token("u", "p", "9120301234567", "20261128");
        assert!(!token_matches(&old, "u", "p", "9120301234567", &days));
    }

    #[test]
    fn only_items_of_this_region_authority_and_map_become_drafts() {
        let plan = plan(&sample(), &config()).unwrap();
        assert_eq!(plan.nib, "9120301234567");
        let keys: Vec<(&str, &str)> = plan
            .drafts
            .iter()
            .map(|d| (d.key.as_str(), d.permit.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("I-202611271210000000000001", "pbg"),
                ("I-202611271210000000000002", "sewa-tanah")
            ]
        );
        // The SLF item is ours but not mapped; the ministry's and Bandar Lampung's are not ours.
        assert_eq!(plan.unhandled.len(), 1, "{:?}", plan.unhandled);
        assert!(plan.unhandled[0].contains("058000030002"));
        let pbg = &plan.drafts[0];
        assert_eq!(pbg.external["nib"], "9120301234567");
        assert_eq!(pbg.external["id_izin"], "I-202611271210000000000001");
        assert_eq!(pbg.external["id_proyek"], "R-202611270912345678900001");
        assert_eq!(pbg.external["oss_id"], "P-202611270912345678901234");
        assert_eq!(pbg.external["kd_izin"], "058000010001");
        // Requirements with an id are kept (their empty fields left out).
        assert_eq!(pbg.external["persyaratan"].as_array().unwrap().len(), 2);
        assert_eq!(
            pbg.external["persyaratan"][1],
            json!({"id_syarat": "SY-0002"})
        );
        assert_eq!(pbg.applicant["name"], "PT Klinik Sehat Sentosa");
        assert_eq!(pbg.applicant["nik"], "1872012505800001");
        assert_eq!(pbg.applicant["npwp"], "012345678901000");
    }

    #[test]
    fn empty_strings_nulls_and_missing_arrays_are_tolerated() {
        let body = json!({"dataNIB": {
            "nib": 9120301234567u64, "oss_id": null, "nama_perseroan": "",
            "penanggung_jwb": null, "data_proyek": null,
            "data_checklist": [
                {"id_izin": "I-1", "kd_izin": "058000010001", "kd_daerah": "1872", "kewenangan": 2,
                 "data_persyaratan": null, "id_proyek": null},
                {"kd_izin": "058000010001", "kd_daerah": "1872", "kewenangan": "02"},
                null
            ]
        }});
        let plan = plan(&body, &config()).unwrap();
        assert_eq!(plan.drafts.len(), 1);
        assert_eq!(
            plan.drafts[0].applicant,
            json!({"name": "NIB 9120301234567"})
        );
        assert_eq!(plan.drafts[0].external["oss_id"], "");
        assert_eq!(plan.unhandled.len(), 1);
        let without_checklist = json!({"dataNIB": {"nib": "1"}});
        assert!(plan_ok(&without_checklist).drafts.is_empty());
    }

    fn plan_ok(body: &Value) -> Plan {
        plan(body, &config()).unwrap()
    }

    #[test]
    fn a_body_without_nib_is_refused_naming_it() {
        assert!(plan(&json!({}), &config()).unwrap_err().contains("dataNIB"));
        assert!(plan(&json!({"dataNIB": {"nib": ""}}), &config())
            .unwrap_err()
            .contains("nib"));
    }

    #[test]
    fn revocations_create_no_drafts() {
        let mut body = sample();
        body["dataNIB"]["tipe_dokumen"] = json!("3");
        let plan = plan(&body, &config()).unwrap();
        assert!(plan.withdrawn);
        assert!(plan.drafts.is_empty());
    }
}
