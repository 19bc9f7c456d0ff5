//! From a SIMBG application (list entry, detail, retribution) to a `pbg` draft of the region's
//! rules, and the comparison of SIMBG's levy with the region's.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::amount::Amount;

#[derive(Debug, Deserialize)]
pub struct Config {
    /// SIMBG's base URL (`https://simbg.pu.go.id` in production); API paths are appended.
    #[serde(default)]
    pub base_url: String,
    /// The permit type the applications become.
    #[serde(default = "default_permit")]
    pub permit: String,
    /// Applications per list page.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// At most this many list pages per sync.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// The list's `application_type` filter (1: PBG).
    #[serde(default = "default_application_type")]
    pub application_type: u32,
    /// Statuses not imported when first seen (3 cancelled, 9 rejected).
    #[serde(default = "default_skip")]
    pub skip_statuses: Vec<u64>,
    /// `function_type/building_type` or `function_type` → `fungsi`.
    #[serde(default)]
    pub fungsi_map: BTreeMap<String, String>,
    /// `building_complexity` → `kompleksitas`.
    #[serde(default)]
    pub kompleksitas_map: BTreeMap<String, String>,
    /// `permanency` → `permanensi`.
    #[serde(default)]
    pub permanensi_map: BTreeMap<String, String>,
    /// `ownership_type` → `kepemilikan`.
    #[serde(default)]
    pub kepemilikan_map: BTreeMap<String, String>,
    /// `application_type` → `kegiatan`.
    #[serde(default)]
    pub kegiatan_map: BTreeMap<String, String>,
    /// Retribution `prasarana[].name` → `prasarana[].jenis`.
    #[serde(default)]
    pub prasarana_map: BTreeMap<String, String>,
    /// `mbr` of an application SIMBG marks `is_mbr` (`swadaya` or `rumah_umum`).
    #[serde(default = "default_mbr")]
    pub mbr: String,
}

fn default_permit() -> String {
    "pbg".into()
}
fn default_page_size() -> u32 {
    50
}
fn default_max_pages() -> u32 {
    100
}
fn default_application_type() -> u32 {
    1
}
fn default_skip() -> Vec<u64> {
    vec![3, 9]
}
fn default_mbr() -> String {
    "swadaya".into()
}

/// A value as trimmed text: strings as they are, numbers in their JSON form, else empty.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// SIMBG answers some routes as `{"data": {...}}` and others bare: the record either way.
pub fn unwrap_data(body: Value) -> Value {
    match body {
        Value::Object(mut map) if map.get("data").is_some_and(Value::is_object) => {
            map.remove("data").unwrap_or(Value::Null)
        }
        other => other,
    }
}

/// A draft ready to become actions.
#[derive(Debug)]
pub struct Mapped {
    pub key: String,
    pub applicant: Value,
    pub data: Value,
    pub external: Value,
    /// SIMBG values the configuration does not map: each becomes a note for staff.
    pub problems: Vec<String>,
}

fn lookup(
    map: &BTreeMap<String, String>,
    keys: &[String],
    what: &str,
    field: &str,
    problems: &mut Vec<String>,
) -> Option<String> {
    let found = keys
        .iter()
        .filter(|k| !k.is_empty())
        .find_map(|k| map.get(k))
        .cloned();
    if found.is_none() {
        let shown = keys.last().cloned().unwrap_or_default();
        problems.push(format!(
            "nilai SIMBG {what} `{shown}` tidak dikenali; isi field `{field}` secara manual"
        ));
    }
    found
}

/// Whole number of a JSON value (`2`, `"2"`, `2.0`); null or empty is 0.
fn count(value: &Value) -> Option<u64> {
    match value {
        Value::Null => Some(0),
        Value::String(s) if s.trim().is_empty() => Some(0),
        other => {
            let amount = Amount::parse(&text(other))?;
            let t = amount.text();
            t.parse().ok()
        }
    }
}

