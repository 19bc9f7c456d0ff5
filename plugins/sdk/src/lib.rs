//! Write Pintu connectors in Rust.
//!
//! A connector is a WebAssembly component of the contract `pintu:connector@0.1.0`
//! (`host-api/wit/pintu-connector@0.1.0/connector.wit`): Pintu calls it for an HTTP request that
//! arrived at `POST /v1/connectors/<name>/inbound/<path>`, for each outbox event its manifest
//! asks for, and periodically (`sync`) when its manifest sets `sync_every`. Everything it may do
//! to the world goes through the host: outbound HTTP to the hosts its manifest allows
//! ([`http`]), its configuration ([`config`]), its secrets ([`secret`]), a private key-value
//! space ([`kv`]), logging ([`log`]), the clock ([`now`]) and the office's own levy rules
//! ([`assess_levy`]). What it asks Pintu to change in applications it returns as [`Action`]s.
//!
//! ```no_run
//! use pintu_connector_sdk::{export_connector, Action, AppRef, Connector, Draft, Event,
//!     EventReply, InboundReply, InboundRequest, Info};
//! use serde_json::json;
//!
//! struct Hello;
//!
//! impl Connector for Hello {
//!     fn describe() -> Info {
//!         Info::new("hello", "0.1.0", &["permit.issued"])
//!     }
//!
//!     fn handle_inbound(req: InboundRequest) -> Result<InboundReply, String> {
//!         let body: serde_json::Value = req.body_json()?;
//!         let draft = Draft::new("hello-1", "sktm").applicant(json!({"name": body["name"]}));
//!         Ok(InboundReply::json(200, &json!({"ok": true})).with_actions(vec![Action::draft(draft)]))
//!     }
//!
//!     fn handle_event(ev: Event) -> EventReply {
//!         pintu_connector_sdk::info!("{} issued", ev.application);
//!         EventReply::ok()
//!             .with_actions(vec![Action::note(AppRef::id(&ev.application), "hello saw it")])
//!     }
//! }
//!
//! export_connector!(Hello);
//! ```
//!
//! Build with `plugins/build` (see `plugins/README.md`): it compiles the crate for
//! `wasm32-unknown-unknown`, turns the module into a component and writes the manifest's
//! `sha256`.
//!
//! Every call runs in a fresh instance under the manifest's memory limit and deadline: keep
//! nothing in statics between calls, use [`kv`] for what must survive.

#![forbid(unsafe_op_in_unsafe_fn)]

// The generated code names its runtime by an absolute path, which must also resolve inside this
// crate.
extern crate self as pintu_connector_sdk;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub mod time;

pub use time::LocalTime;

/// The raw bindings generated from the WIT package, for what the helpers do not cover.
#[allow(
    clippy::too_many_arguments,
    reason = "generated: the canonical ABI passes flattened records as arguments"
)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "connector",
        path: "../../host-api/wit/pintu-connector@0.1.0",
        pub_export_macro: true,
        export_macro_name: "export",
        runtime_path: "pintu_connector_sdk::__private::wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

pub use bindings::pintu::connector::types::{
    Action, AppNote, AppRef, Draft, Event, EventOutcome, EventReply, ExternalRef, Header,
    HttpError, HttpRequest, HttpResponse, InboundReply, InboundRequest, Info, LogLevel, Timestamp,
};

use bindings::pintu::connector::host;

/// A connector: implement this for a type and export it with [`export_connector!`].
///
/// Each function runs in a fresh instance; an `Err` text of `handle_inbound` answers the caller
/// with a 502 naming the connector, of `sync` is recorded in the connector's stats.
pub trait Connector {
    /// Name, version and wanted event types; Pintu checks them against the manifest at load.
    fn describe() -> Info;

    /// An HTTP request routed to this connector. By default: 404, no actions.
    fn handle_inbound(request: InboundRequest) -> Result<InboundReply, String> {
        Ok(InboundReply::json(
            404,
            &serde_json::json!({
                "error": format!("no inbound route `{}`", request.path),
            }),
        ))
    }

    /// One outbox event of a type [`Connector::describe`] listed. By default the delivery fails
    /// (a connector that lists events must handle them).
    fn handle_event(event: Event) -> EventReply {
        EventReply::failed(format!("event `{}` is not handled", event.kind))
    }

    /// A periodic run (manifest `sync_every`). By default nothing to do.
    fn sync() -> Result<Vec<Action>, String> {
        Ok(Vec::new())
    }
}

