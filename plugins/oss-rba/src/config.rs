//! The connector's `[config]` (manifest, with the office's overrides from `pintu.toml`).

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct Config {
    /// The OSS API base, e.g. `https://…/stg/v1/kl/rba`; method names are appended.
    #[serde(default)]
    pub base_url: String,
    /// The region's code (Permendagri 72/2019): checklist items of other regions are not ours.
    #[serde(default)]
    pub kd_daerah: String,
    /// `IZINSTATUS.kd_instansi`: the office's institution code at OSS.
    #[serde(default)]
    pub kd_instansi: String,
    /// `kd_izin` → permit type id: the checklist items this office handles.
    #[serde(default)]
    pub izin_map: BTreeMap<String, String>,
    /// Flow step entered → `kd_status` (`<permit>.<step>` before `<step>`), plus the keys
    /// `returned`, `rejected` and `completed` for those events.
    #[serde(default)]
    pub status_map: BTreeMap<String, String>,
    /// Permit types whose `IZINFINAL` carries `data_teknis` (building permits).
    #[serde(default = "default_data_teknis")]
    pub data_teknis_permits: Vec<String>,
    /// Who signs issued permits (`nama_ttd`, `nip_ttd`, `jabatan_ttd`).
    #[serde(default)]
    pub penandatangan: Signatory,
    /// `IZINFINAL.file_izin`: where OSS fetches the permit's PDF; `{id}` and `{nomor}` are
    /// replaced by the application id and the permit number (URL-encoded). Empty: none.
    #[serde(default)]
    pub file_izin_url: String,
    /// Years a permit type's permit is valid (`tgl_berlaku_izin`); absent: no end date.
    #[serde(default)]
    pub masa_berlaku_tahun: BTreeMap<String, u32>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Signatory {
    #[serde(default)]
    pub nama: String,
    #[serde(default)]
    pub nip: String,
    #[serde(default)]
    pub jabatan: String,
}

fn default_data_teknis() -> Vec<String> {
    vec!["pbg".to_owned()]
}

impl Config {
    /// `<base_url>/<method>`.
    pub fn url(&self, method: &str) -> String {
        format!("{}/{method}", self.base_url.trim_end_matches('/'))
    }

    /// The `kd_status` for entering `step` of `permit`, if the office maps one.
    pub fn status_for_step(&self, permit: &str, step: &str) -> Option<&str> {
        self.status_map
            .get(&format!("{permit}.{step}"))
            .or_else(|| self.status_map.get(step))
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The `kd_status` for a special key (`returned`, `rejected`, `completed`) of `permit`.
    pub fn status_for(&self, permit: &str, key: &str) -> Option<&str> {
        self.status_for_step(permit, key)
    }
}
