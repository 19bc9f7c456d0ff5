//! Connector `simbg`: PBG (building approval) applications from SIMBG, the national system,
//! into the region's `pbg` permit, with the levy assessed by the region's own rules.
//!
//! `sync` (every `sync_every` of the manifest, or on demand through the inbound route
//! `POST /v1/connectors/simbg/inbound/sync` with `Authorization: Bearer <secret trigger_token>`):
//! 1. logs in with the operator account (secrets `email`, `password`); the JWT pair is kept in
//!    kv (`auth`); a 401 refreshes it (and, if the refresh is refused, logs in again) and retries
//!    the request once;
//! 2. walks the list of PBG applications (`application_type`), oldest first;
//! 3. an application not seen before (and not cancelled or rejected) is read in full (detail and
//!    retribution) and becomes a `pbg` draft keyed by its SIMBG `uid` (idempotent), with
//!    `external["simbg"]` holding its SIMBG numbers and status; the region's rules assess its levy
//!    (`assess-levy`), and a difference with SIMBG's `skrd_amount` is flagged
//!    (`levy_mismatch`, `levy_difference`, and a note for staff); values the configuration does
//!    not map become notes, and the field is left for staff to fill in;
//! 4. an application seen before whose status changed gets its new status attached and a note.
//!
//! What it sends back to SIMBG: nothing. SIMBG's regional JSON API has no route through which a
//! region reports a status or a payment; the office records those in SIMBG's own screens.

use std::collections::BTreeMap;

use pintu_connector_sdk::{
    assess_levy, describe_http_error, export_connector, http, kv, now, secret, Action, AppRef,
    Connector, Draft, HttpError, InboundReply, InboundRequest, Info,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

mod amount;
mod map;

use amount::Amount;
use map::{text, unwrap_data, Config};

pub const NAME: &str = "simbg";
pub const VERSION: &str = "0.1.0";

const AUTH_KEY: &str = "auth";

struct Simbg;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Tokens {
    access: String,
    refresh: String,
}

/// What stops a request: SIMBG unreachable or failing (worth a later sync), or a refusal.
#[derive(Debug)]
enum Failure {
    Unavailable(String),
    Refused(u16, String),
}

impl Failure {
    fn text(&self) -> String {
        match self {
            Failure::Unavailable(why) => why.clone(),
            Failure::Refused(status, why) => format!("SIMBG answered {status}: {why}"),
        }
    }
}

fn from_http(path: &str, error: &HttpError) -> Failure {
    Failure::Unavailable(format!("SIMBG {path}: {}", describe_http_error(error)))
}

/// SIMBG over HTTP with the operator's JWT.
struct Client {
    base: String,
    tokens: Option<Tokens>,
    /// Logins and refreshes, for the summary.
    renewals: u32,
}

impl Client {
    fn new(base: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            tokens: kv::get_json::<Tokens>(AUTH_KEY).ok().flatten(),
            renewals: 0,
        }
    }

    fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), Failure> {
        let response = http::post_json(&format!("{}{path}", self.base), &[], body)
            .map_err(|e| from_http(path, &e))?;
        Ok((
            response.status,
            serde_json::from_slice(&response.body).unwrap_or(Value::Null),
        ))
    }

    fn store(&mut self, answer: &Value) -> Result<(), Failure> {
        let pair = &answer["token"];
        let tokens = Tokens {
            access: text(&pair["access"]),
            refresh: text(&pair["refresh"]),
        };
        if tokens.access.is_empty() {
            return Err(Failure::Refused(
                200,
                "login answered no access token".into(),
            ));
        }
        // A failed write only costs a login on the next sync.
        if let Err(e) = kv::set_json(AUTH_KEY, &tokens) {
            pintu_connector_sdk::warn!("SIMBG tokens not kept: {e}");
        }
        self.tokens = Some(tokens);
        self.renewals += 1;
        Ok(())
    }

    fn login(&mut self) -> Result<(), Failure> {
        let (Some(email), Some(password)) = (secret("email"), secret("password")) else {
            return Err(Failure::Refused(
                0,
                "the secrets `email` and `password` (the SIMBG operator account) are not set"
                    .into(),
            ));
        };
        let path = "/api/user/v1/auth/login/";
        match self.post(path, &json!({"email": email, "password": password}))? {
            (200..=299, answer) => self.store(&answer),
            (status, answer) if status >= 500 => Err(Failure::Unavailable(format!(
                "SIMBG login answered {status}: {}",
                text(&answer["detail"])
            ))),
            (status, answer) => Err(Failure::Refused(
                status,
                format!("login refused: {}", text(&answer["detail"])),
            )),
        }
    }

    /// A new pair from the refresh token, or from a new login when that is refused.
    fn renew(&mut self) -> Result<(), Failure> {
        let refresh = self
            .tokens
            .as_ref()
            .map(|t| t.refresh.clone())
            .unwrap_or_default();
        if !refresh.is_empty() {
            let path = "/api/user/v1/auth/token/refresh/";
            match self.post(path, &json!({"refresh": refresh}))? {
                (200..=299, answer) => return self.store(&answer),
                (status, _) if status >= 500 => {
                    return Err(Failure::Unavailable(format!(
                        "SIMBG refresh answered {status}"
                    )))
                }
                _ => {}
            }
        }
        self.login()
    }

    /// GET `path` as JSON; a 401 renews the tokens and retries once.
    fn get(&mut self, path: &str) -> Result<Value, Failure> {
        if self.tokens.is_none() {
            self.login()?;
        }
        for attempt in 0..2 {
            let access = self
                .tokens
                .as_ref()
                .map(|t| t.access.clone())
                .unwrap_or_default();
            let bearer = format!("Bearer {access}");
            let response = http::get(
                &format!("{}{path}", self.base),
                &[("authorization", &bearer), ("accept", "application/json")],
            )
            .map_err(|e| from_http(path, &e))?;
            let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
            match response.status {
                200..=299 => return Ok(body),
                401 if attempt == 0 => self.renew()?,
                status if status >= 500 || status == 429 => {
                    return Err(Failure::Unavailable(format!(
                        "SIMBG {path} answered {status}"
                    )))
                }
                status => {
                    return Err(Failure::Refused(
                        status,
                        format!("{path}: {}", text(&body["detail"])),
                    ))
                }
            }
        }
        Err(Failure::Refused(
            401,
            format!("{path}: refused after renewing the token"),
        ))
    }
}