/// Exports a type implementing [`Connector`] as the component's `describe`, `handle-inbound`,
/// `handle-event` and `sync`. Use it once, at the crate's top level.
#[macro_export]
macro_rules! export_connector {
    ($ty:ty) => {
        const _: () = {
            struct PintuConnectorExport;

            impl $crate::bindings::Guest for PintuConnectorExport {
                fn describe() -> $crate::Info {
                    <$ty as $crate::Connector>::describe()
                }

                fn handle_inbound(
                    request: $crate::InboundRequest,
                ) -> ::core::result::Result<$crate::InboundReply, ::std::string::String> {
                    <$ty as $crate::Connector>::handle_inbound(request)
                }

                fn handle_event(event: $crate::Event) -> $crate::EventReply {
                    <$ty as $crate::Connector>::handle_event(event)
                }

                fn sync(
                ) -> ::core::result::Result<::std::vec::Vec<$crate::Action>, ::std::string::String>
                {
                    <$ty as $crate::Connector>::sync()
                }
            }

    $crate::bindings::export!(PintuConnectorExport with_types_in $crate::bindings);
        };
    };
}

/// Parses JSON `text`; the error names `what` was being read.
pub fn from_json<T: DeserializeOwned>(what: &str, text: &[u8]) -> Result<T, String> {
    serde_json::from_slice(text).map_err(|e| format!("{what} is not the expected JSON: {e}"))
}

/// JSON text of `value`; the error names `what` was being written.
pub fn to_json<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| format!("{what} cannot be written as JSON: {e}"))
}

