//! Request extractors whose failures speak [`AppError`], so that every rejection answers the
//! JSON error shape rather than axum's plain text.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use std::sync::Arc;

use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::AppError;
use super::routes::Access;
use crate::app::App;
use crate::auth::{self, Principal, Resolved};

/// JSON body; malformed JSON, a wrong content type, an oversized, too deeply nested or too slow
/// body, or a wrong shape each get their own 4xx.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<App>> for Body<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(AppError::UnsupportedMediaType(
                "expected `Content-Type: application/json`".into(),
            ));
        }
        let bytes = Bytes::from_request(req, app)
            .await
            .map_err(|r| bytes_rejection(r, app.config().limits.max_body_bytes))?;
        // Depth before parsing: serde_json recurses once per level and stops at its own limit
        // with a parser error that does not say what the limit is.
        let limit = app.config().limits.max_json_depth;
        if json_depth_exceeds(&bytes, limit) {
            return Err(AppError::BodyTooDeep(limit));
        }
        // Syntax first (400), then shape (422): `[1, 2]` is valid JSON of the wrong shape.
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            AppError::BadRequest(format!("Failed to parse the request body as JSON: {e}"))
        })?;
        // The path names the field whose value has the wrong type (serde alone does not).
        serde_path_to_error::deserialize(value)
            .map(Self)
            .map_err(|e| {
                let path = e.path().to_string();
                AppError::InvalidBody(if path == "." {
                    format!("request body: {}", e.inner())
                } else {
                    format!("request body: `{path}`: {}", e.inner())
                })
            })
    }
}

/// `application/json` or any `application/*+json`, with or without parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

pub(super) fn bytes_rejection(r: BytesRejection, limit: usize) -> AppError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return AppError::BodyTooLarge(limit);
    }
    // The body timeout surfaces as an error somewhere in the body's error chain.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&r);
    while let Some(e) = source {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return AppError::BodyTimeout;
        }
        source = e.source();
    }
    AppError::BadRequest(r.body_text())
}

/// Whether arrays and objects in `json` nest deeper than `limit`. Brackets inside strings do not
/// count; malformed input is left for the parser to name.
fn json_depth_exceeds(json: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A path parameter; one that does not decode (e.g. `%ff`) is a 400 in the JSON error shape.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(AppError::BadRequest(rejection.body_text())),
        }
    }
}

/// The caller of a request: any valid token of an active user or a role token (401
/// `unauthenticated` without one, `invalid_token` for an unknown, revoked or deactivated one).
/// The route table has already checked its row ([`require`]); handlers check
/// what depends on the request (a step's role, the permit type's scope) themselves.
pub struct Staff(pub Principal);

impl FromRequestParts<Arc<App>> for Staff {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        // Resolved once per request, by the route table's check.
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(Self(principal.clone()));
        }
        authenticate(&parts.headers, app).await.map(Self)
    }
}

/// A caller holding the `admin` role (a role token or a user with that role).
pub struct Admin(pub Principal);

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let Staff(principal) = Staff::from_request_parts(parts, app).await?;
        if !principal.has_role(auth::ADMIN) {
            return Err(AppError::Forbidden(missing_roles(&[auth::ADMIN])));
        }
        Ok(Self(principal))
    }
}

/// The caller named by the `Authorization: Bearer <token>` header, as the store says now.
async fn authenticate(headers: &HeaderMap, app: &App) -> Result<Principal, AppError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .ok_or(AppError::Unauthenticated)?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(AppError::Unauthenticated)?;
    match app.tokens().authenticate(token).await? {
        Resolved::Active(principal) => Ok(principal),
        Resolved::Unknown => Err(AppError::BadToken),
        Resolved::Deactivated { user } => Err(AppError::Deactivated(user)),
    }
}

/// The route table's check of a `Staff` or `Roles(allowed)` row, run before the route's handler
/// (and before its body is read): a valid token, holding one of `allowed` for a `Roles` row. The
/// principal is left in the request's extensions for [`Staff`] and [`Admin`].
pub(super) async fn require(
    app: Arc<App>,
    access: Access,
    mut req: Request,
    next: Next,
) -> Response {
    let principal = match authenticate(req.headers(), &app).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Access::Roles(allowed) = access {
        if !principal.has_any_role(allowed) {
            return AppError::Forbidden(missing_roles(allowed)).into_response();
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// ``role `admin` required``, or ``one of the roles `front_office`, `admin` required``.
fn missing_roles(allowed: &[&str]) -> String {
    match allowed {
        [one] => format!("role `{one}` required"),
        many => format!(
            "one of the roles {} required",
            many.iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::{json_depth_exceeds, missing_roles};

    #[test]
    fn a_refusal_names_the_roles_that_would_pass() {
        assert_eq!(missing_roles(&["admin"]), "role `admin` required");
        assert_eq!(
            missing_roles(&["front_office", "admin"]),
            "one of the roles `front_office`, `admin` required"
        );
    }

    #[test]
    fn depth_counts_containers_not_brackets_in_strings() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(!json_depth_exceeds(nested(32).as_bytes(), 32));
        assert!(json_depth_exceeds(nested(33).as_bytes(), 32));
        let quoted = format!(r#"{{"a": "{}\" [[[", "b": [1]}}"#, "[".repeat(100));
        assert!(!json_depth_exceeds(quoted.as_bytes(), 2));
        assert!(json_depth_exceeds(br#"{"a": {"b": [1]}}"#, 2));
    }
}
