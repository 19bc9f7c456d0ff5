//! Connector routes: the public inbound route outside systems call (the connector checks the
//! caller itself, as OSS's `Token` header scheme requires), and the admin's list and dry runs.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::{AppError, ErrorAnswer};
use super::extract::{bytes_rejection, Admin, Body, Path};
use super::routes::{Access, Route};
use crate::app::App;
use crate::auth;
use crate::connectors::{Header, HttpResponse, InboundRequest};
use crate::services::connectors::{ConnectorView, Invocation, InvokeAnswer};

pub fn routes() -> Vec<Route> {
    const ADMIN: Access = Access::Roles(&[auth::ADMIN]);
    vec![
        Route::post(
            "/v1/connectors/{name}/inbound/{*path}",
            Access::Public,
            inbound,
        )
        .doc::<__path_inbound>(),
        Route::get("/admin/connectors", ADMIN, list).doc::<__path_list>(),
        Route::post("/admin/connectors/{name}/invoke", ADMIN, invoke).doc::<__path_invoke>(),
    ]
}

/// Response headers the server sets itself: a connector's would contradict the body it sends.
const HOP_BY_HOP: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

#[utoipa::path(
    post,
    path = "/v1/connectors/{name}/inbound/{path}",
    tag = "connectors",
    summary = "An outside system's request to a connector: the connector answers, after its actions are applied",
    description = "No bearer token: the connector authenticates the caller itself (e.g. OSS RBA's `Token` header). The body (any content type, within `max_body_bytes`), the headers, the query and the path after `/inbound/` go to the connector's `handle-inbound`; the actions it returns are checked, then applied; then its response is sent as it is (status, headers, body).",
    params(
        ("name" = String, Path, description = "The connector, e.g. `oss-rba`"),
        ("path" = String, Path, description = "Passed to the connector, e.g. `receiveNIB`"),
    ),
    responses(
        (status = 200, description = "The connector's response, as it answered it (its own status, headers and body)"),
        (status = 404, description = "`unknown_connector`: the active release has no such connector", body = ErrorAnswer),
        (status = 413, description = "`body_too_large`", body = ErrorAnswer),
        (status = 502, description = "`connector_failed`: the call failed (trap, timeout, memory, output too large, a host outside its allowlist, or its own error), naming connector, version and cause; `connector_action_invalid`: an action it asked for is invalid, nothing was applied", body = ErrorAnswer),
        (status = 503, description = "`no_release` or `storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn inbound(
    State(app): State<Arc<App>>,
    Path((name, path)): Path<(String, String)>,
    req: Request,
) -> Result<Response, AppError> {
    let method = req.method().as_str().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let headers: Vec<Header> = req
        .headers()
        .iter()
        .map(|(n, v)| Header {
            name: n.as_str().to_owned(),
            value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
        })
        .collect();
    let limit = app.config().limits.max_body_bytes;
    let body = Bytes::from_request(req, &app)
        .await
        .map_err(|r| bytes_rejection(r, limit))?;
    let request = InboundRequest {
        method,
        path,
        query,
        headers,
        body: body.to_vec(),
    };
    let reply = app.connectors().inbound(&name, request).await?;
    into_response(&name, reply)
}

/// The connector's response as HTTP (the service checked that HTTP can carry its status and
/// headers).
fn into_response(name: &str, reply: HttpResponse) -> Result<Response, AppError> {
    let bad = |what: String| {
        AppError::Internal(format!(
            "connector `{name}` answered {what}, which HTTP cannot carry"
        ))
    };
    let status =
        StatusCode::from_u16(reply.status).map_err(|_| bad(format!("status {}", reply.status)))?;
    let mut response = (status, reply.body).into_response();
    let headers = response.headers_mut();
    for h in reply.headers {
        if HOP_BY_HOP.contains(&h.name.to_ascii_lowercase().as_str()) {
            continue;
        }
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| bad(format!("header `{}`", h.name)))?;
        let value = HeaderValue::from_bytes(h.value.as_bytes())
            .map_err(|_| bad(format!("a value of header `{}`", h.name)))?;
        headers.append(name, value);
    }
    Ok(response)
}

/// `GET /admin/connectors`.
#[derive(Serialize, utoipa::ToSchema)]
struct ConnectorsAnswer {
    /// The release serving now (its id covers rules and connectors).
    release: Option<String>,
    connectors: Vec<ConnectorView>,
}

#[utoipa::path(
    get,
    path = "/admin/connectors",
    tag = "connectors",
    summary = "The connectors of the active release, with their call counts, last error and latency",
    responses(
        (status = 200, description = "Every connector (never secrets nor `[config]` values)", body = ConnectorsAnswer),
    ),
)]
async fn list(State(app): State<Arc<App>>, _: Admin) -> Json<ConnectorsAnswer> {
    Json(ConnectorsAnswer {
        release: app.releases().current().map(|r| r.id.clone()),
        connectors: app.connectors().list(),
    })
}

#[utoipa::path(
    post,
    path = "/admin/connectors/{name}/invoke",
    tag = "connectors",
    summary = "A dry run of a connector's handle-inbound or handle-event: its answer and the actions that would be applied",
    description = "Nothing is applied and the connector's kv writes are dropped; the call counts in its statistics. The outbound HTTP requests it makes are not sent: the connector is told the connection failed, and the answer lists them in `held_requests` (header names only, secrets masked).",
    params(("name" = String, Path, description = "The connector, e.g. `echo`")),
    request_body = Invocation,
    responses(
        (status = 200, description = "The reply, the actions as returned and what applying them would do", body = InvokeAnswer),
        (status = 404, description = "`unknown_connector`; `not_found`: the event's application does not exist", body = ErrorAnswer),
        (status = 422, description = "`invalid_body`: not exactly one of `inbound` and `event`", body = ErrorAnswer),
        (status = 502, description = "`connector_failed` or `connector_action_invalid`", body = ErrorAnswer),
        (status = 503, description = "`no_release`", body = ErrorAnswer),
    ),
)]
async fn invoke(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(name): Path<String>,
    Body(req): Body<Invocation>,
) -> Result<Json<InvokeAnswer>, AppError> {
    Ok(Json(app.connectors().invoke(&name, req).await?))
}
