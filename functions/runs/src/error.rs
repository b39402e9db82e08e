//! runs' one error enum and how each answers (problem+json). 4xx carry a safe detail and a
//! stable code; internal causes are logged once, here, and never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use runwarden_platform::Problem;
use runwarden_tenancy::TenancyError;

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error("{detail}")]
    Invalid { code: &'static str, detail: String },
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// A plan limit: 402, with the limit's code.
    #[error("{detail}")]
    QuotaExceeded { code: &'static str, detail: String },
    /// Quotas refused a run (429 or 402): its problem, passed on as is.
    #[error("refused by quotas")]
    Refused {
        status: StatusCode,
        problem: serde_json::Value,
    },
    #[error("unavailable")]
    Unavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type RunsResult<T> = Result<T, RunsError>;

impl RunsError {
    pub fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            detail: detail.into(),
        }
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            detail: detail.into(),
        }
    }
}

impl From<sqlx::Error> for RunsError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Self::Unavailable
            }
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<TenancyError> for RunsError {
    fn from(e: TenancyError) -> Self {
        match e {
            TenancyError::NotFound => Self::NotFound,
            TenancyError::Forbidden { .. } => Self::Forbidden(e.to_string()),
            TenancyError::UnknownRole => Self::Internal(anyhow::anyhow!("unknown role stored")),
        }
    }
}

impl IntoResponse for RunsError {
    fn into_response(self) -> Response {
        let problem = match self {
            Self::Refused { status, problem } => return refusal_response(status, &problem),
            Self::Unauthenticated => Problem::unauthorized(),
            Self::Invalid { code, detail } => Problem::bad_request(code, detail),
            Self::Forbidden(detail) => Problem::forbidden(detail),
            Self::NotFound => Problem::not_found(),
            Self::Conflict { code, detail } => Problem::conflict(code, detail),
            Self::QuotaExceeded { code, detail } => {
                Problem::new(StatusCode::PAYMENT_REQUIRED, code).detail(detail)
            }
            Self::Unavailable => {
                tracing::warn!("database unavailable");
                Problem::unavailable()
            }
            Self::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                Problem::internal()
            }
        };
        problem.into_response()
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
