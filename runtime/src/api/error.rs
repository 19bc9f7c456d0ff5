//! The one error type of the HTTP surface. Every failure becomes
//! `{"error": {"code": "...", "message": "..."}}`; status codes are chosen here and nowhere else.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;
use crate::config::Language;
use crate::diagnostic::Diagnostic;
use crate::permits::fields::FieldError;
use crate::scripts::ScriptErrorKind;
use crate::services::applications::ApplicationError;
use crate::services::connectors::ConnectorError;
use crate::services::dispatcher::OutboxError;
use crate::services::evaluator::EvalError;
use crate::services::releases::{first_problem, ReleaseError, ReloadOutcome};
use crate::services::users::UserError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request body is larger than the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("request body nests arrays and objects deeper than the limit of {0} levels")]
    BodyTooDeep(usize),
    #[error("request body was not received within the body read timeout")]
    BodyTimeout,
    #[error("{0}")]
    InvalidBody(String),
    #[error("missing `Authorization: Bearer <token>` header")]
    Unauthenticated,
    #[error("token is not valid")]
    BadToken,
    /// The token of a deactivated user: refused like an unknown one, naming why.
    #[error("user `{0}` is deactivated; its tokens are refused until an admin reactivates it")]
    Deactivated(String),
    /// What the caller lacks, e.g. ``role `admin` required`` or ``no access to permit type
    /// `pbg` ``.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("no token with id `{0}`")]
    UnknownToken(String),
    #[error("{}", match language {
        Language::Id => "data tidak valid",
        Language::En => "data is invalid",
    })]
    InvalidData {
        errors: Vec<FieldError>,
        release: String,
        /// The language of the message (the `errors` are already in it).
        language: Language,
    },
    #[error("candidate release {release} was rejected: {summary}")]
    Rejected {
        release: String,
        summary: String,
        diagnostics: Vec<Diagnostic>,
    },
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    User(#[from] UserError),
    /// An application request refused by the applications service (not found, conflict,
    /// guard, step removed, impossible transition, bad value).
    #[error(transparent)]
    Application(ApplicationError),
    /// An outbox request refused (unknown delivery, not a dead letter, bad filter).
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// A connector request that failed in the connector or its actions (unknown connector,
    /// failed call, invalid action, invalid invocation).
    #[error(transparent)]
    Connector(ConnectorError),
    /// A fault of the server itself that no other family names.
    #[error("{0}")]
    Internal(String),
}

impl From<ApplicationError> for AppError {
    fn from(e: ApplicationError) -> Self {
        match e {
            ApplicationError::Invalid {
                errors,
                release,
                language,
            } => Self::InvalidData {
                errors,
                release,
                language,
            },
            ApplicationError::Eval(e) => Self::Eval(e),
            ApplicationError::Store(e) => Self::Store(e),
            other => Self::Application(other),
        }
    }
}

impl From<ConnectorError> for AppError {
    fn from(e: ConnectorError) -> Self {
        match e {
            ConnectorError::Eval(e) => Self::Eval(e),
            ConnectorError::Application(e) => Self::from(e),
            other => Self::Connector(other),
        }
    }
}

