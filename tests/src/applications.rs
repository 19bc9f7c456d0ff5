//! Helpers for the application suites: a server on a copy of the sample rules, users of the
//! office with their tokens, valid application data, transitions and the event outbox.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{Datelike, FixedOffset, NaiveDate, Utc};
use serde_json::{json, Value};

use crate::{copy_dir, repo_root, Server};

/// The office's UTC offset in the default configuration (WIB), for the office's today.
pub const OFFICE_OFFSET_SECS: i32 = 7 * 3600;

/// The roles that act at the steps of the sample flows, in pbg's step order.
pub const PBG_STEPS: [(&str, &str); 6] = [
    ("pendaftaran", "front_office"),
    ("entri_data", "back_office"),
    ("konsultasi_teknis", "tim_teknis"),
    ("verifikasi_kabid", "kabid_pelayanan"),
    ("penetapan", "kepala_dinas"),
    ("penyerahan", "front_office"),
];

/// A temp folder holding a copy of the repository's `rules/` and a server started on it (data
/// in `data/` beside); waits until a release is active.
pub async fn sample_server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("rules");
    copy_dir(&repo_root().join("rules"), &rules);
    let server = Server::start(&rules, &dir.path().join("data"), &[]);
    wait_for_release(&server).await;
    (dir, server)
}

/// Polls `/health` until a release serves (bounded).
pub async fn wait_for_release(server: &Server) -> String {
    let started = Instant::now();
    loop {
        if let Some(r) = server.release().await {
            return r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no release within 120 s; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates a user with `roles` handling `permits` (`["*"]` for all) and returns a new token of
/// theirs.
pub async fn create_user(
    server: &Server,
    username: &str,
    roles: &[&str],
    permits: &[&str],
) -> String {
    let (status, v) = server
        .admin_post(
            "/admin/users",
            json!({"username": username, "name": format!("Pegawai {username}"), "roles": roles, "permits": permits}),
        )
        .await;
    assert_eq!(status, 201, "creating user {username}: {v}");
    user_token(server, username).await
}

/// A new token of an existing user.
pub async fn user_token(server: &Server, username: &str) -> String {
    let (status, v) = server
        .admin_post(
            &format!("/admin/users/{username}/tokens"),
            json!({"label": "uji"}),
        )
        .await;
    assert_eq!(status, 201, "token for {username}: {v}");
    v["token"]
        .as_str()
        .unwrap_or_else(|| panic!("token of {username} in {v}"))
        .to_owned()
}

/// One user per role of the office, each handling every permit type.
pub struct Office {
    pub front_office: String,
    pub back_office: String,
    pub tim_teknis: String,
    pub kabid_pelayanan: String,
    pub kepala_dinas: String,
    /// A user holding `admin` only.
    pub admin: String,
}

impl Office {
    pub async fn create(server: &Server) -> Self {
        Self {
            front_office: create_user(server, "fo", &["front_office"], &["*"]).await,
            back_office: create_user(server, "bo", &["back_office"], &["*"]).await,
            tim_teknis: create_user(server, "teknis", &["tim_teknis"], &["*"]).await,
            kabid_pelayanan: create_user(server, "kabid", &["kabid_pelayanan"], &["*"]).await,
            kepala_dinas: create_user(server, "kadis", &["kepala_dinas"], &["*"]).await,
            admin: create_user(server, "adm", &["admin"], &["*"]).await,
        }
    }

    /// The token of the user holding `role`.
    pub fn token(&self, role: &str) -> &str {
        match role {
            "front_office" => &self.front_office,
            "back_office" => &self.back_office,
            "tim_teknis" => &self.tim_teknis,
            "kabid_pelayanan" => &self.kabid_pelayanan,
            "kepala_dinas" => &self.kepala_dinas,
            "admin" => &self.admin,
            other => panic!("no user with role {other}"),
        }
    }
}

/// Valid PBG data: worked example A of the levy guide (the data of a passing fixture).
pub fn pbg_data() -> Value {
    json!({"fungsi": "hunian_tidak_sederhana", "kompleksitas": "tidak_sederhana", "permanensi": "permanen",
           "jumlah_lantai": 2, "luas_lantai_total": 180, "kepemilikan": "perorangan", "kegiatan": "baru"})
}

/// Valid sewa-tanah data: the data of its passing fixture `usaha_zona_1.json`.
pub fn sewa_tanah_data() -> Value {
    let text =
        std::fs::read_to_string(repo_root().join("rules/sewa-tanah/tests/usaha_zona_1.json"))
            .expect("sewa-tanah fixture");
    let fixture: Value = serde_json::from_str(&text).expect("fixture JSON");
    fixture["data"].clone()
}

/// An applicant with a name and, if given, a NIK.
pub fn applicant(name: &str, nik: Option<&str>) -> Value {
    match nik {
        Some(nik) => json!({"name": name, "nik": nik, "phone": "0812000000"}),
        None => json!({"name": name}),
    }
}

/// `POST /v1/applications` of a PBG application of kind `baru` with a NIK.
pub async fn submit_pbg(server: &Server, token: &str, name: &str) -> (u16, Value) {
    server
        .post_as(
            "/v1/applications",
            token,
            json!({"permit": "pbg", "kind": "baru", "applicant": applicant(name, Some("1872012505800001")), "data": pbg_data()}),
        )
        .await
}

/// `POST /v1/applications/{id}/transitions` at the application's current version.
pub async fn transition(
    server: &Server,
    token: &str,
    app: &Value,
    action: &str,
    to: Option<&str>,
) -> (u16, Value) {
    let mut body =
        json!({"action": action, "version": app["version"], "note": format!("{action} oleh uji")});
    if let Some(to) = to {
        body["to"] = json!(to);
    }
    server.post_as(&transitions_path(app), token, body).await
}

pub fn transitions_path(app: &Value) -> String {
    format!("/v1/applications/{}/transitions", id_of(app))
}

/// The application's id.
pub fn id_of(app: &Value) -> String {
    app["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an application id in {app}"))
        .to_owned()
}

/// Advances `app` (in progress at `from_step` of pbg) step by step with the right role until it
/// reaches `until` (or completes, if `until` is `None`); returns the application.
pub async fn advance_pbg(
    server: &Server,
    office: &Office,
    mut app: Value,
    until: Option<&str>,
) -> Value {
    loop {
        let step = app["step"].as_str().map(str::to_owned);
        if step.as_deref() == until || app["status"] != "in_progress" {
            return app;
        }
        let step = step.unwrap_or_else(|| panic!("a step in {app}"));
        let role = PBG_STEPS
            .iter()
            .find(|(s, _)| *s == step)
            .map(|(_, r)| *r)
            .unwrap_or_else(|| panic!("pbg step {step}"));
        let (status, v) = transition(server, office.token(role), &app, "advance", None).await;
        assert_eq!(status, 200, "advance from {step} as {role}: {v}");
        app = v;
    }
}

/// Every event after `after` in the outbox, walking the pages.
pub async fn events_after(server: &Server, mut after: u64) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let (status, v) = server
            .admin_get(&format!("/admin/events?after={after}&limit=1000"))
            .await;
        assert_eq!(status, 200, "/admin/events: {v}");
        let page = v["events"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return out;
        }
        for e in &page {
            let seq = e["seq"].as_u64().unwrap_or_else(|| panic!("seq in {e}"));
            assert!(seq > after, "event seq {seq} not after {after}");
            after = seq;
        }
        out.extend(page);
        if let Some(next) = v["next"].as_u64() {
            assert!(next >= after, "next {next} goes back before {after}");
            after = next;
        }
    }
}

