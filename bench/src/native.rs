//! The PBG levy written in plain Rust: the baseline of the in-process levy row. It reads the
//! same tables from the same `rules/pbg/permit.toml` (decimals kept exact, float literals
//! included) and applies the same formula, rounding and exemptions as `levy.rhai`, so the
//! difference measured is the cost of the script engine, not of a different calculation.
//! It does not validate: it is only ever given data the runtime accepts.

use std::collections::HashMap;
use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};
use pintu::scripts::value::decimal_string;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value as Json;
use toml_edit::{DocumentMut, Item, Value};

/// A flat lookup table (`[tables.indeks_fungsi]` and the like): key → exact decimal.
type Table = HashMap<String, Decimal>;

/// One `[tables.prasarana.*]` entry.
#[derive(Debug, Clone)]
struct Prasarana {
    indeks: Decimal,
    harga: Decimal,
    label: String,
    satuan: String,
}

/// Regional parameters and tables of the `pbg` permit type.
#[derive(Debug, Clone)]
pub struct PbgRules {
    shst: Decimal,
    ilo_percent: Decimal,
    it_decimals: u32,
    it_rounding: String,
    total_rounding: String,
    mbr_exempt: bool,
    indeks_fungsi: Table,
    indeks_kompleksitas: Table,
    indeks_permanensi: Table,
    indeks_ketinggian: Table,
    faktor_kepemilikan: Table,
    indeks_kegiatan: Table,
    bobot_kompleksitas: Decimal,
    bobot_permanensi: Decimal,
    bobot_ketinggian: Decimal,
    prasarana: HashMap<String, Prasarana>,
}

/// One line of the assessment, as the runtime reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub code: String,
    pub amount: Decimal,
}

/// The levy: its lines and their sum.
#[derive(Debug, Clone, PartialEq)]
pub struct Levy {
    pub total: Decimal,
    pub items: Vec<Line>,
}

/// A TOML scalar as an exact decimal: strings and integers as written, floats from their
/// literal text (never through f64).
fn toml_decimal(v: &Value, what: &str) -> Result<Decimal> {
    let text = match v {
        Value::String(s) => s.value().clone(),
        Value::Integer(i) => i.value().to_string(),
        Value::Float(f) => f.display_repr().into_owned(),
        _ => bail!("{what} is not a number"),
    };
    Decimal::from_str_exact(text.trim())
        .with_context(|| format!("{what} = {text:?} is not a decimal"))
}

fn table(doc: &DocumentMut, name: &str) -> Result<Table> {
    let t = doc
        .get("tables")
        .and_then(|t| t.get(name))
        .and_then(Item::as_table_like)
        .ok_or_else(|| anyhow!("[tables.{name}] missing from permit.toml"))?;
    t.iter()
        .map(|(k, v)| {
            let v = v
                .as_value()
                .ok_or_else(|| anyhow!("tables.{name}.{k} is not a value"))?;
            Ok((
                k.to_owned(),
                toml_decimal(v, &format!("tables.{name}.{k}"))?,
            ))
        })
        .collect()
}

fn get<'a>(t: &'a Table, name: &str, key: &str) -> Result<&'a Decimal> {
    t.get(key)
        .ok_or_else(|| anyhow!("table {name} has no entry {key:?}"))
}

/// JSON input or parameter as an exact decimal (number literal or string).
fn json_decimal(v: &Json, what: &str) -> Result<Decimal> {
    let text = match v {
        Json::String(s) => s.clone(),
        Json::Number(n) => n.to_string(),
        _ => bail!("{what} is not a number"),
    };
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(&text).with_context(|| format!("{what} = {text}"))
    } else {
        Decimal::from_str_exact(&text).with_context(|| format!("{what} = {text}"))
    }
}

fn json_str<'a>(data: &'a Json, key: &str) -> Result<&'a str> {
    data.get(key)
        .and_then(Json::as_str)
        .ok_or_else(|| anyhow!("input field {key} missing or not text"))
}

fn strategy(mode: &str) -> Result<RoundingStrategy> {
    Ok(match mode {
        "half_up" => RoundingStrategy::MidpointAwayFromZero,
        "half_even" => RoundingStrategy::MidpointNearestEven,
        "ceil" => RoundingStrategy::ToPositiveInfinity,
        "floor" => RoundingStrategy::ToNegativeInfinity,
        "truncate" => RoundingStrategy::ToZero,
        other => bail!("unknown rounding mode {other:?}"),
    })
}

