//! Admin routes: releases, reloads, rollback, decision log, audit log, tokens.
//! Every route needs a token with the `admin` role; every change is audited.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value as Json_};

use super::error::AppError;
use super::extract::{Admin, Body, Path};
use super::routes::{Access, Route};
use crate::app::App;
use crate::auth;
use crate::store::{Store, StoreError};

/// Default and largest page of list endpoints.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// Every admin route; each handler takes the [`Admin`] extractor, which is what enforces the
/// access stated here (the end-to-end auth matrix checks that the two agree).
pub fn routes() -> Vec<Route> {
    const ADMIN: Access = Access::Roles(&[auth::ADMIN]);
    vec![
        Route::get("/admin/releases", ADMIN, releases),
        Route::post("/admin/releases/{id}/activate", ADMIN, activate),
        Route::get("/admin/reloads", ADMIN, reloads),
        Route::post("/admin/reload", ADMIN, reload),
        Route::get("/admin/decisions", ADMIN, decisions),
        Route::get("/admin/audit", ADMIN, audit),
        Route::post("/admin/tokens", ADMIN, create_token),
        Route::delete("/admin/tokens/{id}", ADMIN, revoke_token),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    limit: Option<usize>,
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

fn actor(admin: &Admin) -> String {
    format!("token:{}", admin.0.id)
}

/// Runs store work on the blocking pool: a large page or a durable write must not hold an async
/// worker.
async fn blocking<T: Send + 'static, E: Into<AppError> + Send + 'static>(
    app: &Arc<App>,
    work: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
) -> Result<T, AppError> {
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || work(&store))
        .await
        .map_err(|e| AppError::Store(StoreError::Storage(format!("store task failed: {e}"))))?
        .map_err(Into::into)
}

/// Releases (all kept ones: retention bounds them, newest first, at most `limit`) and the
/// activation log, paged with `before=` / `next_before`.
async fn releases(
    State(app): State<Arc<App>>,
    _: Admin,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Json_>, AppError> {
    let p = page(q)?;
    let limit = p.limit()?;
    let active = app.current().map(|r| r.id.clone());
    let (releases, activations) = blocking(&app, move |store| {
        let mut releases = store.releases()?;
        releases.truncate(limit);
        Ok::<_, StoreError>((releases, store.activations(limit, p.before)?))
    })
    .await?;
    Ok(Json(json!({
        "active": active,
        "releases": releases,
        "activations": activations.items,
        "next_before": activations.next_before,
    })))
}

async fn reloads(
    State(app): State<Arc<App>>,
    _: Admin,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Json_>, AppError> {
    let p = page(q)?;
    let limit = p.limit()?;
    let page = blocking(&app, move |store| store.reloads(limit, p.before)).await?;
    Ok(Json(
        json!({ "reloads": page.items, "next_before": page.next_before }),
    ))
}

async fn reload(State(app): State<Arc<App>>, admin: Admin) -> Result<Json<Json_>, AppError> {
    let outcome = app.reload_from_folder(&actor(&admin), true).await?;
    app.audit(
        &actor(&admin),
        "reload",
        json!({ "release": outcome.release, "accepted": outcome.accepted }),
    )
    .await?;
    if !outcome.accepted {
        return Err(AppError::rejected(&outcome));
    }
    Ok(Json(serde_json::to_value(&outcome).unwrap_or(Json_::Null)))
}

async fn activate(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Json_>, AppError> {
    let outcome = app
        .activate_stored(&id, &actor(&admin), "reactivated by an admin", true)
        .await?;
    app.audit(
        &actor(&admin),
        "activate",
        json!({ "release": id, "accepted": outcome.accepted }),
    )
    .await?;
    if !outcome.accepted {
        return Err(AppError::rejected(&outcome));
    }
    Ok(Json(serde_json::to_value(&outcome).unwrap_or(Json_::Null)))
}

async fn decisions(
    State(app): State<Arc<App>>,
    _: Admin,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Json_>, AppError> {
    let p = page(q)?;
    let limit = p.limit()?;
    let page = blocking(&app, move |store| {
        store.decisions(p.permit.as_deref(), limit, p.before)
    })
    .await?;
    Ok(Json(
        json!({ "decisions": page.items, "next_before": page.next_before }),
    ))
}

async fn audit(
    State(app): State<Arc<App>>,
    _: Admin,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Json_>, AppError> {
    let p = page(q)?;
    let limit = p.limit()?;
    let page = blocking(&app, move |store| store.audit(limit, p.before)).await?;
    Ok(Json(
        json!({ "audit": page.items, "next_before": page.next_before }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    role: String,
    #[serde(default)]
    label: String,
}

async fn create_token(
    State(app): State<Arc<App>>,
    admin: Admin,
    Body(req): Body<NewToken>,
) -> Result<Json<Json_>, AppError> {
    let (role, label) = (req.role, req.label);
    let roles = app.config.roles.clone();
    let (token, record) = blocking(&app, move |store| {
        auth::create_token(store, &roles, &role, &label)
    })
    .await?;
    app.audit(
        &actor(&admin),
        "create_token",
        json!({ "id": record.id, "role": record.role, "label": record.label }),
    )
    .await?;
    Ok(Json(
        json!({ "token": token, "id": record.id, "role": record.role }),
    ))
}

/// Revokes a token by its public id: it stops working at the next request.
async fn revoke_token(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let target = id.clone();
    let revoked = blocking(&app, move |store| auth::revoke_token(store, &target)).await?;
    let record = revoked.ok_or(AppError::UnknownToken(id))?;
    app.audit(
        &actor(&admin),
        "revoke_token",
        json!({ "id": record.id, "role": record.role, "label": record.label }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