/// Every event of the outbox.
pub async fn all_events(server: &Server) -> Vec<Value> {
    events_after(server, 0).await
}

/// Every application the list shows for `query` (e.g. `permit=pbg&limit=50`), following
/// `next_cursor`; the pages as they came.
pub async fn list_all(server: &Server, token: &str, query: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => format!("/v1/applications?{query}"),
            Some(c) => format!("/v1/applications?{query}&cursor={}", encode(c)),
        };
        let (status, v) = server.get_as(&path, token).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        pages.push(v["applications"].as_array().cloned().unwrap_or_default());
        match v["next_cursor"].as_str() {
            Some(c) => {
                assert_ne!(
                    cursor.as_deref(),
                    Some(c),
                    "the cursor did not move: {path}"
                );
                cursor = Some(c.to_owned());
            }
            None => return pages,
        }
        assert!(pages.len() < 10_000, "more than 10 000 pages for {query}");
    }
}

/// Percent-encodes a query value (cursors are opaque).
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The office's date now (UTC+07:00, the default `utc_offset`).
pub fn office_today() -> NaiveDate {
    let offset = FixedOffset::east_opt(OFFICE_OFFSET_SECS).expect("offset");
    Utc::now().with_timezone(&offset).date_naive()
}

/// The month in Roman numerals, as `{MM}` renders it.
pub fn roman(month: u32) -> &'static str {
    [
        "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII",
    ]
    .get(month.saturating_sub(1) as usize)
    .copied()
    .unwrap_or_else(|| panic!("month {month}"))
}

