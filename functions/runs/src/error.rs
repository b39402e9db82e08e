//! runs' error enum: the platform's [`ApiError`] (the answers every function shares, their
//! problem+json and their one security log line) and what only runs answers: a plan limit
//! (402) and quotas' refusal of a run, passed on as quotas gave it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use runwarden_platform::Problem;
pub use runwarden_platform::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A plan limit: 402, with the limit's code.
    #[error("{detail}")]
    QuotaExceeded { code: &'static str, detail: String },
    /// Too many open event streams for a media token or a run: 429 `too_many_streams`, with
    /// `Retry-After`.
    #[error("{detail}")]
    TooManyStreams { detail: String, retry_after: u64 },
    /// Quotas refused a run (429 or 402): its problem, passed on as is.
    #[error("refused by quotas")]
    Refused {
        status: StatusCode,
        problem: serde_json::Value,
    },
}

runwarden_platform::api_error_from!(
    RunsError: sqlx::Error,
    anyhow::Error,
    runwarden_tenancy::TenancyError,
    runwarden_tenancy::access::AccessError,
);

pub type RunsResult<T> = Result<T, RunsError>;

impl RunsError {
    /// 400 with a stable code and a detail safe to show.
    pub fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Api(ApiError::invalid(code, detail))
    }

    /// 409 with a stable code and a detail safe to show.
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Api(ApiError::conflict(code, detail))
    }

    /// 404: no such resource (or one the caller may not know of).
    pub fn not_found() -> Self {
        Self::Api(ApiError::NotFound)
    }

    /// 401: no, a bad or an expired credential.
    pub fn unauthenticated() -> Self {
        Self::Api(ApiError::Unauthenticated)
    }

    /// 503: a dependency (the database, quotas) cannot answer now.
    pub fn unavailable() -> Self {
        Self::Api(ApiError::Unavailable)
    }

    /// Whether this is a plain 404.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Api(ApiError::NotFound | ApiError::TenancyNotFound)
        )
    }
}

impl IntoResponse for RunsError {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::Refused { status, problem } => refusal_response(status, &problem),
            Self::TooManyStreams {
                detail,
                retry_after,
            } => Problem::new(StatusCode::TOO_MANY_REQUESTS, "too_many_streams")
                .detail(detail)
                .retry_after(retry_after)
                .into_response(),
            Self::QuotaExceeded { code, detail } => {
                Problem::new(StatusCode::PAYMENT_REQUIRED, code)
                    .detail(detail)
                    .into_response()
            }
        }
    }
}

/// Quotas' refusal as runs answers it: the same status, body and `Retry-After`.
fn refusal_response(status: StatusCode, problem: &serde_json::Value) -> Response {
    let mut response = (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
        problem.to_string(),
    )
        .into_response();
    if let Some(secs) = problem
        .get("retry_after")
        .and_then(serde_json::Value::as_u64)
        && let Ok(value) = axum::http::HeaderValue::from_str(&secs.to_string())
    {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, value);
    }
    response
}
