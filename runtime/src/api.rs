//! The HTTP API (axum). [`router`] is separate from [`serve`] so tests can drive it without a
//! socket; `serve` adds the listener, the file watcher and graceful shutdown.

mod admin;
mod applications;
mod connectors;
mod error;
mod extract;
mod openapi;
mod outbox;
mod routes;
mod server;
mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json_;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::app::{App, Health};
use crate::services::evaluator::{EvalError, Evaluation, Kind};
pub use error::AppError;
use error::ErrorAnswer;
use extract::{Body, Path};

pub use openapi::document as openapi_document;
pub use routes::{routes, Access, Route};

/// The public routes; admin routes are in [`admin::routes`]. [`routes`] lists both.
fn public_routes() -> Vec<Route> {
    vec![
        Route::get("/health", Access::Public, health).doc::<__path_health>(),
        Route::get("/metrics", Access::Public, metrics).doc::<__path_metrics>(),
        Route::get("/openapi.json", Access::Public, openapi::openapi)
            .doc::<openapi::__path_openapi>(),
        Route::get("/v1/permits", Access::Public, list_permits).doc::<__path_list_permits>(),
        Route::get("/v1/permits/{id}", Access::Public, show_permit).doc::<__path_show_permit>(),
        Route::post("/v1/permits/{id}/validate", Access::Public, validate).doc::<__path_validate>(),
        Route::post("/v1/permits/{id}/levy", Access::Public, levy).doc::<__path_levy>(),
    ]
}

pub fn router(app: Arc<App>) -> Router {
    let limit = app.config().limits.max_body_bytes;
    let body_timeout = app.config().http.body_read_timeout();
    routes::mount(Router::new(), &app)
        .fallback(|| async { AppError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        // A client that stops sending its body mid-way gets a 408 instead of holding the
        // handler (and its connection) open.
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(middleware::from_fn_with_state(app.clone(), record_request))
        .with_state(app)
}

async fn record_request(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let method = crate::metrics::method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    app.metrics().request(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `/health`'s body; the fields keep the order they have always had on the wire.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum HealthAnswer<'a> {
    Degraded {
        status: &'static str,
        release: &'a str,
        reason: &'a str,
    },
    Other {
        status: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        release: Option<&'a str>,
    },
}

/// `status` is `ok`, `degraded` (serving a stored release, not the folder's: `reason` says why)
/// or `unavailable` (no release, or the storage failed).
#[utoipa::path(
    get,
    path = "/health",
    tag = "rules",
    summary = "Whether the server serves rules and can record decisions",
    responses(
        (status = 200, description = "Serving: `ok`, or `degraded`", body = HealthAnswer),
        (status = 503, description = "`unavailable`: no release serves, or the storage failed", body = HealthAnswer),
    ),
)]
async fn health(State(app): State<Arc<App>>) -> Response {
    let health = app.health();
    let (status, answer) = match &health {
        // Serving rules without being able to record decisions is not serving: every
        // evaluation would fail, so a load balancer must look elsewhere.
        Health::StorageUnavailable { reason, release } => (
            StatusCode::SERVICE_UNAVAILABLE,
            HealthAnswer::Other {
                status: "unavailable",
                reason: Some(format!("storage: {reason}")),
                release: release.as_deref(),
            },
        ),
        // Serving, but not what the rules folder holds: still 200, and the reason.
        Health::Degraded { release, reason } => (
            StatusCode::OK,
            HealthAnswer::Degraded {
                status: "degraded",
                release,
                reason,
            },
        ),
        Health::Ok { release } => (
            StatusCode::OK,
            HealthAnswer::Other {
                status: "ok",
                reason: None,
                release: Some(release),
            },
        ),
        Health::NoRelease => (
            StatusCode::SERVICE_UNAVAILABLE,
            HealthAnswer::Other {
                status: "unavailable",
                reason: None,
                release: None,
            },
        ),
    };
    (status, Json(answer)).into_response()
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "rules",
    summary = "Prometheus metrics (text exposition format)",
    responses((status = 200, description = "The metrics", content_type = "application/openmetrics-text", body = String)),
)]
async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        app.render_metrics(),
    )
        .into_response()
}

fn release(app: &App) -> Result<Arc<crate::release::Release>, AppError> {
    app.releases()
        .current()
        .ok_or(AppError::Eval(EvalError::NoRelease))
}

/// One row of `/v1/permits`.
#[derive(Serialize, utoipa::ToSchema)]
struct PermitRow<'a> {
    id: &'a str,
    name: &'a str,
    has_levy: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
struct PermitList<'a> {
    permits: Vec<PermitRow<'a>>,
    release: &'a str,
}

#[utoipa::path(
    get,
    path = "/v1/permits",
    tag = "rules",
    summary = "The permit types of the active release",
    responses(
        (status = 200, description = "Every permit type", body = PermitList),
        (status = 503, description = "`no_release`: no release serves", body = ErrorAnswer),
    ),
)]
async fn list_permits(State(app): State<Arc<App>>) -> Result<Response, AppError> {
    let r = release(&app)?;
    let permits = r
        .permits
        .values()
        .map(|p| PermitRow {
            id: &p.id,
            name: &p.name,
            has_levy: p.levy.is_some(),
        })
        .collect();
    Ok(Json(PermitList {
        permits,
        release: &r.id,
    })
    .into_response())
}