/// Splits a number rendered from `format` (literal text and `{…}` tokens, as the sample
/// formats use them) into the sequence it carries; `None` if the text does not have that exact
/// shape for `on`. `{N…N}` must be at least that many digits (a wider sequence is printed in
/// full).
pub fn parse_number(format: &str, on: NaiveDate, text: &str) -> Option<u64> {
    let mut rest = text;
    let mut seq = None;
    let mut fmt = format;
    while !fmt.is_empty() {
        if let Some(after) = fmt.strip_prefix('{') {
            let end = after.find('}')?;
            let token = after.get(..end)?;
            fmt = after.get(end + 1..)?;
            let literal = match token {
                "YYYY" => format!("{:04}", on.year()),
                "YY" => format!("{:02}", on.year() % 100),
                "MM" => roman(on.month()).to_owned(),
                "mm" => format!("{:02}", on.month()),
                "DD" => format!("{:02}", on.day()),
                t if !t.is_empty() && t.chars().all(|c| c == 'N') => {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    if digits.len() < t.len() || (digits.len() > t.len() && digits.starts_with('0'))
                    {
                        return None;
                    }
                    rest = rest.get(digits.len()..)?;
                    seq = Some(digits.parse().ok()?);
                    continue;
                }
                _ => return None,
            };
            rest = rest.strip_prefix(literal.as_str())?;
        } else {
            let end = fmt.find('{').unwrap_or(fmt.len());
            let literal = fmt.get(..end)?;
            rest = rest.strip_prefix(literal)?;
            fmt = fmt.get(end..)?;
        }
    }
    if rest.is_empty() {
        seq
    } else {
        None
    }
}

/// Rewrites the `[[flow]]` of `permit` in `rules` with `edit` (on the parsed `permit.toml`),
/// the way an editor saves.
pub fn edit_flow(rules: &Path, permit: &str, edit: impl FnOnce(&mut toml_edit::ArrayOfTables)) {
    let path = rules.join(permit).join("permit.toml");
    let text = std::fs::read_to_string(&path).expect("permit.toml");
    let mut doc: toml_edit::DocumentMut = text.parse().expect("permit.toml parses");
    let flow = doc
        .get_mut("flow")
        .and_then(toml_edit::Item::as_array_of_tables_mut)
        .unwrap_or_else(|| panic!("{permit}/permit.toml has no [[flow]]"));
    edit(flow);
    crate::write_file(&path, &doc.to_string());
}

/// The office's working-day calendar as `rules/calendar.toml` in `rules` states it (weekend days,
/// holidays, office days off), read independently of the server to check `step_due_on`.
pub struct Calendar {
    weekend: Vec<chrono::Weekday>,
    closed: std::collections::BTreeSet<NaiveDate>,
}

impl Calendar {
    pub fn read(rules: &Path) -> Self {
        let mut cal = Self {
            weekend: vec![chrono::Weekday::Sat, chrono::Weekday::Sun],
            closed: Default::default(),
        };
        let Ok(text) = std::fs::read_to_string(rules.join("calendar.toml")) else {
            return cal;
        };
        let doc: toml_edit::DocumentMut = text.parse().expect("calendar.toml parses");
        if let Some(days) = doc.get("weekend").and_then(toml_edit::Item::as_array) {
            cal.weekend = days
                .iter()
                .filter_map(|d| d.as_str())
                .map(|d| d.parse().unwrap_or_else(|_| panic!("weekday {d}")))
                .collect();
        }
        for key in ["holiday", "day_off"] {
            if let Some(list) = doc.get(key).and_then(toml_edit::Item::as_array_of_tables) {
                for t in list {
                    let date = t.get("date").and_then(|d| d.as_str()).expect("a date");
                    cal.closed.insert(date.parse().expect("a YYYY-MM-DD date"));
                }
            }
        }
        cal
    }

    pub fn is_working_day(&self, day: NaiveDate) -> bool {
        !self.weekend.contains(&day.weekday()) && !self.closed.contains(&day)
    }

    /// `days` working days after `from`.
    pub fn add_working_days(&self, from: NaiveDate, days: u32) -> NaiveDate {
        let mut day = from;
        let mut left = days;
        while left > 0 {
            day = day.succ_opt().expect("a next day");
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        day
    }
}

/// The date in a JSON string field.
pub fn date_of(v: &Value) -> NaiveDate {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a YYYY-MM-DD date, got {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_back_to_their_sequence() {
        let on = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let reg = "REG/PBG/{YYYY}/{NNNNN}";
        assert_eq!(parse_number(reg, on, "REG/PBG/2026/00042"), Some(42));
        assert_eq!(parse_number(reg, on, "REG/PBG/2026/123456"), Some(123_456));
        assert_eq!(parse_number(reg, on, "REG/PBG/2025/00042"), None);
        assert_eq!(parse_number(reg, on, "REG/PBG/2026/0042"), None);
        assert_eq!(parse_number(reg, on, "REG/PBG/2026/00042x"), None);
        let permit = "503/{NNNN}/PBG/DPMPTSP/{MM}/{YYYY}";
        assert_eq!(
            parse_number(permit, on, "503/0007/PBG/DPMPTSP/XI/2026"),
            Some(7)
        );
        assert_eq!(
            parse_number(permit, on, "503/0007/PBG/DPMPTSP/11/2026"),
            None
        );
    }
}
