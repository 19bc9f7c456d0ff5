//! The sample configuration of Kota Metro in `rules/`: it checks clean, and the PBG levy answers
//! the worked examples of the levy guide over HTTP for each region's parameters.

use pintu_tests::{copy_dir, repo_root, run_pintu, Server};
use serde_json::{json, Value};

#[test]
fn sample_rules_check_clean() {
    let root = repo_root();
    let (code, out, err) = run_pintu(&["check", "rules"], &root);
    println!("{out}");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(" 0 failed, 0 problems"), "{out}");
}

fn pbg_input(case: &str) -> Value {
    match case {
        "A" => {
            json!({"fungsi": "hunian_tidak_sederhana", "kompleksitas": "tidak_sederhana", "permanensi": "permanen",
                      "jumlah_lantai": 2, "luas_lantai_total": 180, "kepemilikan": "perorangan", "kegiatan": "baru"})
        }
        "B" => {
            json!({"fungsi": "usaha", "kompleksitas": "tidak_sederhana", "permanensi": "permanen",
                      "jumlah_lantai": 5, "luas_lantai_total": 1250.5, "kepemilikan": "badan_usaha", "kegiatan": "baru"})
        }
        "C" => {
            json!({"fungsi": "campuran_kecil", "kompleksitas": "sederhana", "permanensi": "permanen",
                      "jumlah_lantai": 2, "luas_lantai_total": "320", "kepemilikan": "perorangan", "kegiatan": "rehabilitasi_berat"})
        }
        _ => {
            json!({"fungsi": "sosial_budaya", "kompleksitas": "sederhana", "permanensi": "non_permanen",
                      "jumlah_lantai": 1, "luas_lantai_total": "75.25", "kepemilikan": "badan_usaha", "kegiatan": "pelestarian_utama"})
        }
    }
}

/// Serves a copy of `rules/` whose PBG `[params]` have `set` applied (fixtures removed, since
/// they pin the Kota Metro parameters).
fn serve_with_params(dir: &std::path::Path, set: &[(&str, &str)]) -> Server {
    let rules = dir.join("rules");
    copy_dir(&repo_root().join("rules"), &rules);
    if !set.is_empty() {
        let _ = std::fs::remove_dir_all(rules.join("pbg/tests"));
        let path = rules.join("pbg/permit.toml");
        let mut toml = std::fs::read_to_string(&path).unwrap();
        for (key, value) in set {
            let start = toml
                .find(&format!("\n{key} = "))
                .unwrap_or_else(|| panic!("param {key} in pbg/permit.toml"))
                + 1;
            let end = start + toml[start..].find('\n').unwrap();
            toml.replace_range(start..end, &format!("{key} = {value}"));
        }
        std::fs::write(&path, toml).unwrap();
    }
    Server::start(&rules, &dir.join("data"), &[])
}

async fn pbg_total(s: &Server, case: &str) -> (String, Value) {
    let (status, v) = s
        .post("/v1/permits/pbg/levy", json!({ "data": pbg_input(case) }))
        .await;
    assert_eq!(status, 200, "case {case}: {v}");
    (v["total"].as_str().unwrap().to_owned(), v)
}

#[tokio::test]
async fn pbg_worked_examples_a_and_b_with_kota_metro_params() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve_with_params(dir.path(), &[]);
    let (total, v) = pbg_total(&s, "A").await;
    assert_eq!(total, "1183500", "{v}");
    assert_eq!(v["items"][0]["code"], "bangunan_gedung");
    let (total, _) = pbg_total(&s, "B").await;
    assert_eq!(total, "34607588");
}

#[tokio::test]
async fn pbg_worked_example_c_with_ceil_rounding() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve_with_params(
        dir.path(),
        &[
            ("it_rounding", "\"ceil\""),
            ("total_rounding", "\"ceil_rupiah\""),
        ],
    );
    assert_eq!(pbg_total(&s, "C").await.0, "1942200");
}

#[tokio::test]
async fn pbg_worked_example_d_with_other_locality_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve_with_params(
        dir.path(),
        &[
            ("ilo_percent", "\"0.3\""),
            ("it_rounding", "\"truncate\""),
            ("total_rounding", "\"ceil_rupiah\""),
        ],
    );
    assert_eq!(pbg_total(&s, "D").await.0, "50794");
}