fn find_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl Info {
    pub fn new(name: &str, version: &str, events: &[&str]) -> Info {
        Info {
            name: name.to_owned(),
            version: version.to_owned(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
        }
    }
}

impl InboundRequest {
    /// The first header named `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body parsed as JSON.
    pub fn body_json<T: DeserializeOwned>(&self) -> Result<T, String> {
        from_json("the request body", &self.body)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl HttpResponse {
    /// A response with a JSON body and `content-type: application/json`. If `value` cannot be
    /// written as JSON (a map with non-text keys), the response is a 500 saying so.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> HttpResponse {
        match serde_json::to_vec(value) {
            Ok(body) => HttpResponse {
                status,
                headers: vec![Header::new("content-type", "application/json")],
                body,
            },
            Err(e) => HttpResponse::text(500, &format!("reply cannot be written as JSON: {e}")),
        }
    }

    /// A response with a text body and `content-type: text/plain; charset=utf-8`.
    pub fn text(status: u16, text: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![Header::new("content-type", "text/plain; charset=utf-8")],
            body: text.as_bytes().to_vec(),
        }
    }

    /// The first header named `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body parsed as JSON; the error names the status.
    pub fn parse_json<T: DeserializeOwned>(&self) -> Result<T, String> {
        from_json(
            &format!("the response body (status {})", self.status),
            &self.body,
        )
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl InboundReply {
    /// A reply with a JSON body (see [`HttpResponse::json`]) and no actions.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> InboundReply {
        InboundReply {
            response: HttpResponse::json(status, value),
            actions: Vec::new(),
        }
    }

    /// A reply with a text body and no actions.
    pub fn text(status: u16, text: &str) -> InboundReply {
        InboundReply {
            response: HttpResponse::text(status, text),
            actions: Vec::new(),
        }
    }

    /// The same reply with these actions, applied by Pintu before the response is sent.
    pub fn with_actions(mut self, actions: Vec<Action>) -> InboundReply {
        self.actions = actions;
        self
    }

    /// The same reply with one more response header.
    pub fn with_header(mut self, name: &str, value: &str) -> InboundReply {
        self.response.headers.push(Header::new(name, value));
        self
    }
}

impl Event {
    /// The event's own data (step moved from and to, permit number, ...).
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, String> {
        from_json(
            &format!("the data of event {}", self.seq),
            self.data.as_bytes(),
        )
    }

    /// The application as it is now (`GET /v1/applications/{id}`).
    pub fn snapshot<T: DeserializeOwned>(&self) -> Result<T, String> {
        from_json(
            &format!("the snapshot of event {}", self.seq),
            self.snapshot.as_bytes(),
        )
    }
}

impl EventReply {
    /// Done: the event is not delivered again.
    pub fn ok() -> EventReply {
        EventReply {
            outcome: EventOutcome::Ok,
            actions: Vec::new(),
        }
    }

    /// Deliver again later, with backoff; `reason` is shown to admins.
    pub fn retry_later(reason: impl Into<String>) -> EventReply {
        EventReply {
            outcome: EventOutcome::RetryLater(reason.into()),
            actions: Vec::new(),
        }
    }

    /// It can never succeed: the delivery becomes a dead letter at once.
    pub fn failed(reason: impl Into<String>) -> EventReply {
        EventReply {
            outcome: EventOutcome::Failed(reason.into()),
            actions: Vec::new(),
        }
    }

    /// The same reply with these actions (applied when the outcome is `ok`).
    pub fn with_actions(mut self, actions: Vec<Action>) -> EventReply {
        self.actions = actions;
        self
    }
}

impl AppRef {
    /// An existing application, e.g. `APP-12`.
    pub fn id(id: impl Into<String>) -> AppRef {
        AppRef::Id(id.into())
    }

    /// The application a `create-draft` with this key created.
    pub fn key(key: impl Into<String>) -> AppRef {
        AppRef::Key(key.into())
    }
}

impl Draft {
    /// A draft of permit type `permit` (kind `baru`), idempotent by `key` within the connector,
    /// with empty applicant, data and external objects.
    pub fn new(key: impl Into<String>, permit: impl Into<String>) -> Draft {
        Draft {
            key: key.into(),
            permit: permit.into(),
            kind: None,
            applicant: "{}".to_owned(),
            data: "{}".to_owned(),
            external: "{}".to_owned(),
        }
    }

    /// The application kind (`baru`, `perpanjangan`, ...).
    pub fn kind(mut self, kind: impl Into<String>) -> Draft {
        self.kind = Some(kind.into());
        self
    }

    /// The applicant: `name` and optionally `nik`, `npwp`, `address`, `phone`, `email`.
    pub fn applicant(mut self, applicant: serde_json::Value) -> Draft {
        self.applicant = applicant.to_string();
        self
    }

    /// The form data, checked against the permit type's field rules.
    pub fn data(mut self, data: serde_json::Value) -> Draft {
        self.data = data.to_string();
        self
    }

    /// Stored as the application's `external["<connector name>"]`.
    pub fn external(mut self, external: serde_json::Value) -> Draft {
        self.external = external.to_string();
        self
    }
}

impl Action {
    /// Create a draft application (idempotent by the draft's key).
    pub fn draft(draft: Draft) -> Action {
        Action::CreateDraft(draft)
    }

    /// Merge `value` (a JSON object) into the application's `external["<connector name>"]`.
    pub fn attach(application: AppRef, value: serde_json::Value) -> Action {
        Action::AttachExternal(ExternalRef {
            application,
            value: value.to_string(),
        })
    }

    /// A note in the application's history, shown to office staff.
    pub fn note(application: AppRef, text: impl Into<String>) -> Action {
        Action::Note(AppNote {
            application,
            text: text.into(),
        })
    }
}

impl Timestamp {
    /// This moment in the office's local time.
    pub fn local(&self) -> LocalTime {
        LocalTime::from_unix_millis(self.unix_millis, self.utc_offset_minutes)
    }

    /// `YYYY-MM-DD HH:MM:SS` in the office's local time.
    pub fn office_datetime(&self) -> String {
        self.local().datetime()
    }
}

/// What went wrong with an outbound request, as one line of text.
pub fn describe_http_error(error: &HttpError) -> String {
    match error {
        HttpError::NotAllowed(m) => format!("not allowed: {m}"),
        HttpError::InvalidRequest(m) => format!("invalid request: {m}"),
        HttpError::Connection(m) => format!("connection failed: {m}"),
        HttpError::Timeout(m) => format!("timed out: {m}"),
        HttpError::TooLarge(m) => format!("response too large: {m}"),
    }
}

/// Outbound HTTP, allowed only to the `scheme://host:port` entries of the manifest's
/// `[allow] hosts`, within the call's deadline.
pub mod http {
    use super::{host, Header, HttpError, HttpRequest, HttpResponse};
    use serde::Serialize;

    /// What an outside server answered.
    pub type Response = HttpResponse;

    /// Sends `request` as it is.
    pub fn send(request: &HttpRequest) -> Result<Response, HttpError> {
        host::http_send(request)
    }

    /// A `GET` with these headers.
    pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Response, HttpError> {
        send(&HttpRequest {
            method: "GET".to_owned(),
            url: url.to_owned(),
            headers: header_list(headers),
            body: Vec::new(),
        })
    }

    /// A `POST` of `body` as JSON (`content-type: application/json` is added unless `headers`
    /// has a content type).
    pub fn post_json<T: Serialize + ?Sized>(
        url: &str,
        headers: &[(&str, &str)],
        body: &T,
    ) -> Result<Response, HttpError> {
        let body = serde_json::to_vec(body).map_err(|e| {
            HttpError::InvalidRequest(format!("body cannot be written as JSON: {e}"))
        })?;
        let mut headers = header_list(headers);
        if !headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("content-type"))
        {
            headers.push(Header::new("content-type", "application/json"));
        }
        send(&HttpRequest {
            method: "POST".to_owned(),
            url: url.to_owned(),
            headers,
            body,
        })
    }

    fn header_list(headers: &[(&str, &str)]) -> Vec<Header> {
        headers.iter().map(|(n, v)| Header::new(*n, *v)).collect()
    }
}

/// The manifest's `[config]` (with the office's overrides from `pintu.toml`) as `T`.
pub fn config<T: DeserializeOwned>() -> Result<T, String> {
    from_json("the connector's config", host::config().as_bytes())
}

/// A secret from `DATA/secrets.toml` (`[<connector name>]` table) or the environment variable
/// the manifest's `[secrets]` names; `None` when it is not set. Never log it.
pub fn secret(name: &str) -> Option<String> {
    host::secret(name)
}

/// The current time (UTC milliseconds and the office's UTC offset).
pub fn now() -> Timestamp {
    host::now()
}

/// The levy the office's rules assess for `input` (the permit type's form data), as
/// `POST /v1/permits/<permit>/levy` answers it.
pub fn assess_levy(permit: &str, input: &serde_json::Value) -> Result<serde_json::Value, String> {
    let answer = host::assess_levy(permit, &input.to_string())?;
    from_json(&format!("the levy of `{permit}`"), answer.as_bytes())
}

/// The connector's private key-value space, stored in Pintu's database. Keys are at most 512
/// bytes, values at most 64 KiB. In a dry run (`/admin/connectors/{name}/invoke`) writes are
/// seen by the same call and then dropped.
pub mod kv {
    use super::{from_json, host, to_json};
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    pub fn get(key: &str) -> Option<Vec<u8>> {
        host::kv_get(key)
    }

    pub fn set(key: &str, value: &[u8]) -> Result<(), String> {
        host::kv_set(key, value)
    }

    pub fn delete(key: &str) -> Result<(), String> {
        host::kv_delete(key)
    }

    /// The value under `key` parsed as JSON; `Ok(None)` when there is none.
    pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, String> {
        match get(key) {
            None => Ok(None),
            Some(bytes) => from_json(&format!("kv `{key}`"), &bytes).map(Some),
        }
    }

    /// Stores `value` as JSON under `key`.
    pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), String> {
        set(key, to_json(&format!("kv `{key}`"), value)?.as_bytes())
    }
}

