//! Connector `oss-rba`: OSS RBA, the national risk-based business licensing system, for a
//! regional one-stop office (PIA OSS RBA 4.3.22).
//!
//! - Inbound `POST /v1/connectors/oss-rba/inbound/receiveNIB`: OSS pushes a NIB with its permit
//!   checklist. The `Token` header must be SHA1(username + password + NIB + `Ymd`) with the
//!   secrets `username` and `password` and the office's date (today or yesterday). Each
//!   checklist item of this region (`kd_daerah`), of regency/city authority (`kewenangan` `02`)
//!   and with a `kd_izin` in `[config.izin_map]` becomes one draft application keyed by its
//!   `id_izin` (so the same NIB twice creates nothing new), with `external["oss-rba"]` holding
//!   `nib`, `id_izin`, `id_proyek`, `oss_id`, `kd_izin` and what staff want to see. The answer
//!   is `{"responreceiveNIB": {"status": "1"|"2", "keterangan"}}`.
//! - Events of those applications: `receiveLicenseStatus` with the `kd_status` that
//!   `[config.status_map]` gives the step entered (or `returned`, `rejected`, `completed`), and
//!   on `permit.issued` `receiveLicense` (`IZINFINAL`, with `data_teknis` for building permits),
//!   sent with the secret `user_key`. OSS down (5xx, 408, 429, no connection, timeout) → retry
//!   later; refused (other 4xx) → failed.

use pintu_connector_sdk::{
    describe_http_error, export_connector, http, now, secret, Action, Connector, Draft, Event,
    EventReply, HttpError, InboundReply, InboundRequest, Info, LocalTime,
};
use serde_json::Value;

mod config;
mod nib;
mod report;
mod text;

use config::Config;
use report::{Report, Verdict};

pub const NAME: &str = "oss-rba";
pub const VERSION: &str = "0.1.0";

/// The outbox events it reports (keep equal to the manifest's `events`).
pub const EVENTS: [&str; 6] = [
    "application.submitted",
    "application.advanced",
    "application.returned",
    "application.rejected",
    "application.completed",
    "permit.issued",
];

struct OssRba;

fn load_config() -> Result<Config, String> {
    pintu_connector_sdk::config::<Config>()
}

/// The office's date today and yesterday, as `Ymd`.
fn token_days() -> Vec<String> {
    let t = now();
    let day_ms = 86_400_000;
    [t.unix_millis, t.unix_millis - day_ms]
        .iter()
        .map(|ms| LocalTime::from_unix_millis(*ms, t.utc_offset_minutes).ymd())
        .collect()
}

fn receive_nib(request: &InboundRequest) -> Result<InboundReply, String> {
    let refuse = |status: u16, why: &str| Ok(InboundReply::json(status, &nib::reply("2", why)));
    let config = load_config()?;
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(e) => return refuse(400, &format!("body bukan JSON: {e}")),
    };
    let plan = match nib::plan(&body, &config) {
        Ok(plan) => plan,
        Err(why) => return refuse(400, &why),
    };
    let (Some(username), Some(password)) = (secret("username"), secret("password")) else {
        pintu_connector_sdk::error!(
            "receiveNIB refused: the secrets `username` and `password` are not set"
        );
        return refuse(503, "kredensial daerah belum dikonfigurasi");
    };
    let given = request.header("token").unwrap_or_default();
    if !nib::token_matches(given, &username, &password, &plan.nib, &token_days()) {
        pintu_connector_sdk::warn!("receiveNIB refused: wrong Token for NIB {}", plan.nib);
        return refuse(401, "Token tidak valid");
    }
    let mut actions = Vec::new();
    let mut keys = Vec::new();
    for planned in plan.drafts {
        keys.push(format!("{} ({})", planned.key, planned.permit));
        actions.push(Action::draft(
            Draft::new(planned.key, planned.permit)
                .applicant(planned.applicant)
                .external(planned.external),
        ));
    }
    let mut keterangan = if plan.withdrawn {
        format!(
            "NIB {} dicabut/dibatalkan: tidak ada permohonan baru",
            plan.nib
        )
    } else if keys.is_empty() {
        format!(
            "NIB {} diterima: tidak ada izin kewenangan daerah {} yang dilayani",
            plan.nib, config.kd_daerah
        )
    } else {
        format!(
            "NIB {} diterima: {} izin menjadi draf permohonan: {}",
            plan.nib,
            keys.len(),
            keys.join(", ")
        )
    };
    if !plan.unhandled.is_empty() {
        keterangan.push_str(&format!("; tidak dilayani: {}", plan.unhandled.join(", ")));
    }
    pintu_connector_sdk::info!("{keterangan}");
    Ok(InboundReply::json(200, &nib::reply("1", &keterangan)).with_actions(actions))
}

fn deliver(event: &Event) -> EventReply {
    let config = match load_config() {
        Ok(config) => config,
        Err(e) => return EventReply::retry_later(e),
    };
    let data: Value = event.data().unwrap_or(Value::Null);
    let snapshot: Value = match event.snapshot() {
        Ok(snapshot) => snapshot,
        Err(e) => return EventReply::failed(e),
    };
    let tz = now().utc_offset_minutes;
    let at_millis = report::parse_rfc3339_millis(&event.at).unwrap_or_else(|| now().unix_millis);
    let at = LocalTime::from_unix_millis(at_millis, tz);
    let (method, body) = match report::report(&event.kind, &data, &snapshot, &at, &config) {
        Report::Skip(why) => {
            pintu_connector_sdk::debug!("event {} of {}: {why}", event.seq, event.application);
            return EventReply::ok();
        }
        Report::Impossible(why) => return EventReply::failed(why),
        Report::Send { method, body } => (method, body),
    };
    let Some(user_key) = secret("user_key") else {
        return EventReply::retry_later("the secret `user_key` is not set");
    };
    let url = config.url(method);
    match http::post_json(&url, &[("user_key", &user_key)], &body) {
        Err(e @ (HttpError::Connection(_) | HttpError::Timeout(_))) => {
            EventReply::retry_later(format!("OSS {method}: {}", describe_http_error(&e)))
        }
        Err(e) => EventReply::failed(format!("OSS {method}: {}", describe_http_error(&e))),
        Ok(response) => match report::verdict(method, response.status, &response.body) {
            Verdict::Ok => {
                pintu_connector_sdk::info!(
                    "{method} of {} (event {}) accepted by OSS",
                    event.application,
                    event.seq
                );
                EventReply::ok()
            }
            Verdict::Retry(why) => EventReply::retry_later(why),
            Verdict::Failed(why) => EventReply::failed(why),
        },
    }
}

impl Connector for OssRba {
    fn describe() -> Info {
        Info::new(NAME, VERSION, &EVENTS)
    }

    fn handle_inbound(request: InboundRequest) -> Result<InboundReply, String> {
        match (request.method.as_str(), request.path.as_str()) {
            ("POST", "receiveNIB") => receive_nib(&request),
            (_, "receiveNIB") => Ok(InboundReply::json(
                405,
                &nib::reply("2", "receiveNIB hanya menerima POST"),
            )),
            (_, other) => Ok(InboundReply::json(
                404,
                &serde_json::json!({"error": format!("no inbound method `{other}`: only receiveNIB")}),
            )),
        }
    }

    fn handle_event(event: Event) -> EventReply {
        deliver(&event)
    }
}

export_connector!(OssRba);