/// The money rounding policies of `round_money`, by the same names.
fn round_money(x: Decimal, policy: &str) -> Result<Decimal> {
    let (unit, mode) = match policy {
        "none" => return Ok(x),
        "half_up_rupiah" => (Decimal::ONE, "half_up"),
        "ceil_rupiah" => (Decimal::ONE, "ceil"),
        "truncate_rupiah" => (Decimal::ONE, "truncate"),
        "half_up_100" => (Decimal::ONE_HUNDRED, "half_up"),
        "ceil_100" => (Decimal::ONE_HUNDRED, "ceil"),
        "truncate_100" => (Decimal::ONE_HUNDRED, "truncate"),
        other => bail!("unknown money rounding {other:?}"),
    };
    let units = x
        .checked_div(unit)
        .ok_or_else(|| anyhow!("overflow while rounding {x}"))?;
    units
        .round_dp_with_strategy(0, strategy(mode)?)
        .checked_mul(unit)
        .ok_or_else(|| anyhow!("{x} too large to round as money"))
}

fn mul(a: Decimal, b: Decimal) -> Result<Decimal> {
    a.checked_mul(b)
        .ok_or_else(|| anyhow!("overflow multiplying {a} by {b}"))
}

impl PbgRules {
    /// Reads `permit.toml` of the `pbg` permit type.
    pub fn from_toml(text: &str) -> Result<Self> {
        let doc = DocumentMut::from_str(text).context("permit.toml is not valid TOML")?;
        let params = doc
            .get("params")
            .and_then(Item::as_table_like)
            .ok_or_else(|| anyhow!("[params] missing"))?;
        let param = |k: &str| {
            params
                .get(k)
                .and_then(Item::as_value)
                .ok_or_else(|| anyhow!("params.{k} missing"))
        };
        let param_str = |k: &str| -> Result<String> {
            param(k)?
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("params.{k} is not text"))
        };
        let bobot = table(&doc, "bobot_parameter")?;
        let prasarana_t = doc
            .get("tables")
            .and_then(|t| t.get("prasarana"))
            .and_then(Item::as_table_like)
            .ok_or_else(|| anyhow!("[tables.prasarana] missing"))?;
        let mut prasarana = HashMap::new();
        for (jenis, entry) in prasarana_t.iter() {
            let entry = entry
                .as_table_like()
                .ok_or_else(|| anyhow!("tables.prasarana.{jenis} is not a table"))?;
            let field = |k: &str| -> Result<Decimal> {
                let v = entry
                    .get(k)
                    .and_then(Item::as_value)
                    .ok_or_else(|| anyhow!("tables.prasarana.{jenis}.{k} missing"))?;
                toml_decimal(v, &format!("tables.prasarana.{jenis}.{k}"))
            };
            let text = |k: &str| -> Result<String> {
                entry
                    .get(k)
                    .and_then(Item::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("tables.prasarana.{jenis}.{k} missing or not text"))
            };
            prasarana.insert(
                jenis.to_owned(),
                Prasarana {
                    indeks: field("indeks")?,
                    harga: field("harga")?,
                    label: text("label")?,
                    satuan: text("satuan")?,
                },
            );
        }
        Ok(Self {
            shst: toml_decimal(param("shst")?, "params.shst")?,
            ilo_percent: toml_decimal(param("ilo_percent")?, "params.ilo_percent")?,
            it_decimals: param("it_decimals")?
                .as_integer()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| anyhow!("params.it_decimals is not a small integer"))?,
            it_rounding: param_str("it_rounding")?,
            total_rounding: param_str("total_rounding")?,
            mbr_exempt: param("mbr_exempt")?
                .as_bool()
                .ok_or_else(|| anyhow!("params.mbr_exempt is not true or false"))?,
            indeks_fungsi: table(&doc, "indeks_fungsi")?,
            indeks_kompleksitas: table(&doc, "indeks_kompleksitas")?,
            indeks_permanensi: table(&doc, "indeks_permanensi")?,
            indeks_ketinggian: table(&doc, "indeks_ketinggian")?,
            faktor_kepemilikan: table(&doc, "faktor_kepemilikan")?,
            indeks_kegiatan: table(&doc, "indeks_kegiatan")?,
            bobot_kompleksitas: *get(&bobot, "bobot_parameter", "kompleksitas")?,
            bobot_permanensi: *get(&bobot, "bobot_parameter", "permanensi")?,
            bobot_ketinggian: *get(&bobot, "bobot_parameter", "ketinggian")?,
            prasarana,
        })
    }

    /// SHST, the regional building cost per m² (`params.shst`).
    pub fn shst(&self) -> Decimal {
        self.shst
    }

    /// These rules with a fixture's `params` overrides applied (the keys the levy reads).
    pub fn with_overrides(&self, overrides: &Json) -> Result<Self> {
        let mut r = self.clone();
        let Some(map) = overrides.as_object() else {
            return Ok(r);
        };
        for (k, v) in map {
            let text = || {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("override {k} is not text"))
            };
            match k.as_str() {
                "shst" => r.shst = json_decimal(v, k)?,
                "ilo_percent" => r.ilo_percent = json_decimal(v, k)?,
                "it_rounding" => r.it_rounding = text()?,
                "total_rounding" => r.total_rounding = text()?,
                "mbr_exempt" => {
                    r.mbr_exempt = v
                        .as_bool()
                        .ok_or_else(|| anyhow!("override mbr_exempt is not a boolean"))?
                }
                "it_decimals" => {
                    r.it_decimals = v
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| anyhow!("override it_decimals is not a small integer"))?
                }
                other => bail!("override {other} is not covered by the plain-Rust levy"),
            }
        }
        Ok(r)
    }

    /// The levy of valid input `data`: bangunan = LLt × It × Ibg × Ilo × SHST, one line per
    /// prasarana V × I × Ibg × HSpbg; each line rounded, all zero when exempt.
    pub fn levy(&self, data: &Json) -> Result<Levy> {
        Ok(self.compute(data)?.levy)
    }

    /// The whole answer of `POST /v1/permits/pbg/levy` for valid input `data`, in the runtime's
    /// shape: `total`, `currency`, `items` (code, label, amount) and a `trace` of the factors,
    /// as `levy.rhai` reports them.
    pub fn response(&self, data: &Json) -> Result<Json> {
        let c = self.compute(data)?;
        let s = decimal_string;
        let mut items = Vec::with_capacity(c.levy.items.len());
        let mut prasarana = Vec::with_capacity(c.prasarana.len());
        for (i, line) in c.levy.items.iter().enumerate() {
            let label = if i == 0 {
                format!(
                    "Bangunan gedung {} m² (It {}, Ibg {})",
                    s(c.llt),
                    s(c.it),
                    s(c.ibg)
                )
            } else {
                let d = c
                    .prasarana
                    .get(i - 1)
                    .ok_or_else(|| anyhow!("prasarana line {i} has no detail"))?;
                prasarana.push(serde_json::json!({
                    "jenis": d.jenis, "volume": s(d.volume), "indeks": s(d.entry.indeks),
                    "harga_satuan": s(d.entry.harga), "sebelum_pembulatan": s(d.hitung),
                }));
                format!(
                    "{} {} {} × {}",
                    d.entry.label,
                    s(d.volume),
                    d.entry.satuan,
                    pintu::scripts::api::rupiah(d.entry.harga)
                        .map_err(|e| anyhow!("formatting {}: {e}", d.entry.harga))?
                )
            };
            items.push(serde_json::json!({
                "code": line.code, "label": label, "amount": s(line.amount),
            }));
        }
        Ok(serde_json::json!({
            "total": s(c.levy.total),
            "currency": "IDR",
            "items": items,
            "trace": {
                "llt": s(c.llt), "indeks_fungsi": s(c.i_f), "ip_kompleksitas": s(c.ip_k),
                "ip_permanensi": s(c.ip_p), "ip_ketinggian": s(c.ip_t),
                "jumlah_parameter": s(c.jumlah), "faktor_kepemilikan": s(c.fm),
                "it_sebelum_pembulatan": s(c.it_raw), "it": s(c.it),
                "it_pembulatan": format!("{} desimal, {}", self.it_decimals, self.it_rounding),
                "ibg": s(c.ibg), "ilo_persen": s(self.ilo_percent), "ilo": s(c.ilo),
                "shst": s(self.shst), "bangunan_sebelum_pembulatan": s(c.bangunan),
                "prasarana": prasarana, "pembulatan": self.total_rounding,
                "pembebasan": c.exempt,
            },
        }))
    }

    fn compute(&self, data: &Json) -> Result<Computed<'_>> {
        let llt = json_decimal(
            data.get("luas_lantai_total")
                .ok_or_else(|| anyhow!("luas_lantai_total missing"))?,
            "luas_lantai_total",
        )?;
        let lantai = data
            .get("jumlah_lantai")
            .and_then(Json::as_u64)
            .ok_or_else(|| anyhow!("jumlah_lantai missing or not an integer"))?;
        let i_f = *get(
            &self.indeks_fungsi,
            "indeks_fungsi",
            json_str(data, "fungsi")?,
        )?;
        let ip_k = *get(
            &self.indeks_kompleksitas,
            "indeks_kompleksitas",
            json_str(data, "kompleksitas")?,
        )?;
        let ip_p = *get(
            &self.indeks_permanensi,
            "indeks_permanensi",
            json_str(data, "permanensi")?,
        )?;
        let ip_t = *get(
            &self.indeks_ketinggian,
            "indeks_ketinggian",
            &lantai.to_string(),
        )?;
        let fm = *get(
            &self.faktor_kepemilikan,
            "faktor_kepemilikan",
            json_str(data, "kepemilikan")?,
        )?;
        let ibg = *get(
            &self.indeks_kegiatan,
            "indeks_kegiatan",
            json_str(data, "kegiatan")?,
        )?;

        let jumlah = self.bobot_kompleksitas * ip_k
            + self.bobot_permanensi * ip_p
            + self.bobot_ketinggian * ip_t;
        let it_raw = i_f * jumlah * fm;
        let it = it_raw.round_dp_with_strategy(self.it_decimals, strategy(&self.it_rounding)?);
        let ilo = self.ilo_percent / Decimal::ONE_HUNDRED;
        let exempt = if i_f.is_zero() {
            Some("bangunan gedung fungsi keagamaan".to_owned())
        } else if fm.is_zero() {
            Some("bangunan gedung milik negara".to_owned())
        } else {
            match data.get("mbr") {
                Some(mbr) if self.mbr_exempt => {
                    Some(format!("rumah MBR ({})", mbr.as_str().unwrap_or_default()))
                }
                _ => None,
            }
        };
        let faktor = if exempt.is_some() {
            Decimal::ZERO
        } else {
            Decimal::ONE
        };

        let bangunan = mul(mul(mul(mul(mul(llt, it)?, ibg)?, ilo)?, self.shst)?, faktor)?;
        let mut items = vec![Line {
            code: "bangunan_gedung".to_owned(),
            amount: round_money(bangunan, &self.total_rounding)?,
        }];
        let mut prasarana = Vec::new();
        if let Some(list) = data.get("prasarana").and_then(Json::as_array) {
            for item in list {
                let jenis = json_str(item, "jenis")?;
                let entry = self
                    .prasarana
                    .get(jenis)
                    .ok_or_else(|| anyhow!("tables.prasarana has no {jenis:?}"))?;
                let volume = json_decimal(
                    item.get("volume")
                        .ok_or_else(|| anyhow!("prasarana volume missing"))?,
                    "volume",
                )?;
                let hitung = mul(
                    mul(mul(mul(volume, entry.indeks)?, ibg)?, entry.harga)?,
                    faktor,
                )?;
                items.push(Line {
                    code: format!("prasarana:{jenis}"),
                    amount: round_money(hitung, &self.total_rounding)?,
                });
                prasarana.push(PrasaranaLine {
                    jenis: jenis.to_owned(),
                    volume,
                    entry,
                    hitung,
                });
            }
        }
        let total = items
            .iter()
            .try_fold(Decimal::ZERO, |acc, l| acc.checked_add(l.amount))
            .ok_or_else(|| anyhow!("total overflows"))?;
        Ok(Computed {
            levy: Levy { total, items },
            llt,
            i_f,
            ip_k,
            ip_p,
            ip_t,
            jumlah,
            fm,
            it_raw,
            it,
            ibg,
            ilo,
            bangunan,
            exempt,
            prasarana,
        })
    }
}