/// `/v1/permits/{id}`: the permit's description and the release it belongs to.
#[derive(Serialize)]
struct PermitAnswer<'a> {
    #[serde(flatten)]
    permit: Json_,
    release: &'a str,
}

#[utoipa::path(
    get,
    path = "/v1/permits/{id}",
    tag = "rules",
    summary = "One permit type: its fields, documents and flow",
    params(("id" = String, Path, description = "The permit type, e.g. `pbg`")),
    responses(
        (status = 200, description = "The permit type", body = openapi::PermitDescription),
        (status = 404, description = "`unknown_permit`: no such permit type", body = ErrorAnswer),
        (status = 503, description = "`no_release`: no release serves", body = ErrorAnswer),
    ),
)]
async fn show_permit(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let r = release(&app)?;
    let permit = r
        .permits
        .get(&id)
        .ok_or_else(|| AppError::Eval(EvalError::UnknownPermit(id.clone())))?;
    Ok(Json(PermitAnswer {
        permit: permit.describe(),
        release: &r.id,
    })
    .into_response())
}

/// `{"data": {...}}`; anything else in the body is a mistake worth naming.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EvalRequest {
    /// The form data, as the permit type's fields name it; numbers may be JSON numbers or
    /// decimal strings.
    data: Json_,
}

#[utoipa::path(
    post,
    path = "/v1/permits/{id}/validate",
    tag = "rules",
    summary = "Checks form data against the permit type's rules",
    params(("id" = String, Path, description = "The permit type, e.g. `pbg`")),
    request_body = EvalRequest,
    responses(
        (status = 200, description = "Checked: `valid`, and every error if not", body = openapi::ValidationAnswer),
        (status = 404, description = "`unknown_permit`: no such permit type", body = ErrorAnswer),
        (status = 500, description = "`script_error` or `script_limit`: the rules failed", body = ErrorAnswer),
        (status = 503, description = "`no_release`, `overloaded` (with `Retry-After`) or `storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn validate(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Body(req): Body<EvalRequest>,
) -> Result<Json<Evaluation>, AppError> {
    evaluate(&app, &id, Kind::Validate, req.data).await
}

#[utoipa::path(
    post,
    path = "/v1/permits/{id}/levy",
    tag = "rules",
    summary = "Assesses the levy of valid form data",
    params(("id" = String, Path, description = "The permit type, e.g. `sewa-tanah`")),
    request_body = EvalRequest,
    responses(
        (status = 200, description = "The assessment: exact decimal strings, totalled by the runtime", body = openapi::LevyAnswer),
        (status = 404, description = "`unknown_permit`, or `no_levy`: the permit type has no levy", body = ErrorAnswer),
        (status = 422, description = "`invalid_data`: `errors` names every wrong field; or `invalid_body`", body = ErrorAnswer),
        (status = 500, description = "`script_error` or `script_limit`: the rules failed", body = ErrorAnswer),
        (status = 503, description = "`no_release`, `overloaded` (with `Retry-After`) or `storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn levy(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Body(req): Body<EvalRequest>,
) -> Result<Json<Evaluation>, AppError> {
    evaluate(&app, &id, Kind::Levy, req.data).await
}

async fn evaluate(
    app: &App,
    id: &str,
    kind: Kind,
    data: Json_,
) -> Result<Json<Evaluation>, AppError> {
    match app.evaluator().evaluate(id, kind, data).await? {
        Evaluation::Invalid { errors, release } => Err(AppError::InvalidData {
            errors,
            release,
            language: app.config().language,
        }),
        answer => Ok(Json(answer)),
    }
}

/// Serves until SIGINT/SIGTERM, then gives in-flight requests the grace period to finish and
/// closes the database. The folders' `watcher` (started before the start-up, see
/// [`crate::watch::Watcher`]) is stopped before the store closes.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    watcher: Option<crate::watch::Watcher>,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    let dispatcher = app.spawn_dispatcher();
    let shutdown = shutdown_signal();
    tracing::info!("listening on http://{addr}");
    server::run(listener, router(app.clone()), &app.config().http, shutdown).await;
    drop(watcher);
    // Calls in flight record their outcome before the store closes; one cut off is sent
    // again after the restart.
    dispatcher.stop().await;
    tracing::info!("shutting down: flushing the store");
    app.close();
    Ok(())
}

/// Registers for SIGINT/SIGTERM now and returns a future that ends on either. Registering before
/// "listening on" is logged means a signal sent as soon as the server is reachable ends it
/// gracefully instead of killing it with the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(interrupt) => {},
            () = wait(term) => {},
        }
        tracing::info!("signal received: finishing in-flight requests");
    }
}