/// Structured logging; the host tags each line with the connector's name and version.
pub mod log {
    use super::{host, LogLevel};

    /// A line with fields (`key = value` pairs kept apart from the message).
    pub fn log(level: LogLevel, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        host::log(level, message, &fields);
    }

    pub fn trace(message: &str) {
        log(LogLevel::Trace, message, &[]);
    }

    pub fn debug(message: &str) {
        log(LogLevel::Debug, message, &[]);
    }

    pub fn info(message: &str) {
        log(LogLevel::Info, message, &[]);
    }

    pub fn warn(message: &str) {
        log(LogLevel::Warn, message, &[]);
    }

    pub fn error(message: &str) {
        log(LogLevel::Error, message, &[]);
    }
}

/// `info!("…", args)`: a formatted info line through the host's log.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::info(&::std::format!($($arg)*)) };
}

/// `warn!("…", args)`: a formatted warning through the host's log.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::warn(&::std::format!($($arg)*)) };
}

/// `error!("…", args)`: a formatted error line through the host's log.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::error(&::std::format!($($arg)*)) };
}

/// `debug!("…", args)`: a formatted debug line through the host's log.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::debug(&::std::format!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn request(headers: &[(&str, &str)], body: &str) -> InboundRequest {
        InboundRequest {
            method: "POST".into(),
            path: "receiveNIB".into(),
            query: String::new(),
            headers: headers.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn request_headers_are_found_case_insensitively() {
        let req = request(&[("Token", "abc"), ("token", "second")], "{}");
        assert_eq!(req.header("token"), Some("abc"));
        assert_eq!(req.header("TOKEN"), Some("abc"));
        assert_eq!(req.header("user_key"), None);
    }

    #[test]
    fn a_bad_body_names_what_was_read() {
        let req = request(&[], "{not json");
        let err = req.body_json::<Value>().unwrap_err();
        assert!(
            err.starts_with("the request body is not the expected JSON: "),
            "{err}"
        );
        let ok: Value = request(&[], r#"{"nib": "812"}"#).body_json().unwrap();
        assert_eq!(ok["nib"], "812");
    }

    #[test]
    fn json_replies_carry_their_content_type() {
        let reply = InboundReply::json(201, &json!({"ok": true}))
            .with_header("x-trace", "1")
            .with_actions(vec![Action::note(AppRef::id("APP-1"), "seen")]);
        assert_eq!(reply.response.status, 201);
        assert_eq!(
            reply.response.header("Content-Type"),
            Some("application/json")
        );
        assert_eq!(reply.response.header("x-trace"), Some("1"));
        assert_eq!(
            reply.response.parse_json::<Value>().unwrap(),
            json!({"ok": true})
        );
        assert_eq!(reply.actions.len(), 1);
    }

    #[test]
    fn a_reply_that_cannot_be_json_is_a_500_saying_so() {
        let mut bad = std::collections::BTreeMap::new();
        bad.insert(vec![1u8], 1);
        let reply = HttpResponse::json(200, &bad);
        assert_eq!(reply.status, 500);
        assert!(reply.body_text().contains("cannot be written as JSON"));
    }

    #[test]
    fn response_json_errors_name_the_status() {
        let resp = HttpResponse::text(502, "<html>bad gateway</html>");
        assert!(!resp.is_success());
        let err = resp.parse_json::<Value>().unwrap_err();
        assert!(err.contains("status 502"), "{err}");
        assert!(HttpResponse::json(204, &json!(null)).is_success());
    }

    #[test]
    fn drafts_carry_json_texts() {
        let draft = Draft::new("I-1", "pbg")
            .kind("perpanjangan")
            .applicant(json!({"name": "Budi"}))
            .data(json!({"luas": "120.5"}))
            .external(json!({"nib": "812"}));
        let Action::CreateDraft(d) = Action::draft(draft) else {
            panic!("not a draft")
        };
        assert_eq!(d.kind.as_deref(), Some("perpanjangan"));
        assert_eq!(
            serde_json::from_str::<Value>(&d.applicant).unwrap()["name"],
            "Budi"
        );
        assert_eq!(
            serde_json::from_str::<Value>(&d.data).unwrap()["luas"],
            "120.5"
        );
        assert_eq!(d.external, r#"{"nib":"812"}"#);
        let plain = Draft::new("I-2", "sktm");
        assert_eq!((plain.applicant.as_str(), plain.kind), ("{}", None));
    }

    #[test]
    fn event_data_and_snapshot_parse_with_located_errors() {
        let ev = Event {
            seq: 7,
            kind: "application.advanced".into(),
            application: "APP-3".into(),
            at: "2026-11-30T05:00:00Z".into(),
            data: r#"{"from": "verifikasi", "to": "survei"}"#.into(),
            snapshot: "oops".into(),
            idempotency_key: "echo:7".into(),
            attempt: 1,
        };
        assert_eq!(ev.data::<Value>().unwrap()["to"], "survei");
        let err = ev.snapshot::<Value>().unwrap_err();
        assert!(err.starts_with("the snapshot of event 7 is not"), "{err}");
    }

    #[test]
    fn event_replies_say_their_outcome() {
        assert!(matches!(EventReply::ok().outcome, EventOutcome::Ok));
        assert!(matches!(
            EventReply::retry_later("oss down").outcome,
            EventOutcome::RetryLater(r) if r == "oss down"
        ));
        let failed = EventReply::failed("no").with_actions(vec![Action::attach(
            AppRef::key("I-1"),
            json!({"status": "x"}),
        )]);
        assert!(matches!(failed.outcome, EventOutcome::Failed(_)));
        assert!(
            matches!(&failed.actions[..], [Action::AttachExternal(e)] if e.value == r#"{"status":"x"}"#)
        );
    }

    #[test]
    fn timestamps_format_in_office_time() {
        let t = Timestamp {
            unix_millis: 1_796_059_805_000,
            utc_offset_minutes: 420,
        };
        assert_eq!(t.office_datetime(), "2026-12-01 00:30:05");
        assert_eq!(t.local().ymd(), "20261201");
    }

    #[test]
    fn http_errors_read_as_one_line() {
        assert_eq!(
            describe_http_error(&HttpError::NotAllowed("https://x.example:443".into())),
            "not allowed: https://x.example:443"
        );
        assert_eq!(
            describe_http_error(&HttpError::Timeout("after 5000 ms".into())),
            "timed out: after 5000 ms"
        );
    }
}