#[tokio::test]
async fn sip_dokter_checks_documents_and_the_office_date_live() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve_with_params(dir.path(), &[]);
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("rules/sip-dokter/tests/dokter_umum_baru.json"))
            .unwrap(),
    )
    .unwrap();
    let mut data = fixture["data"].clone();

    // An application dated far in the future: the live server's today() is the office date.
    data["tanggal_permohonan"] = json!("2999-01-01");
    let (status, v) = s
        .post("/v1/permits/sip-dokter/validate", json!({ "data": data }))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["valid"], false);
    // Other checks may object too (the applicant's age by then); the date check must be there.
    let future = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["field"] == "tanggal_permohonan");
    assert!(
        future.unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("belum tiba"),
        "{v}"
    );

    // Without the STR document the runtime's checklist names it, before any script runs.
    data["tanggal_permohonan"] = fixture["data"]["tanggal_permohonan"].clone();
    let docs: Vec<Value> = data["dokumen"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kode"] != "str")
        .cloned()
        .collect();
    data["dokumen"] = Value::Array(docs);
    let (_, v) = s
        .post("/v1/permits/sip-dokter/validate", json!({ "data": data }))
        .await;
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["field"], "dokumen");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("dokumen wajib `str`"),
        "{v}"
    );

    // A permit without a levy says so.
    let (status, v) = s
        .post("/v1/permits/sip-dokter/levy", json!({ "data": data }))
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("no_levy")),
        "{v}"
    );
    let (status, v) = s.get("/v1/permits/sip-dokter").await;
    assert_eq!(status, 200);
    assert!(v["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["code"] == "str"));
}

/// A client draws the flow from `GET /v1/permits/{id}`: the steps of Kota Metro's PBG flow in
/// order, with their roles, working-day deadlines, guard and effects, and the number formats.
#[tokio::test]
async fn the_permit_shows_its_flow_and_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve_with_params(dir.path(), &[]);
    let (status, v) = s.get("/v1/permits/pbg").await;
    assert_eq!(status, 200, "{v}");
    let steps: Vec<(String, String, u64)> = v["flow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["role"].as_str().unwrap().to_owned(),
                s["sla_days"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("pendaftaran", "front_office", 1),
        ("entri_data", "back_office", 1),
        ("konsultasi_teknis", "tim_teknis", 5),
        ("verifikasi_kabid", "kabid_pelayanan", 1),
        ("penetapan", "kepala_dinas", 1),
        ("penyerahan", "front_office", 1),
    ]
    .map(|(s, r, d)| (s.to_owned(), r.to_owned(), d));
    assert_eq!(steps, expected, "{v}");
    assert_eq!(
        v["flow"][0]["label"], "Pendaftaran dan pemeriksaan berkas",
        "{v}"
    );
    assert_eq!(v["flow"][0]["guard"], "berkas_lengkap", "{v}");
    assert_eq!(v["flow"][0]["effects"], json!([]), "{v}");
    assert_eq!(v["flow"][4]["effects"], json!(["issue_permit"]), "{v}");
    assert_eq!(v["numbering"]["registration"], "REG/PBG/{YYYY}/{NNNNN}");
    assert_eq!(
        v["numbering"]["permit"],
        "503/{NNNN}/PBG/DPMPTSP/{MM}/{YYYY}"
    );
    assert_eq!(
        v["numbering"]["kinds"]["perpanjangan"]["permit"],
        "503/{NNNN}/PBG-P/DPMPTSP/{MM}/{YYYY}"
    );
    // Every existing field is still there.
    assert_eq!(v["id"], "pbg");
    assert_eq!(v["has_levy"], true);
    assert!(v["release"].is_string(), "{v}");

    let (_, v) = s.get("/v1/permits/sewa-tanah").await;
    let keys: Vec<&str> = v["flow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["pendaftaran", "survei_lokasi", "penetapan"]);
    assert_eq!(v["numbering"]["permit"], "593/{NNN}/ST/{MM}/{YYYY}");
}
