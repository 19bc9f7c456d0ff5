//! Admin routes: releases, reloads, rollback, decision log, audit log, tokens.
//! Every route needs a token with the `admin` role; every change is audited.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{AppError, ErrorAnswer};
use super::extract::{Admin, Body, Path};
use super::routes::{Access, Route};
use crate::app::App;
use crate::auth;
use crate::services::recorder::{Actor, AuditAction};
use crate::services::releases::{ReloadOutcome, Trigger};
use crate::store::records::{
    ActivationRecord, AuditRecord, DecisionRecord, Listed, ReleaseRecord, ReloadRecord,
};

/// Default and largest page of list endpoints.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// Every admin route. The table's row is what lets only admins through (see
/// [`super::routes`]); each handler also takes the [`Admin`] extractor, for its actor and as a
/// second check (the end-to-end auth matrix checks the rows against the running server).
pub fn routes() -> Vec<Route> {
    const ADMIN: Access = Access::Roles(&[auth::ADMIN]);
    vec![
        Route::get("/admin/releases", ADMIN, releases).doc::<__path_releases>(),
        Route::post("/admin/releases/{id}/activate", ADMIN, activate).doc::<__path_activate>(),
        Route::get("/admin/reloads", ADMIN, reloads).doc::<__path_reloads>(),
        Route::post("/admin/reload", ADMIN, reload).doc::<__path_reload>(),
        Route::get("/admin/decisions", ADMIN, decisions).doc::<__path_decisions>(),
        Route::get("/admin/audit", ADMIN, audit).doc::<__path_audit>(),
        Route::post("/admin/tokens", ADMIN, create_token).doc::<__path_create_token>(),
        Route::delete("/admin/tokens/{id}", ADMIN, revoke_token).doc::<__path_revoke_token>(),
    ]
}

/// The query of a list: `?limit=&before=` (and `permit=` for decisions).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct Page {
    /// At most this many (default 50, at most 1000).
    limit: Option<usize>,
    /// Decisions only: those of this permit type.
    permit: Option<String>,
    /// Only records older than this sequence number: pass the last `seq` of a page.
    before: Option<u64>,
}

impl Page {
    fn limit(&self) -> Result<usize, AppError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(0) => Err(AppError::BadRequest("`limit` must be at least 1".into())),
            Some(n) if n > MAX_LIMIT => Err(AppError::BadRequest(format!(
                "`limit` must be at most {MAX_LIMIT}"
            ))),
            Some(n) => Ok(n),
        }
    }
}

