//! User routes (`/admin/users*`): staff accounts with their roles and permit types, and their
//! tokens. Admin only, like every `/admin/` route; every change is audited with its actor.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{AppError, ErrorAnswer};
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
        Route::post("/admin/users", ADMIN, create).doc::<__path_create>(),
        Route::get("/admin/users", ADMIN, list).doc::<__path_list>(),
        Route::get("/admin/users/{username}", ADMIN, show).doc::<__path_show>(),
        Route::patch("/admin/users/{username}", ADMIN, update).doc::<__path_update>(),
        Route::post("/admin/users/{username}/tokens", ADMIN, create_token)
            .doc::<__path_create_token>(),
        Route::get("/admin/users/{username}/tokens", ADMIN, tokens).doc::<__path_tokens>(),
    ]
}

/// `GET /admin/users`.
#[derive(Serialize, utoipa::ToSchema)]
struct UsersAnswer {
    users: Vec<UserRecord>,
}

/// `POST /admin/users/{username}/tokens`: the secret, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = UserTokenAnswer)]
struct NewTokenAnswer {
    id: String,
    token: String,
    user: String,
    label: String,
}

/// One token of `GET /admin/users/{username}/tokens`: never the secret (not kept) nor its hash.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = UserTokenRow)]
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

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = UserTokensAnswer)]
struct TokensAnswer {
    user: String,
    tokens: Vec<TokenRow>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = NewUserToken)]
#[serde(deny_unknown_fields)]
struct NewToken {
    /// What the token is for (shown in lists and the audit log).
    #[serde(default)]
    label: String,
}

#[utoipa::path(
    post,
    path = "/admin/users",
    tag = "users",
    summary = "Creates a user with roles and permit types",
    request_body = NewUser,
    responses(
        (status = 201, description = "The user", body = UserRecord),
        (status = 409, description = "`conflict`: the username exists", body = ErrorAnswer),
        (status = 422, description = "`invalid_body`: a bad field (the message names it), or a body of the wrong shape", body = ErrorAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn create(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(req): Body<NewUser>,
) -> Result<(StatusCode, Json<UserRecord>), AppError> {
    let user = app.users().create(req, Actor::from(&admin)).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(
    get,
    path = "/admin/users",
    tag = "users",
    summary = "Every user",
    responses(
        (status = 200, description = "The users", body = UsersAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn list(State(app): State<Arc<App>>, _: Admin) -> Result<Json<UsersAnswer>, AppError> {
    Ok(Json(UsersAnswer {
        users: app.users().list().await?,
    }))
}

#[utoipa::path(
    get,
    path = "/admin/users/{username}",
    tag = "users",
    summary = "One user",
    params(("username" = String, Path, description = "The user's username")),
    responses(
        (status = 200, description = "The user", body = UserRecord),
        (status = 404, description = "`not_found`: no such user", body = ErrorAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
async fn show(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(username): Path<String>,
) -> Result<Json<UserRecord>, AppError> {
    Ok(Json(app.users().get(username).await?))
}

#[utoipa::path(
    patch,
    path = "/admin/users/{username}",
    tag = "users",
    summary = "Changes a user's name, NIP, roles, permit types or `active`; only the fields sent",
    params(("username" = String, Path, description = "The user's username")),
    request_body = UserChange,
    responses(
        (status = 200, description = "The user as changed; takes effect at the user's next request", body = UserRecord),
        (status = 404, description = "`not_found`: no such user", body = ErrorAnswer),
        (status = 422, description = "`invalid_body`: a bad field (the message names it), or a body of the wrong shape", body = ErrorAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
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

#[utoipa::path(
    post,
    path = "/admin/users/{username}/tokens",
    tag = "users",
    summary = "Creates a token for a user; its secret is shown this once",
    params(("username" = String, Path, description = "The user's username")),
    request_body = NewToken,
    responses(
        (status = 201, description = "The token", body = NewTokenAnswer),
        (status = 404, description = "`not_found`: no such user", body = ErrorAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
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

#[utoipa::path(
    get,
    path = "/admin/users/{username}/tokens",
    tag = "users",
    summary = "A user's tokens, without secrets",
    params(("username" = String, Path, description = "The user's username")),
    responses(
        (status = 200, description = "The tokens", body = TokensAnswer),
        (status = 404, description = "`not_found`: no such user", body = ErrorAnswer),
        (status = 503, description = "`storage_unavailable`", body = ErrorAnswer),
    ),
)]
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
