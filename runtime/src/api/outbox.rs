//! The outbox's deliveries to connectors: `GET /admin/outbox` and
//! `POST /admin/outbox/{id}/retry` for dead letters. Admin only.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{AppError, ErrorAnswer};
use super::extract::{Admin, Path};
use super::routes::{Access, Route};
use crate::app::App;
use crate::auth;
use crate::services::recorder::{Actor, AuditAction};
use crate::store::deliveries::DeliveryRecord;
use crate::store::records::Listed;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

pub fn routes() -> Vec<Route> {
    const ADMIN: Access = Access::Roles(&[auth::ADMIN]);
    vec![
        Route::get("/admin/outbox", ADMIN, list).doc::<__path_list>(),
        Route::post("/admin/outbox/{id}/retry", ADMIN, retry).doc::<__path_retry>(),
    ]
}

/// `?connector=&state=&limit=&cursor=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct OutboxQuery {
    /// Only deliveries to this connector.
    connector: Option<String>,
    /// `pending`, `delivered` or `dead`.
    state: Option<String>,
    /// At most this many (default 50, at most 1000).
    limit: Option<usize>,
    /// Only deliveries older than this id: the `next_cursor` of the previous page.
    cursor: Option<u64>,
}

/// `GET /admin/outbox`: deliveries newest first.
#[derive(Serialize, utoipa::ToSchema)]
struct OutboxAnswer {
    deliveries: Vec<Listed<DeliveryRecord>>,
    /// The `cursor` of the next page; `null` when this page reached the oldest delivery.
    next_cursor: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/admin/outbox",
    tag = "admin",
    summary = "Deliveries of outbox events to connectors, newest first",
    params(OutboxQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = OutboxAnswer),
        (status = 400, description = "`malformed_request`: a bad `state`, `limit`, `cursor` or unknown query parameter", body = ErrorAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn list(
    State(app): State<Arc<App>>,
    _: Admin,
    q: Result<Query<OutboxQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<OutboxAnswer>, AppError> {
    let Query(q) = q.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let limit = match q.limit {
        None => DEFAULT_LIMIT,
        Some(0) => return Err(AppError::BadRequest("`limit` must be at least 1".into())),
        Some(n) if n > MAX_LIMIT => {
            return Err(AppError::BadRequest(format!(
                "`limit` must be at most {MAX_LIMIT}"
            )))
        }
        Some(n) => n,
    };
    let page = app
        .outbox()
        .list(q.connector, q.state, limit, q.cursor)
        .await?;
    Ok(Json(OutboxAnswer {
        deliveries: page.items,
        next_cursor: page.next_before,
    }))
}

#[utoipa::path(
    post,
    path = "/admin/outbox/{id}/retry",
    tag = "admin",
    summary = "Sends a dead letter again: pending, due now, attempts reset",
    params(("id" = u64, Path, description = "The delivery's id")),
    responses(
        (status = 200, description = "The delivery, pending again", body = DeliveryRecord),
        (status = 404, description = "`not_found`: no such delivery", body = ErrorAnswer),
        (status = 409, description = "`conflict`: the delivery is not dead (pending or delivered)", body = ErrorAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn retry(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(id): Path<u64>,
) -> Result<Json<DeliveryRecord>, AppError> {
    let delivery = app.outbox().retry(id).await?;
    app.recorder()
        .audit(
            &Actor::from(&admin.0),
            AuditAction::RetryDelivery,
            json!({ "delivery": id, "connector": delivery.connector, "seq": delivery.seq }),
        )
        .await?;
    Ok(Json(delivery))
}