/// The `pbg` draft of a SIMBG application.
pub fn draft(summary: &Value, detail: &Value, retribution: &Value, config: &Config) -> Mapped {
    let uid = text(&summary["uid"]);
    let mut problems = Vec::new();
    let mut data = Map::new();
    let function = text(&detail["function_type"]);
    let building = text(&detail["building_type"]);
    if let Some(fungsi) = lookup(
        &config.fungsi_map,
        &[format!("{function}/{building}"), function],
        "function_type",
        "fungsi",
        &mut problems,
    ) {
        data.insert("fungsi".into(), json!(fungsi));
    }
    let simple = [
        (
            "building_complexity",
            &config.kompleksitas_map,
            "kompleksitas",
        ),
        ("permanency", &config.permanensi_map, "permanensi"),
        ("ownership_type", &config.kepemilikan_map, "kepemilikan"),
        ("application_type", &config.kegiatan_map, "kegiatan"),
    ];
    for (source, map, field) in simple {
        if let Some(value) = lookup(map, &[text(&detail[source])], source, field, &mut problems) {
            data.insert(field.into(), json!(value));
        }
    }
    match (count(&detail["floor"]), count(&detail["basement"])) {
        (Some(floors), Some(basements)) if floors + basements > 0 => {
            // The rules count basements as floors (`jumlah_lantai`: "Termasuk basemen").
            data.insert("jumlah_lantai".into(), json!(floors + basements));
        }
        _ => problems.push(format!(
            "jumlah lantai SIMBG `{}` + basemen `{}` tidak terbaca; isi field `jumlah_lantai` secara manual",
            text(&detail["floor"]),
            text(&detail["basement"])
        )),
    }
    match Amount::from_json(&detail["total_area"]) {
        Some(area) => {
            data.insert("luas_lantai_total".into(), json!(area.text()));
        }
        None => problems.push(format!(
            "luas SIMBG `{}` tidak terbaca; isi field `luas_lantai_total` secara manual",
            text(&detail["total_area"])
        )),
    }
    if detail["is_mbr"] == json!(true) {
        data.insert("mbr".into(), json!(config.mbr));
    }
    let mut prasarana = Vec::new();
    for item in retribution["prasarana"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let name = text(&item["name"]);
        let volume = Amount::from_json(&item["volume"]);
        match (config.prasarana_map.get(&name), volume) {
            (Some(jenis), Some(volume)) if !volume.is_zero() => {
                prasarana.push(json!({"jenis": jenis, "volume": volume.text()}));
            }
            (Some(_), _) => problems.push(format!(
                "volume prasarana `{name}` `{}` tidak terbaca; periksa field `prasarana`",
                text(&item["volume"])
            )),
            (None, _) => problems.push(format!(
                "prasarana SIMBG `{name}` tidak dikenali; tambahkan ke field `prasarana` secara manual"
            )),
        }
    }
    if !prasarana.is_empty() {
        data.insert("prasarana".into(), Value::Array(prasarana));
    }
    Mapped {
        key: uid.clone(),
        applicant: applicant(summary, detail),
        data: Value::Object(data),
        external: json!({
            "uid": uid,
            "registration_number": text(&summary["registration_number"]),
            "document_number": text(&summary["document_number"]),
            "status": summary["status"],
            "status_name": text(&summary["status_name"]),
            "skrd_amount": Amount::from_json(&retribution["skrd_amount"]).map(Amount::text),
        }),
        problems,
    }
}

fn applicant(summary: &Value, detail: &Value) -> Value {
    let mut applicant = Map::new();
    let name = [
        &detail["owner_name"],
        &summary["owner_name"],
        &summary["name"],
    ]
    .into_iter()
    .map(text)
    .find(|n| !n.is_empty())
    .unwrap_or_else(|| format!("SIMBG {}", text(&summary["uid"])));
    applicant.insert("name".into(), json!(name));
    let nik = text(&detail["nik"]);
    if nik.len() == 16 && nik.bytes().all(|b| b.is_ascii_digit()) {
        applicant.insert("nik".into(), json!(nik));
    }
    let address = [&detail["owner_address"], &summary["address"]]
        .into_iter()
        .map(text)
        .find(|a| !a.is_empty());
    for (key, value) in [
        ("address", address.unwrap_or_default()),
        ("phone", text(&detail["owner_phone"])),
        ("email", text(&detail["owner_email"])),
    ] {
        if !value.is_empty() {
            applicant.insert(key.into(), json!(value));
        }
    }
    Value::Object(applicant)
}

/// The region's levy next to SIMBG's `skrd_amount`.
#[derive(Debug, PartialEq)]
pub struct Comparison {
    /// External fields: `levy_pintu`, `levy_mismatch`, `levy_difference`.
    pub external: Value,
    /// A note for staff when the amounts differ.
    pub note: Option<String>,
}