/// What `seen/<uid>` keeps: enough to notice a change.
#[derive(Debug, Serialize, Deserialize)]
struct Seen {
    status: Value,
    status_name: String,
}

fn seen_key(uid: &str) -> String {
    format!("seen/{uid}")
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    imported: Vec<String>,
    updated: Vec<String>,
    mismatches: Vec<String>,
    skipped: Vec<String>,
    /// Set when the walk stopped early; what was read before is still applied.
    stopped: Option<String>,
    #[serde(skip)]
    actions: Vec<Action>,
}

fn import(
    client: &mut Client,
    entry: &Value,
    config: &Config,
    summary: &mut Summary,
) -> Result<(), Failure> {
    let uid = text(&entry["uid"]);
    let detail = unwrap_data(client.get(&format!("/api/pbg/v1/detail/{uid}/"))?);
    let retribution = match client.get(&format!("/api/pbg/v1/detail/{uid}/retribution/submit/")) {
        Ok(body) => unwrap_data(body),
        // Not calculated yet.
        Err(Failure::Refused(404, _)) => Value::Null,
        Err(other) => return Err(other),
    };
    let mapped = map::draft(entry, &detail, &retribution, config);
    let simbg_amount = Amount::from_json(&retribution["skrd_amount"]);
    let (ours, levy_problem) = match assess_levy(&config.permit, &mapped.data) {
        Ok(answer) => match Amount::from_json(&answer["total"]) {
            Some(total) => (Some(total), None),
            None => (None, Some(format!("jawaban tanpa total: {answer}"))),
        },
        Err(why) => (None, Some(why)),
    };
    let comparison = map::compare(ours, simbg_amount);
    let mut external = mapped.external;
    if let (Some(ext), Some(levy)) = (external.as_object_mut(), comparison.external.as_object()) {
        for (k, v) in levy {
            ext.insert(k.clone(), v.clone());
        }
    }
    let app = AppRef::key(mapped.key.clone());
    summary.actions.push(Action::draft(
        Draft::new(mapped.key.clone(), config.permit.clone())
            .kind("baru")
            .applicant(mapped.applicant)
            .data(mapped.data)
            .external(external),
    ));
    for problem in mapped.problems {
        summary.actions.push(Action::note(
            app.clone(),
            format!("Impor SIMBG: {problem}."),
        ));
    }
    if let Some(why) = levy_problem {
        summary.actions.push(Action::note(
            app.clone(),
            format!("Retribusi belum dapat dihitung dengan aturan daerah: {why}"),
        ));
    }
    if let Some(note) = comparison.note {
        summary.mismatches.push(uid.clone());
        summary.actions.push(Action::note(app, note));
    }
    summary.imported.push(uid);
    Ok(())
}

