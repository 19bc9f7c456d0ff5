//! User routes (`/admin/users*`): staff accounts with their roles and permit types, and their
//! tokens. Admin only, like every `/admin/` route; every change is audited with its actor.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::AppError;
use super::extract::{Admin, Body, Path};
use super::routes::{Access, Route};
use crate::app::App;
use crate::auth;
use crate::auth::users::{NewUser, UserChange};
use crate::services::recorder::Actor;
use crate::store::records::{TokenRecord, UserRecord};

pub fn routes() -> Vec<Route> {
    const ADMIN: Access = Access::Roles(&[auth::ADMIN]);
    vec![
        Route::post("/admin/users", ADMIN, create),
        Route::get("/admin/users", ADMIN, list),
        Route::get("/admin/users/{username}", ADMIN, show),
        Route::patch("/admin/users/{username}", ADMIN, update),
        Route::post("/admin/users/{username}/tokens", ADMIN, create_token),
        Route::get("/admin/users/{username}/tokens", ADMIN, tokens),
    ]
}

/// `GET /admin/users`.
#[derive(Serialize)]
struct UsersAnswer {
    users: Vec<UserRecord>,
}

/// `POST /admin/users/{username}/tokens`: the secret, shown this once.
#[derive(Serialize)]
struct NewTokenAnswer {
    id: String,
    token: String,
    user: String,
    label: String,
}

/// One token of `GET /admin/users/{username}/tokens`: never the secret (not kept) nor its hash.
#[derive(Serialize)]
struct TokenRow {
    id: String,
    label: String,
    created_at: DateTime<Utc>,
}

impl From<TokenRecord> for TokenRow {
    fn from(t: TokenRecord) -> Self {
        Self {
            id: t.id,
            label: t.label,
            created_at: t.created_at,
        }
    }
}

#[derive(Serialize)]
struct TokensAnswer {
    user: String,
    tokens: Vec<TokenRow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    #[serde(default)]
    label: String,
}

async fn create(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(req): Body<NewUser>,
) -> Result<(StatusCode, Json<UserRecord>), AppError> {
    let user = app.users().create(req, Actor::from(&admin)).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

async fn list(State(app): State<Arc<App>>, _: Admin) -> Result<Json<UsersAnswer>, AppError> {
    Ok(Json(UsersAnswer {
        users: app.users().list().await?,
    }))
}

async fn show(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(username): Path<String>,
) -> Result<Json<UserRecord>, AppError> {
    Ok(Json(app.users().get(username).await?))
}

async fn update(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Path(username): Path<String>,
    Body(change): Body<UserChange>,
) -> Result<Json<UserRecord>, AppError> {
    Ok(Json(
        app.users()
            .update(username, change, Actor::from(&admin))
            .await?,
    ))
}

async fn create_token(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Path(username): Path<String>,
    Body(req): Body<NewToken>,
) -> Result<(StatusCode, Json<NewTokenAnswer>), AppError> {
    let (token, record) = app
        .users()
        .create_token(username.clone(), req.label, Actor::from(&admin))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewTokenAnswer {
            id: record.id,
            token,
            user: username,
            label: record.label,
        }),
    ))
}

async fn tokens(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(username): Path<String>,
) -> Result<Json<TokensAnswer>, AppError> {
    let tokens = app.users().tokens(username.clone()).await?;
    Ok(Json(TokensAnswer {
        user: username,
        tokens: tokens.into_iter().map(TokenRow::from).collect(),
    }))
}
