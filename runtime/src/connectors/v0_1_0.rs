//! Bindings of `pintu:connector@0.1.0`, and the conversions between its generated types and the
//! version-independent [`super::types`]. A later WIT version gets a sibling module; this one
//! never changes, so connectors built against 0.1.0 keep working.

use super::call::CallState;
use super::types as t;

wasmtime::component::bindgen!({
    path: "../host-api/wit/pintu-connector@0.1.0",
    world: "connector",
});

use self::pintu::connector::host;
use self::pintu::connector::types as w;

/// The version string of this contract.
pub const WIT: &str = "0.1.0";

impl w::Host for CallState {}

impl host::Host for CallState {
    fn log(&mut self, level: w::LogLevel, message: String, fields: Vec<(String, String)>) {
        let level = match level {
            w::LogLevel::Trace => t::LogLevel::Trace,
            w::LogLevel::Debug => t::LogLevel::Debug,
            w::LogLevel::Info => t::LogLevel::Info,
            w::LogLevel::Warn => t::LogLevel::Warn,
            w::LogLevel::Error => t::LogLevel::Error,
        };
        CallState::log(self, level, &message, &fields);
    }

    fn http_send(&mut self, request: w::HttpRequest) -> Result<w::HttpResponse, w::HttpError> {
        let request = t::HttpRequest {
            method: request.method,
            url: request.url,
            headers: request.headers.into_iter().map(header_in).collect(),
            body: request.body,
        };
        match CallState::http_send(self, request) {
            Ok(r) => Ok(response_out(r)),
            Err(e) => Err(match e {
                t::HttpError::NotAllowed(m) => w::HttpError::NotAllowed(m),
                t::HttpError::InvalidRequest(m) => w::HttpError::InvalidRequest(m),
                t::HttpError::Connection(m) => w::HttpError::Connection(m),
                t::HttpError::Timeout(m) => w::HttpError::Timeout(m),
                t::HttpError::TooLarge(m) => w::HttpError::TooLarge(m),
            }),
        }
    }

    fn config(&mut self) -> String {
        CallState::config_json(self).to_owned()
    }

    fn secret(&mut self, name: String) -> Option<String> {
        CallState::secret(self, &name)
    }

    fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        CallState::kv_get(self, &key)
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        CallState::kv_set(self, &key, value)
    }

    fn kv_delete(&mut self, key: String) -> Result<(), String> {
        CallState::kv_delete(self, &key)
    }

    fn now(&mut self) -> w::Timestamp {
        let (unix_millis, utc_offset_minutes) = CallState::now(self);
        w::Timestamp {
            unix_millis,
            utc_offset_minutes,
        }
    }

    fn assess_levy(&mut self, permit: String, input: String) -> Result<String, String> {
        CallState::assess_levy(self, &permit, &input)
    }
}

fn header_in(h: w::Header) -> t::Header {
    t::Header {
        name: h.name,
        value: h.value,
    }
}

fn header_out(h: t::Header) -> w::Header {
    w::Header {
        name: h.name,
        value: h.value,
    }
}

fn response_out(r: t::HttpResponse) -> w::HttpResponse {
    w::HttpResponse {
        status: r.status,
        headers: r.headers.into_iter().map(header_out).collect(),
        body: r.body,
    }
}

fn response_in(r: w::HttpResponse) -> t::HttpResponse {
    t::HttpResponse {
        status: r.status,
        headers: r.headers.into_iter().map(header_in).collect(),
        body: r.body,
    }
}

fn app_ref_in(r: w::AppRef) -> t::AppRef {
    match r {
        w::AppRef::Id(id) => t::AppRef::Id(id),
        w::AppRef::Key(key) => t::AppRef::Key(key),
    }
}

pub(crate) fn action_in(a: w::Action) -> t::Action {
    match a {
        w::Action::CreateDraft(d) => t::Action::CreateDraft(t::Draft {
            key: d.key,
            permit: d.permit,
            kind: d.kind,
            applicant: d.applicant,
            data: d.data,
            external: d.external,
        }),
        w::Action::AttachExternal(x) => t::Action::AttachExternal(t::ExternalRef {
            application: app_ref_in(x.application),
            value: x.value,
        }),
        w::Action::Note(n) => t::Action::Note(t::AppNote {
            application: app_ref_in(n.application),
            text: n.text,
        }),
    }
}

pub(crate) fn info_in(i: w::Info) -> t::Info {
    t::Info {
        name: i.name,
        version: i.version,
        events: i.events,
    }
}

pub(crate) fn inbound_out(r: t::InboundRequest) -> w::InboundRequest {
    w::InboundRequest {
        method: r.method,
        path: r.path,
        query: r.query,
        headers: r.headers.into_iter().map(header_out).collect(),
        body: r.body,
    }
}

pub(crate) fn inbound_reply_in(r: w::InboundReply) -> t::InboundReply {
    t::InboundReply {
        response: response_in(r.response),
        actions: r.actions.into_iter().map(action_in).collect(),
    }
}

pub(crate) fn event_out(e: t::Event) -> w::Event {
    w::Event {
        seq: e.seq,
        kind: e.kind,
        application: e.application,
        at: e.at,
        data: e.data,
        snapshot: e.snapshot,
        idempotency_key: e.idempotency_key,
        attempt: e.attempt,
    }
}

pub(crate) fn event_reply_in(r: w::EventReply) -> t::EventReply {
    t::EventReply {
        outcome: match r.outcome {
            w::EventOutcome::Ok => t::EventOutcome::Ok,
            w::EventOutcome::RetryLater(why) => t::EventOutcome::RetryLater(why),
            w::EventOutcome::Failed(why) => t::EventOutcome::Failed(why),
        },
        actions: r.actions.into_iter().map(action_in).collect(),
    }
}