/// One prasarana line before rounding, for the trace.
struct PrasaranaLine<'a> {
    jenis: String,
    volume: Decimal,
    entry: &'a Prasarana,
    hitung: Decimal,
}

/// The levy and the factors it was computed from.
struct Computed<'a> {
    levy: Levy,
    llt: Decimal,
    i_f: Decimal,
    ip_k: Decimal,
    ip_p: Decimal,
    ip_t: Decimal,
    jumlah: Decimal,
    fm: Decimal,
    it_raw: Decimal,
    it: Decimal,
    ibg: Decimal,
    ilo: Decimal,
    bangunan: Decimal,
    exempt: Option<String>,
    prasarana: Vec<PrasaranaLine<'a>>,
}

/// The levy the runtime reported (`total`, `items[].code`, `items[].amount`) in the same shape.
pub fn from_output(output: &Json) -> Result<Levy> {
    let total = json_decimal(
        output
            .get("total")
            .ok_or_else(|| anyhow!("output has no total"))?,
        "total",
    )?;
    let items = output
        .get("items")
        .and_then(Json::as_array)
        .ok_or_else(|| anyhow!("output has no items"))?
        .iter()
        .map(|i| {
            Ok(Line {
                code: json_str(i, "code")?.to_owned(),
                amount: json_decimal(
                    i.get("amount")
                        .ok_or_else(|| anyhow!("item has no amount"))?,
                    "amount",
                )?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Levy { total, items })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::path::Path;

    fn rules_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/pbg")
    }

    fn rules() -> PbgRules {
        let text = std::fs::read_to_string(rules_dir().join("permit.toml")).unwrap();
        PbgRules::from_toml(&text).unwrap()
    }

    /// Every fixture of `rules/pbg/tests` that expects a total gets the same total and the
    /// same lines from the plain-Rust levy as the fixture states for the script.
    #[test]
    fn plain_rust_levy_matches_every_pbg_fixture_with_a_total() {
        let rules = rules();
        let mut checked = Vec::new();
        let mut dir: Vec<_> = std::fs::read_dir(rules_dir().join("tests"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        dir.sort();
        for path in dir {
            let fixture: Json =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let Some(total) = fixture["expect"].get("total") else {
                continue;
            };
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let r = rules
                .with_overrides(fixture.get("params").unwrap_or(&Json::Null))
                .unwrap();
            let got = r.levy(&fixture["data"]).unwrap();
            let want = from_output(&fixture["expect"]).unwrap();
            assert_eq!(got.total, json_decimal(total, "total").unwrap(), "{name}");
            assert_eq!(got, want, "{name}");
            checked.push(name);
        }
        // The fixtures that exercise the formula, prasarana, exemptions and every rounding.
        for must in [
            "a_hunian_tidak_sederhana.json",
            "b_usaha_lima_lantai.json",
            "c_campuran_kecil_ceil.json",
            "d_sosial_budaya_ilo_03.json",
            "keagamaan_bebas.json",
            "negara_bebas.json",
            "mbr_dibebaskan.json",
            "mbr_tanpa_pembebasan.json",
            "pembulatan_ceil_100.json",
            "pembulatan_none.json",
            "prasarana_rehabilitasi_ibg.json",
            "prasarana_umkm.json",
        ] {
            assert!(
                checked.iter().any(|c| c == must),
                "{must} not checked: {checked:?}"
            );
        }
    }

    #[test]
    fn a_wrong_table_value_changes_the_total() {
        // The comparison can fail: a different SHST gives a different levy for case B.
        let text = std::fs::read_to_string(rules_dir().join("permit.toml"))
            .unwrap()
            .replace("shst = \"5000000\"", "shst = \"5000001\"");
        let r = PbgRules::from_toml(&text).unwrap();
        let data = serde_json::json!({
            "fungsi": "usaha", "kompleksitas": "tidak_sederhana", "permanensi": "permanen",
            "jumlah_lantai": 5, "luas_lantai_total": 1250.5, "kepemilikan": "badan_usaha",
            "kegiatan": "baru"
        });
        assert_ne!(r.levy(&data).unwrap().total, Decimal::from(34_607_588));
        assert_eq!(
            rules().levy(&data).unwrap().total,
            Decimal::from(34_607_588)
        );
    }

    #[test]
    fn float_literals_in_the_toml_are_read_exactly() {
        let text = std::fs::read_to_string(rules_dir().join("permit.toml"))
            .unwrap()
            .replace("ilo_percent = \"0.5\"", "ilo_percent = 0.5")
            .replace("usaha = \"0.7\"", "usaha = 0.7");
        let r = PbgRules::from_toml(&text).unwrap();
        assert_eq!(r.ilo_percent, Decimal::new(5, 1));
        assert_eq!(r.indeks_fungsi["usaha"], Decimal::new(7, 1));
    }
}
