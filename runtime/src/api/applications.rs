//! Application routes (`/v1/applications*`) and the event outbox (`/admin/events`). The route
//! table states who gets past the door; the service checks what depends on the application
//! (the permit type's scope, the role of the current step).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::AppError;
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
    const EVERY_ROLE: Access = Access::Roles(auth::ROLES);
    const INTAKE: Access = Access::Roles(&[FRONT, auth::ADMIN]);
    const DATA_ENTRY: Access = Access::Roles(&[FRONT, BACK]);
    vec![
        Route::post("/v1/applications", INTAKE, create),
        Route::get("/v1/applications", EVERY_ROLE, list),
        Route::get("/v1/applications/{id}", EVERY_ROLE, show),
        Route::put("/v1/applications/{id}/data", DATA_ENTRY, change_data),
        Route::post("/v1/applications/{id}/submit", INTAKE, submit),
        Route::post("/v1/applications/{id}/transitions", EVERY_ROLE, transition),
        Route::get("/admin/events", Access::Roles(&[auth::ADMIN]), events),
    ]
}

async fn create(
    State(app): State<Arc<App>>,
    Staff(who): Staff,
    Body(req): Body<NewApplication>,
) -> Result<(StatusCode, Json<ApplicationView>), AppError> {
    let created = app.applications().create(&who, req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn show(
    State(app): State<Arc<App>>,
    Staff(who): Staff,
    Path(id): Path<String>,
) -> Result<Json<ApplicationView>, AppError> {
    Ok(Json(app.applications().get(&who, &id).await?))
}

async fn list(
    State(app): State<Arc<App>>,
    Staff(who): Staff,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ApplicationList>, AppError> {
    let Query(params) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    Ok(Json(app.applications().list(&who, params).await?))
}

async fn change_data(
    State(app): State<Arc<App>>,
    Staff(who): Staff,
    Path(id): Path<String>,
    Body(req): Body<DataChange>,
) -> Result<Json<ApplicationView>, AppError> {
    Ok(Json(app.applications().change_data(&who, &id, req).await?))
}

async fn submit(
    State(app): State<Arc<App>>,
    Staff(who): Staff,
    Path(id): Path<String>,
    Body(req): Body<SubmitRequest>,
) -> Result<Json<ApplicationView>, AppError> {
    Ok(Json(app.applications().submit(&who, &id, req).await?))
}

async fn transition(
    State(app): State<Arc<App>>,
    Staff(who): Staff,
    Path(id): Path<String>,
    Body(req): Body<TransitionRequest>,
) -> Result<Json<ApplicationView>, AppError> {
    Ok(Json(app.applications().transition(&who, &id, req).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Events with a larger sequence number than this (default 0: from the first).
    after: Option<u64>,
    limit: Option<usize>,
}

/// `GET /admin/events`.
#[derive(Serialize)]
struct EventsAnswer {
    events: Vec<EventRecord>,
    /// The `after` of the next call: the last `seq` of this page (or the `after` given).
    next: u64,
}

const DEFAULT_EVENTS: usize = 100;
const MAX_EVENTS: usize = 1000;

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
