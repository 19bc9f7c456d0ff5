//! Request extractors whose failures speak [`AppError`].

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use std::sync::Arc;

use super::error::AppError;
use crate::app::App;
use crate::auth;
use crate::store::records::TokenRecord;

/// JSON body; malformed JSON, a wrong content type, an oversized body or a wrong shape each get
/// their own 4xx.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<App>> for Body<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        // Syntax first (400), then shape (422): `[1, 2]` is valid JSON of the wrong shape.
        let value = match axum::Json::<serde_json::Value>::from_request(req, app).await {
            Ok(axum::Json(v)) => v,
            Err(rejection) => {
                return Err(json_rejection(rejection, app.config.limits.max_body_bytes))
            }
        };
        serde_json::from_value(value)
            .map(Self)
            .map_err(|e| AppError::InvalidBody(format!("request body: {e}")))
    }
}

fn json_rejection(r: JsonRejection, limit: usize) -> AppError {
    let text = r.body_text();
    match r.status() {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            AppError::UnsupportedMediaType("expected `Content-Type: application/json`".into())
        }
        StatusCode::PAYLOAD_TOO_LARGE => AppError::BodyTooLarge(limit),
        StatusCode::UNPROCESSABLE_ENTITY => AppError::InvalidBody(text),
        _ => AppError::BadRequest(text),
    }
}

/// A request carrying a valid token with the `admin` role.
pub struct Admin(pub TokenRecord);

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(AppError::Unauthenticated)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(AppError::Unauthenticated)?;
        let record = auth::lookup(&app.store, token)?.ok_or(AppError::BadToken)?;
        if record.role != auth::ADMIN {
            return Err(AppError::Forbidden(auth::ADMIN));
        }
        Ok(Self(record))
    }
}
