//! Plain Rust mirrors of the records of the WIT contract (`pintu:connector`), independent of
//! the WIT version a connector was built against: the per-version bindings convert to and from
//! these, and the rest of Pintu (release, services, API) only ever sees these.
//!
//! Application data stays JSON text here, as it crosses the boundary: the services parse and
//! check it against the active release.

use serde::{Deserialize, Serialize};

/// One HTTP header. Names compare case-insensitively; a name may repeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A request a connector sends out through `host.http-send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: Vec<Header>,
    #[serde(default)]
    pub body: Vec<u8>,
}

/// An HTTP response: what an outside server answered, or what a connector answers to an
/// inbound request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<Header>,
    #[serde(default)]
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// Why `http-send` returned no response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", content = "message", rename_all = "snake_case")]
pub enum HttpError {
    /// The URL's `scheme://host:port` is not in the manifest's `[allow] hosts`; nothing was sent.
    NotAllowed(String),
    /// The URL or a header is malformed; nothing was sent.
    InvalidRequest(String),
    /// No connection, or it broke before a response arrived.
    Connection(String),
    /// No answer before the call's deadline.
    Timeout(String),
    /// The response body exceeded the host's limit.
    TooLarge(String),
}

/// Severity of a connector's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Which application an action is about: `{"id": "APP-12"}` or `{"key": "<draft key>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppRef {
    /// An existing application, e.g. `APP-12`.
    Id(String),
    /// The application created (now or earlier) by a `create-draft` with this key.
    Key(String),
}

/// A draft application to create (idempotent by `key` within the connector).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    pub key: String,
    pub permit: String,
    #[serde(default)]
    pub kind: Option<String>,
    /// JSON object text: `name` and optionally `nik`, `npwp`, `address`, `phone`, `email`.
    pub applicant: String,
    /// JSON object text: the form data.
    pub data: String,
    /// JSON object text, stored as the application's `external["<connector>"]`.
    pub external: String,
}

/// Merges a JSON object into the application's `external["<connector>"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalRef {
    pub application: AppRef,
    /// JSON object text.
    pub value: String,
}

/// A note in the application's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppNote {
    pub application: AppRef,
    pub text: String,
}

/// What a connector asks the host to do after a call. JSON:
/// `{"type": "create_draft", "key": …}`, `{"type": "attach_external", …}`, `{"type": "note", …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    CreateDraft(Draft),
    AttachExternal(ExternalRef),
    Note(AppNote),
}

impl Action {
    /// The size of the action's JSON text, the measure of the per-action output cap.
    pub fn json_len(&self) -> usize {
        serde_json::to_vec(self).map_or(usize::MAX, |v| v.len())
    }
}

/// What a connector says about itself; must agree with its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    pub name: String,
    pub version: String,
    pub events: Vec<String>,
}

/// An HTTP request that arrived at `POST /v1/connectors/<name>/inbound/<path>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundRequest {
    pub method: String,
    /// The part after `/inbound/`, e.g. `receiveNIB`.
    pub path: String,
    /// The raw query string without `?`; empty when there is none.
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub headers: Vec<Header>,
    #[serde(default)]
    pub body: Vec<u8>,
}

impl InboundRequest {
    /// The first header named `name` (case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// The response to send back, and the actions to apply first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundReply {
    pub response: HttpResponse,
    pub actions: Vec<Action>,
}

/// One outbox event as a connector receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    /// e.g. `application.submitted`, `application.advanced`, `permit.issued`.
    pub kind: String,
    pub application: String,
    /// RFC 3339.
    pub at: String,
    /// JSON object text: the event's own data.
    pub data: String,
    /// JSON object text: the application as `GET /v1/applications/{id}` shows it now.
    pub snapshot: String,
    /// Stable across retries of one delivery.
    pub idempotency_key: String,
    /// 1 on the first delivery, then 2, 3, ...
    pub attempt: u32,
}

/// How handling an event went. JSON: `{"outcome": "ok"}`,
/// `{"outcome": "retry_later", "reason": "…"}`, `{"outcome": "failed", "reason": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "snake_case")]
pub enum EventOutcome {
    Ok,
    RetryLater(String),
    Failed(String),
}

/// A connector's answer to one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventReply {
    pub outcome: EventOutcome,
    pub actions: Vec<Action>,
}

fn find_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn actions_are_tagged_by_type_in_json() {
        let a = Action::CreateDraft(Draft {
            key: "I-1".into(),
            permit: "pbg".into(),
            kind: None,
            applicant: r#"{"name":"Budi"}"#.into(),
            data: "{}".into(),
            external: r#"{"nib":"1"}"#.into(),
        });
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["type"], "create_draft");
        assert_eq!(v["key"], "I-1");
        assert_eq!(serde_json::from_value::<Action>(v).unwrap(), a);

        let n = Action::Note(AppNote {
            application: AppRef::Key("I-1".into()),
            text: "hi".into(),
        });
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(
            v,
            json!({"type": "note", "application": {"key": "I-1"}, "text": "hi"})
        );
        assert_eq!(serde_json::from_value::<Action>(v).unwrap(), n);
        assert!(n.json_len() > 10);
    }

    #[test]
    fn event_outcomes_carry_their_reason() {
        let v = serde_json::to_value(EventOutcome::RetryLater("down".into())).unwrap();
        assert_eq!(v, json!({"outcome": "retry_later", "reason": "down"}));
        let v = serde_json::to_value(EventOutcome::Ok).unwrap();
        assert_eq!(v, json!({"outcome": "ok"}));
        let back: EventOutcome =
            serde_json::from_value(json!({"outcome": "failed", "reason": "no"})).unwrap();
        assert_eq!(back, EventOutcome::Failed("no".into()));
    }

    #[test]
    fn headers_are_found_case_insensitively() {
        let r = InboundRequest {
            method: "POST".into(),
            path: "receiveNIB".into(),
            query: String::new(),
            headers: vec![Header {
                name: "Token".into(),
                value: "abc".into(),
            }],
            body: vec![],
        };
        assert_eq!(r.header("token"), Some("abc"));
        assert_eq!(r.header("x"), None);
        let parsed: InboundRequest =
            serde_json::from_value(json!({"method": "POST", "path": "p"})).unwrap();
        assert!(parsed.headers.is_empty() && parsed.body.is_empty() && parsed.query.is_empty());
    }
}
