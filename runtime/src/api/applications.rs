//! Application routes (`/v1/applications*`) and the event outbox (`/admin/events`). The route
//! table states who gets past the door; the service checks what depends on the application
//! (the permit type's scope, the role of the current step).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::{AppError, ErrorAnswer};
use super::extract::{Body, Path, Staff};
use super::routes::{Access, Route};
use crate::app::App;
use crate::auth;
use crate::services::applications::{
    ApplicationList, ApplicationView, DataChange, ListParams, NewApplication, SubmitRequest,
    TransitionRequest,
};
use crate::store::applications::EventRecord;

const FRONT: &str = "front_office";
const BACK: &str = "back_office";

pub fn routes() -> Vec<Route> {
    // Every role of the office, its own ones from `pintu.toml` too: the handler checks the
    // step's role and the permit type's scope.
    const EVERY_ROLE: Access = Access::Staff;
    const INTAKE: Access = Access::Roles(&[FRONT, auth::ADMIN]);
    const DATA_ENTRY: Access = Access::Roles(&[FRONT, BACK]);
    vec![
        Route::post("/v1/applications", INTAKE, create).doc::<__path_create>(),
        Route::get("/v1/applications", EVERY_ROLE, list).doc::<__path_list>(),
        Route::get("/v1/applications/{id}", EVERY_ROLE, show).doc::<__path_show>(),
        Route::put("/v1/applications/{id}/data", DATA_ENTRY, change_data)
            .doc::<__path_change_data>(),
        Route::post("/v1/applications/{id}/submit", INTAKE, submit).doc::<__path_submit>(),
        Route::post("/v1/applications/{id}/transitions", EVERY_ROLE, transition)
            .doc::<__path_transition>(),
        Route::get("/admin/events", Access::Roles(&[auth::ADMIN]), events).doc::<__path_events>(),
    ]
}