fn sync_now() -> Result<Summary, String> {
    let config: Config = pintu_connector_sdk::config()?;
    let mut client = Client::new(&config.base_url);
    let mut summary = Summary::default();
    let mut marks: BTreeMap<String, Seen> = BTreeMap::new();
    let mut page = 1u32;
    let outcome: Result<(), Failure> = 'walk: loop {
        let path = format!(
            "/api/pbg/v1/list/?page={page}&size={}&sort=ASC&sort_by=created_at&application_type={}&status=&start_date=&end_date=",
            config.page_size, config.application_type
        );
        let list = match client.get(&path) {
            Ok(list) => list,
            Err(e) => break 'walk Err(e),
        };
        for entry in list["data"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let uid = text(&entry["uid"]);
            if uid.is_empty() {
                continue;
            }
            let now_seen = Seen {
                status: entry["status"].clone(),
                status_name: text(&entry["status_name"]),
            };
            match kv::get_json::<Seen>(&seen_key(&uid)).ok().flatten() {
                None => {
                    let status = entry["status"].as_u64().unwrap_or_default();
                    if config.skip_statuses.contains(&status) {
                        summary.skipped.push(uid);
                        continue;
                    }
                    match import(&mut client, entry, &config, &mut summary) {
                        Ok(()) => {}
                        Err(Failure::Refused(404, why)) => {
                            pintu_connector_sdk::warn!("SIMBG application {uid} skipped: {why}");
                            continue;
                        }
                        Err(e) => break 'walk Err(e),
                    }
                }
                Some(before) if before.status != now_seen.status => {
                    let app = AppRef::key(uid.clone());
                    summary.actions.push(Action::attach(
                        app.clone(),
                        json!({"status": now_seen.status, "status_name": now_seen.status_name}),
                    ));
                    summary.actions.push(Action::note(
                        app,
                        format!(
                            "Status SIMBG berubah: {} → {}.",
                            before.status_name, now_seen.status_name
                        ),
                    ));
                    summary.updated.push(uid.clone());
                }
                Some(_) => continue,
            }
            marks.insert(uid, now_seen);
        }
        let total_pages = list["total_page"].as_u64().unwrap_or(1);
        if u64::from(page) >= total_pages || page >= config.max_pages {
            break 'walk Ok(());
        }
        page += 1;
    };
    if let Err(failure) = outcome {
        if summary.actions.is_empty() {
            return Err(failure.text());
        }
        pintu_connector_sdk::warn!("SIMBG sync stopped early: {}", failure.text());
        summary.stopped = Some(failure.text());
    }
    // Marked only now that the walk is over: what was not turned into actions is read again
    // next time.
    for (uid, seen) in &marks {
        if let Err(e) = kv::set_json(&seen_key(uid), seen) {
            pintu_connector_sdk::warn!("SIMBG {uid} not marked as seen: {e}");
        }
    }
    pintu_connector_sdk::info!(
        "SIMBG sync: {} imported, {} updated, {} levy mismatches, {} skipped, {} token renewals",
        summary.imported.len(),
        summary.updated.len(),
        summary.mismatches.len(),
        summary.skipped.len(),
        client.renewals
    );
    Ok(summary)
}

/// Whether the inbound trigger carries the secret `trigger_token`.
fn trigger_allowed(request: &InboundRequest) -> Result<(), InboundReply> {
    let Some(expected) = secret("trigger_token").filter(|t| !t.is_empty()) else {
        return Err(InboundReply::json(
            404,
            &json!({"error": "the sync trigger is off: the secret `trigger_token` is not set"}),
        ));
    };
    let given = request
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim();
    let same = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(InboundReply::json(
            401,
            &json!({"error": "wrong or missing bearer token"}),
        ))
    }
}

impl Connector for Simbg {
    fn describe() -> Info {
        Info::new(NAME, VERSION, &[])
    }

    fn handle_inbound(request: InboundRequest) -> Result<InboundReply, String> {
        if request.path != "sync" {
            return Ok(InboundReply::json(
                404,
                &json!({"error": format!("no inbound route `{}`: only sync", request.path)}),
            ));
        }
        if request.method != "POST" {
            return Ok(InboundReply::json(
                405,
                &json!({"error": "sync takes POST"}),
            ));
        }
        if let Err(refusal) = trigger_allowed(&request) {
            return Ok(refusal);
        }
        let started = now().unix_millis;
        match sync_now() {
            Ok(mut summary) => {
                let actions = std::mem::take(&mut summary.actions);
                let mut body = json!(summary);
                body["ms"] = json!(now().unix_millis - started);
                Ok(InboundReply::json(200, &body).with_actions(actions))
            }
            Err(why) => Ok(InboundReply::json(503, &json!({"error": why}))),
        }
    }

    fn sync() -> Result<Vec<Action>, String> {
        sync_now().map(|summary| summary.actions)
    }
}

export_connector!(Simbg);