fn page(
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Page, AppError> {
    q.map(|Query(p)| p)
        .map_err(|e| AppError::BadRequest(e.body_text()))
}

/// `GET /admin/releases`.
#[derive(Serialize, utoipa::ToSchema)]
struct ReleasesAnswer {
    active: Option<String>,
    releases: Vec<ReleaseRecord>,
    activations: Vec<Listed<ActivationRecord>>,
    next_before: Option<u64>,
}

/// `GET /admin/reloads`.
#[derive(Serialize, utoipa::ToSchema)]
struct ReloadsAnswer {
    reloads: Vec<Listed<ReloadRecord>>,
    next_before: Option<u64>,
}

/// `GET /admin/decisions`.
#[derive(Serialize, utoipa::ToSchema)]
struct DecisionsAnswer {
    decisions: Vec<Listed<DecisionRecord>>,
    next_before: Option<u64>,
}

/// `GET /admin/audit`.
#[derive(Serialize, utoipa::ToSchema)]
struct AuditAnswer {
    audit: Vec<Listed<AuditRecord>>,
    next_before: Option<u64>,
}

/// `POST /admin/tokens`: the secret, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
struct NewTokenAnswer {
    token: String,
    id: String,
    role: String,
}

fn actor(admin: &Admin) -> Actor {
    Actor::from(&admin.0)
}

#[utoipa::path(
    get,
    path = "/admin/releases",
    tag = "admin",
    summary = "Stored releases and the activation log",
    params(Page),
    responses(
        (status = 200, description = "The active release, the stored ones (newest first) and a page of activations", body = ReleasesAnswer),
        (status = 400, description = "`malformed_request`: a bad `limit`, `before` or unknown query parameter", body = ErrorAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
/// Releases (all kept ones: retention bounds them, newest first, at most `limit`) and the
/// activation log, paged with `before=` / `next_before`.
async fn releases(
    State(app): State<Arc<App>>,
    _: Admin,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ReleasesAnswer>, AppError> {
    let p = page(q)?;
    let limit = p.limit()?;
    let active = app.releases().current().map(|r| r.id.clone());
    let (releases, activations) = app.releases().list(limit, p.before).await?;
    Ok(Json(ReleasesAnswer {
        active,
        releases,
        activations: activations.items,
        next_before: activations.next_before,
    }))
}

#[utoipa::path(
    get,
    path = "/admin/reloads",
    tag = "admin",
    summary = "The reload log, newest first",
    params(Page),
    responses(
        (status = 200, description = "A page of reloads", body = ReloadsAnswer),
        (status = 400, description = "`malformed_request`: a bad `limit`, `before` or unknown query parameter", body = ErrorAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn reloads(
    State(app): State<Arc<App>>,
    _: Admin,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ReloadsAnswer>, AppError> {
    let p = page(q)?;
    let limit = p.limit()?;
    let page = app.releases().reloads(limit, p.before).await?;
    Ok(Json(ReloadsAnswer {
        reloads: page.items,
        next_before: page.next_before,
    }))
}

#[utoipa::path(
    post,
    path = "/admin/reload",
    tag = "admin",
    summary = "Builds, tests and activates the rules folder now",
    responses(
        (status = 200, description = "Accepted (or unchanged)", body = super::openapi::ReloadAnswer),
        (status = 422, description = "`release_rejected`: `diagnostics` locates every problem; what served before still serves", body = ErrorAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn reload(
    State(app): State<Arc<App>>,
    admin: Admin,
) -> Result<Json<ReloadOutcome>, AppError> {
    let outcome = app
        .releases()
        .reload_from_folder(Trigger::Admin(actor(&admin)), true)
        .await?;
    app.recorder()
        .audit(
            &actor(&admin),
            AuditAction::Reload,
            json!({ "release": outcome.release().unwrap_or_default(), "accepted": outcome.accepted() }),
        )
        .await?;
    if !outcome.accepted() {
        return Err(AppError::rejected(outcome));
    }
    Ok(Json(outcome))
}

#[utoipa::path(
    post,
    path = "/admin/releases/{id}/activate",
    tag = "admin",
    summary = "Reactivates a stored release (a rollback); kept while the folder is unchanged",
    params(("id" = String, Path, description = "The release id (16 hex digits)")),
    responses(
        (status = 200, description = "Activated", body = super::openapi::ReloadAnswer),
        (status = 404, description = "`unknown_release`: no such stored release", body = ErrorAnswer),
        (status = 422, description = "`release_rejected`: `diagnostics` locates every problem; what served before still serves", body = ErrorAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn activate(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<ReloadOutcome>, AppError> {
    let outcome = app
        .releases()
        .activate_stored(
            &id,
            Trigger::Admin(actor(&admin)),
            "reactivated by an admin",
            true,
        )
        .await?;
    app.recorder()
        .audit(
            &actor(&admin),
            AuditAction::Activate,
            json!({ "release": id, "accepted": outcome.accepted() }),
        )
        .await?;
    if !outcome.accepted() {
        return Err(AppError::rejected(outcome));
    }
    Ok(Json(outcome))
}

#[utoipa::path(
    get,
    path = "/admin/decisions",
    tag = "admin",
    summary = "The decision log: every evaluation with its input and output, newest first",
    params(Page),
    responses(
        (status = 200, description = "A page of decisions", body = DecisionsAnswer),
        (status = 400, description = "`malformed_request`: a bad `limit`, `before` or unknown query parameter", body = ErrorAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn decisions(
    State(app): State<Arc<App>>,
    _: Admin,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DecisionsAnswer>, AppError> {
    let p = page(q)?;
    let limit = p.limit()?;
    let page = app.recorder().decisions(p.permit, limit, p.before).await?;
    Ok(Json(DecisionsAnswer {
        decisions: page.items,
        next_before: page.next_before,
    }))
}

#[utoipa::path(
    get,
    path = "/admin/audit",
    tag = "admin",
    summary = "The audit log: every admin change, newest first",
    params(Page),
    responses(
        (status = 200, description = "A page of audit entries", body = AuditAnswer),
        (status = 400, description = "`malformed_request`: a bad `limit`, `before` or unknown query parameter", body = ErrorAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn audit(
    State(app): State<Arc<App>>,
    _: Admin,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditAnswer>, AppError> {
    let p = page(q)?;
    let limit = p.limit()?;
    let page = app.recorder().audit_log(limit, p.before).await?;
    Ok(Json(AuditAnswer {
        audit: page.items,
        next_before: page.next_before,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewToken {
    /// One of the office's roles (`roles` in `pintu.toml`).
    role: String,
    /// What the token is for (shown in lists and the audit log).
    #[serde(default)]
    label: String,
}

#[utoipa::path(
    post,
    path = "/admin/tokens",
    tag = "admin",
    summary = "Creates a role token; its secret is shown this once",
    request_body = NewToken,
    responses(
        (status = 200, description = "The token", body = NewTokenAnswer),
        (status = 422, description = "`invalid_body`: an unknown role, or a body of the wrong shape", body = ErrorAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn create_token(
    State(app): State<Arc<App>>,
    admin: Admin,
    Body(req): Body<NewToken>,
) -> Result<Json<NewTokenAnswer>, AppError> {
    let (token, record) = app.tokens().create(req.role, req.label).await?;
    app.recorder()
        .audit(
            &actor(&admin),
            AuditAction::CreateToken,
            json!({ "id": record.id, "role": record.role, "label": record.label }),
        )
        .await?;
    Ok(Json(NewTokenAnswer {
        token,
        id: record.id,
        role: record.role,
    }))
}

#[utoipa::path(
    delete,
    path = "/admin/tokens/{id}",
    tag = "admin",
    summary = "Revokes a token: it stops working at the next request",
    params(("id" = String, Path, description = "The token's public id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`unknown_token`: no token with this id", body = ErrorAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
/// Revokes a token by its public id: it stops working at the next request.
async fn revoke_token(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let record = app
        .tokens()
        .revoke(&id)
        .await?
        .ok_or(AppError::UnknownToken(id))?;
    app.recorder()
        .audit(
            &actor(&admin),
            AuditAction::RevokeToken,
            match &record.user {
                Some(user) => json!({ "id": record.id, "user": user, "label": record.label }),
                None => json!({ "id": record.id, "role": record.role, "label": record.label }),
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