#[utoipa::path(
    post,
    path = "/v1/applications",
    tag = "applications",
    summary = "Registers an application (validated by the permit type's rules), or stores a draft",
    request_body = NewApplication,
    responses(
        (status = 201, description = "The application: `in_progress` at the first step with its registration number, or a `draft`", body = ApplicationView),
        (status = 403, description = "`forbidden`: the message names the role or permit type missing", body = ErrorAnswer),
        (status = 404, description = "`unknown_permit`: no such permit type", body = ErrorAnswer),
        (status = 422, description = "`invalid_data`: `errors` names every wrong field, nothing is stored; `invalid_body`: a bad value (e.g. `submitted_on` in the future)", body = ErrorAnswer),
        (status = 500, description = "`script_error` or `script_limit`: the rules failed", body = ErrorAnswer),
        (status = 503, description = "`no_release` or `storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn create(
    State(app): State<Arc<App>>,
    Staff(who): Staff,
    Body(req): Body<NewApplication>,
) -> Result<(StatusCode, Json<ApplicationView>), AppError> {
    let created = app.applications().create(&who, req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(
    get,
    path = "/v1/applications/{id}",
    tag = "applications",
    summary = "One application with its history",
    params(("id" = String, Path, description = "The application's id")),
    responses(
        (status = 200, description = "The application", body = ApplicationView),
        (status = 403, description = "`forbidden`: the message names the role or permit type missing", body = ErrorAnswer),
        (status = 404, description = "`not_found`: no such application", body = ErrorAnswer),
        (status = 503, description = "`no_release` or `storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn show(
    State(app): State<Arc<App>>,
    Staff(who): Staff,
    Path(id): Path<String>,
) -> Result<Json<ApplicationView>, AppError> {
    Ok(Json(app.applications().get(&who, &id).await?))
}

#[utoipa::path(
    get,
    path = "/v1/applications",
    tag = "applications",
    summary = "Applications of the permit types in the caller's scope, newest first",
    params(ListParams),
    responses(
        (status = 200, description = "A page; `next_cursor` is the `cursor` of the next (`null` at the end)", body = ApplicationList),
        (status = 400, description = "`malformed_request`: a bad filter, `limit` or `cursor`", body = ErrorAnswer),
        (status = 503, description = "`no_release` or `storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn list(
    State(app): State<Arc<App>>,
    Staff(who): Staff,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ApplicationList>, AppError> {
    let Query(params) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    Ok(Json(app.applications().list(&who, params).await?))
}

#[utoipa::path(
    put,
    path = "/v1/applications/{id}/data",
    tag = "applications",
    summary = "Replaces the data (and applicant) of a draft or of an application in progress",
    params(("id" = String, Path, description = "The application's id")),
    request_body = DataChange,
    responses(
        (status = 200, description = "The application as changed", body = ApplicationView),
        (status = 403, description = "`forbidden`: the message names the role or permit type missing", body = ErrorAnswer),
        (status = 404, description = "`not_found`: no such application", body = ErrorAnswer),
        (status = 409, description = "`conflict`: a stale `version`, or the application has ended", body = ErrorAnswer),
        (status = 422, description = "`invalid_data`: an application in progress is validated again", body = ErrorAnswer),
        (status = 500, description = "`script_error` or `script_limit`: the rules failed", body = ErrorAnswer),
        (status = 503, description = "`no_release` or `storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn change_data(
    State(app): State<Arc<App>>,
    Staff(who): Staff,
    Path(id): Path<String>,
    Body(req): Body<DataChange>,
) -> Result<Json<ApplicationView>, AppError> {
    Ok(Json(app.applications().change_data(&who, &id, req).await?))
}

#[utoipa::path(
    post,
    path = "/v1/applications/{id}/submit",
    tag = "applications",
    summary = "Submits a draft: validates it fully, assigns its registration number, starts the flow",
    params(("id" = String, Path, description = "The application's id")),
    request_body = SubmitRequest,
    responses(
        (status = 200, description = "The application, `in_progress` at the first step", body = ApplicationView),
        (status = 403, description = "`forbidden`: the message names the role or permit type missing", body = ErrorAnswer),
        (status = 404, description = "`not_found`: no such application", body = ErrorAnswer),
        (status = 409, description = "`conflict`: a stale `version`, or not a draft", body = ErrorAnswer),
        (status = 422, description = "`invalid_data`: the draft is incomplete (`errors`)", body = ErrorAnswer),
        (status = 500, description = "`script_error` or `script_limit`: the rules failed", body = ErrorAnswer),
        (status = 503, description = "`no_release` or `storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn submit(
    State(app): State<Arc<App>>,
    Staff(who): Staff,
    Path(id): Path<String>,
    Body(req): Body<SubmitRequest>,
) -> Result<Json<ApplicationView>, AppError> {
    Ok(Json(app.applications().submit(&who, &id, req).await?))
}

#[utoipa::path(
    post,
    path = "/v1/applications/{id}/transitions",
    tag = "applications",
    summary = "Advances, returns or rejects an application at its current step",
    params(("id" = String, Path, description = "The application's id")),
    request_body = TransitionRequest,
    responses(
        (status = 200, description = "The application after the transition", body = ApplicationView),
        (status = 403, description = "`forbidden`: the message names the role or permit type missing", body = ErrorAnswer),
        (status = 404, description = "`not_found`: no such application", body = ErrorAnswer),
        (status = 409, description = "`conflict`: a stale `version`; `step_removed`: the current step is no longer in the flow", body = ErrorAnswer),
        (status = 422, description = "`guard_refused`: the step's guard refused (its message); `invalid_transition`: e.g. `return` to a later step", body = ErrorAnswer),
        (status = 500, description = "`script_error` or `script_limit`: the rules failed", body = ErrorAnswer),
        (status = 503, description = "`no_release` or `storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn transition(
    State(app): State<Arc<App>>,
    Staff(who): Staff,
    Path(id): Path<String>,
    Body(req): Body<TransitionRequest>,
) -> Result<Json<ApplicationView>, AppError> {
    Ok(Json(app.applications().transition(&who, &id, req).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Events with a larger sequence number than this (default 0: from the first).
    after: Option<u64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
}

/// `GET /admin/events`.
#[derive(Serialize, utoipa::ToSchema)]
struct EventsAnswer {
    events: Vec<EventRecord>,
    /// The `after` of the next call: the last `seq` of this page (or the `after` given).
    next: u64,
}

const DEFAULT_EVENTS: usize = 100;
const MAX_EVENTS: usize = 1000;

#[utoipa::path(
    get,
    path = "/admin/events",
    tag = "admin",
    summary = "The event outbox: every state change of an application, in `seq` order without gaps",
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of events; `next` is the `after` of the next call", body = EventsAnswer),
        (status = 400, description = "`malformed_request`: a bad `after` or `limit`", body = ErrorAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn events(
    State(app): State<Arc<App>>,
    Staff(_admin): Staff,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventsAnswer>, AppError> {
    let Query(q) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let limit = match q.limit {
        None => DEFAULT_EVENTS,
        Some(n) if (1..=MAX_EVENTS).contains(&n) => n,
        Some(n) => {
            return Err(AppError::BadRequest(format!(
                "`limit` must be between 1 and {MAX_EVENTS}, not {n}"
            )))
        }
    };
    let (events, next) = app
        .applications()
        .events(q.after.unwrap_or(0), limit)
        .await?;
    Ok(Json(EventsAnswer { events, next }))
}