impl AppError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "malformed_request"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            Self::BodyTooDeep(_) => (StatusCode::UNPROCESSABLE_ENTITY, "body_too_deep"),
            Self::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            Self::InvalidBody(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Self::BadToken | Self::Deactivated(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::UnknownToken(_) => (StatusCode::NOT_FOUND, "unknown_token"),
            Self::InvalidData { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_data"),
            Self::Rejected { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "release_rejected"),
            Self::Eval(e) => match e {
                EvalError::NoRelease => (StatusCode::SERVICE_UNAVAILABLE, "no_release"),
                EvalError::UnknownPermit(_) => (StatusCode::NOT_FOUND, "unknown_permit"),
                EvalError::NoLevy(_) => (StatusCode::NOT_FOUND, "no_levy"),
                // A rule that fails on valid data is a defect of the rules, not of the request.
                EvalError::Script(s) if s.kind == ScriptErrorKind::Limit => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "script_limit")
                }
                EvalError::Script(_) => (StatusCode::INTERNAL_SERVER_ERROR, "script_error"),
                EvalError::Store(s) if s.is_unavailable() => {
                    (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
                }
                EvalError::Overloaded { .. } => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
                EvalError::Store(_)
                | EvalError::Interrupted
                | EvalError::Crashed(_)
                | EvalError::Encode(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
            Self::Release(ReleaseError::Unknown(_)) => (StatusCode::NOT_FOUND, "unknown_release"),
            // The role named in the request body does not exist.
            Self::Auth(AuthError::UnknownRole(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
            }
            Self::User(UserError::Invalid(_)) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            Self::User(UserError::Exists(_)) => (StatusCode::CONFLICT, "conflict"),
            Self::User(UserError::NotFound(_)) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Store(s)
            | Self::Release(ReleaseError::Store(s))
            | Self::Auth(AuthError::Store(s))
            | Self::User(UserError::Store(s) | UserError::Auth(AuthError::Store(s)))
            | Self::Outbox(OutboxError::Store(s))
                if s.is_unavailable() =>
            {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
            Self::Outbox(OutboxError::NotFound(_)) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Outbox(OutboxError::NotDead(_)) => (StatusCode::CONFLICT, "conflict"),
            Self::Outbox(OutboxError::BadQuery(_)) => {
                (StatusCode::BAD_REQUEST, "malformed_request")
            }
            Self::Release(_)
            | Self::Store(_)
            | Self::Outbox(OutboxError::Store(_))
            | Self::Auth(_)
            | Self::User(_)
            | Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Self::Connector(e) => match e {
                ConnectorError::Unknown(_) => (StatusCode::NOT_FOUND, "unknown_connector"),
                // The connector is an upstream of this request: its failure is a bad gateway.
                ConnectorError::Call(_) | ConnectorError::BadResponse { .. } => {
                    (StatusCode::BAD_GATEWAY, "connector_failed")
                }
                ConnectorError::InvalidAction { .. } => {
                    (StatusCode::BAD_GATEWAY, "connector_action_invalid")
                }
                ConnectorError::BadInvocation(_) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
                }
                // Converted to their own variants by `From`; kept total here.
                ConnectorError::Eval(EvalError::NoRelease) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "no_release")
                }
                ConnectorError::Crashed(..)
                | ConnectorError::KvNotStored { .. }
                | ConnectorError::Eval(_)
                | ConnectorError::Application(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
            Self::Application(e) => match e {
                ApplicationError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                ApplicationError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
                ApplicationError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                ApplicationError::StepRemoved(_) => (StatusCode::CONFLICT, "step_removed"),
                ApplicationError::GuardRefused(_) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "guard_refused")
                }
                ApplicationError::InvalidTransition(_) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "invalid_transition")
                }
                ApplicationError::BadInput(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
                ApplicationError::BadQuery(_) => (StatusCode::BAD_REQUEST, "malformed_request"),
                // Converted to their own variants by `From`; kept total here.
                ApplicationError::Invalid { .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "invalid_data")
                }
                ApplicationError::Eval(_) | ApplicationError::Store(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal")
                }
            },
        }
    }

    pub fn rejected(outcome: ReloadOutcome) -> Self {
        Self::Rejected {
            release: outcome.release().unwrap_or_default().to_owned(),
            summary: first_problem(&outcome.report().diagnostics),
            diagnostics: outcome.into_report().diagnostics,
        }
    }
}

/// `{"error": {"code", "message", ...}}`, plus what the client needs to fix its request.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ErrorAnswer {
    error: ErrorBody,
}

/// One error: `code` is stable (clients branch on it), `message` says what is wrong.
#[derive(Serialize, utoipa::ToSchema)]
struct ErrorBody {
    /// E.g. `invalid_data`, `unknown_permit`, `forbidden`, `conflict`.
    code: &'static str,
    message: String,
    /// `invalid_data`: every field that is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<FieldError>>,
    /// `invalid_data`: the release whose rules judged the data.
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<String>,
    /// `release_rejected`: every problem of the candidate, located.
    #[serde(skip_serializing_if = "Option::is_none")]
    diagnostics: Option<Vec<Diagnostic>>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        // Overload is the server protecting itself, not a fault: a warning, not an error.
        let retry_after = match &self {
            Self::Eval(EvalError::Overloaded {
                retry_after_secs, ..
            }) => {
                tracing::warn!("{code}: {self}");
                Some(*retry_after_secs)
            }
            _ => {
                if status.is_server_error() {
                    tracing::error!("{code}: {self}");
                }
                None
            }
        };
        let message = self.to_string();
        let mut body = ErrorBody {
            code,
            message,
            errors: None,
            release: None,
            diagnostics: None,
        };
        match self {
            Self::InvalidData {
                errors, release, ..
            } => {
                body.errors = Some(errors);
                body.release = Some(release);
            }
            Self::Rejected { diagnostics, .. } => body.diagnostics = Some(diagnostics),
            _ => {}
        }
        let mut response = (status, axum::Json(ErrorAnswer { error: body })).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_crashed_build_is_reported_as_a_crash_not_as_a_storage_error() {
        let crashed = tokio::task::spawn_blocking(|| panic!("a bug in the build"))
            .await
            .unwrap_err();
        let e = AppError::from(ReleaseError::BuildCrashed(crashed));
        assert_eq!(
            e.status_and_code(),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        assert!(
            e.to_string().starts_with("the candidate build crashed"),
            "{e}"
        );
    }

    #[test]
    fn auth_errors_get_their_status_here_like_every_other_family() {
        let status = |e: AuthError| AppError::from(e).status_and_code();
        assert_eq!(
            status(AuthError::UnknownRole(crate::auth::UnknownRole {
                role: "root".into(),
                known: "admin".into(),
            })),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
        );
        assert_eq!(
            status(AuthError::Store(StoreError::Unavailable(
                "disk full".into()
            ))),
            (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
        );
        assert_eq!(
            status(AuthError::Random("no entropy".into())),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
    }
}