/// Compares the region's `total` with SIMBG's `skrd_amount` (either may be missing).
pub fn compare(ours: Option<Amount>, simbg: Option<Amount>) -> Comparison {
    match (ours, simbg) {
        (Some(ours), Some(simbg)) => {
            let difference = ours.minus(simbg);
            let mismatch = !difference.is_zero();
            Comparison {
                external: json!({
                    "levy_pintu": ours.text(),
                    "levy_mismatch": mismatch,
                    "levy_difference": difference.text(),
                }),
                note: mismatch.then(|| {
                    format!(
                        "Retribusi berbeda: SIMBG menetapkan Rp {}, aturan daerah menghitung Rp {} (selisih Rp {}). Periksa sebelum SKRD diterbitkan.",
                        simbg.text(),
                        ours.text(),
                        difference.text()
                    )
                }),
            }
        }
        (Some(ours), None) => Comparison {
            external: json!({"levy_pintu": ours.text(), "levy_mismatch": null}),
            note: None,
        },
        (None, _) => Comparison {
            external: json!({"levy_pintu": null, "levy_mismatch": null}),
            note: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let toml_like = json!({
            "base_url": "http://simbg",
            "fungsi_map": {"Hunian": "hunian_tidak_sederhana", "Usaha": "usaha", "Usaha/UMKM": "usaha_umkm"},
            "kompleksitas_map": {"Sederhana": "sederhana", "Tidak Sederhana": "tidak_sederhana"},
            "permanensi_map": {"Permanen": "permanen"},
            "kepemilikan_map": {"Perorangan": "perorangan"},
            "kegiatan_map": {"1": "baru"},
            "prasarana_map": {"Pagar": "pagar", "Lapangan Parkir": "parkir", "Gapura": "gapura"}
        });
        serde_json::from_value(toml_like).unwrap()
    }

    fn sample(i: usize) -> (Value, Value, Value) {
        let all: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/simbg/applications.json"
        ))
        .unwrap();
        let app = &all[i];
        (
            app["summary"].clone(),
            app["detail"].clone(),
            app["retribution"].clone(),
        )
    }

    #[test]
    fn a_house_maps_to_the_pbg_fields() {
        let (summary, detail, retribution) = sample(0);
        let m = draft(&summary, &detail, &retribution, &config());
        assert_eq!(m.key, "3f6d1c52-8a4e-4f3b-9b1e-0a7d5e2c4b11");
        assert_eq!(
            m.data,
            json!({"fungsi": "hunian_tidak_sederhana", "kompleksitas": "tidak_sederhana",
                   "permanensi": "permanen", "kepemilikan": "perorangan", "kegiatan": "baru",
                   "jumlah_lantai": 2, "luas_lantai_total": "180"})
        );
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        assert_eq!(m.applicant["name"], "Budi Santoso");
        assert_eq!(m.applicant["nik"], "1872012505800001");
        assert_eq!(m.external["skrd_amount"], "1183500");
        assert_eq!(m.external["registration_number"], "PBG-187201-27112026-01");
    }

    #[test]
    fn a_shop_maps_building_type_and_prasarana() {
        let (summary, detail, retribution) = sample(1);
        let m = draft(&summary, &detail, &retribution, &config());
        assert_eq!(m.data["fungsi"], "usaha_umkm");
        assert_eq!(m.data["jumlah_lantai"], 1);
        assert_eq!(
            m.data["prasarana"],
            json!([{"jenis": "pagar", "volume": "42.5"}, {"jenis": "parkir", "volume": "60.25"},
                   {"jenis": "gapura", "volume": "6"}])
        );
        // Empty e-mail and null phone are left out.
        assert_eq!(
            m.applicant,
            json!({"name": "Sri Wahyuni", "nik": "1872034107750002",
            "address": "Jl. Ki Hajar Dewantara No. 31, Iringmulyo, Metro Timur"})
        );
    }

    #[test]
    fn unknown_values_become_notes_and_leave_the_field_out() {
        let (summary, mut detail, retribution) = sample(0);
        detail["function_type"] = json!("Hunian Vertikal");
        detail["permanency"] = json!(null);
        detail["total_area"] = json!("seratus");
        let m = draft(&summary, &detail, &retribution, &config());
        assert!(m.data.get("fungsi").is_none());
        assert!(m.data.get("permanensi").is_none());
        assert!(m.data.get("luas_lantai_total").is_none());
        assert_eq!(m.problems.len(), 3, "{:?}", m.problems);
        assert!(
            m.problems[0].contains("`Hunian Vertikal`"),
            "{:?}",
            m.problems
        );
    }

    #[test]
    fn a_levy_mismatch_is_flagged_with_its_difference() {
        let c = compare(Amount::parse("1696250"), Amount::parse("1624250.00"));
        assert_eq!(
            c.external,
            json!({"levy_pintu": "1696250", "levy_mismatch": true, "levy_difference": "72000"})
        );
        assert!(c.note.unwrap().contains("Rp 1624250"));
        let same = compare(Amount::parse("1183500"), Amount::parse("1183500.00"));
        assert_eq!(same.external["levy_mismatch"], false);
        assert_eq!(same.note, None);
        assert_eq!(
            compare(Amount::parse("5"), None).external["levy_mismatch"],
            Value::Null
        );
    }

    #[test]
    fn data_wrappers_are_optional() {
        assert_eq!(unwrap_data(json!({"data": {"a": 1}})), json!({"a": 1}));
        assert_eq!(unwrap_data(json!({"a": 1})), json!({"a": 1}));
        assert_eq!(unwrap_data(json!({"data": [1]})), json!({"data": [1]}));
    }
}
