//! audit's errors and how each answers. 4xx carry a safe detail and a stable code; internal
//! causes are logged once, here, and never sent.

use axum::response::{IntoResponse, Response};
use runwarden_platform::Problem;
use runwarden_tenancy::TenancyError;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{detail}")]
    Invalid { code: &'static str, detail: String },
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("unavailable")]
    Unavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type AuditResult<T> = Result<T, AuditError>;

impl AuditError {
    pub fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            detail: detail.into(),
        }
    }
}

impl From<sqlx::Error> for AuditError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Self::Unavailable
            }
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<runwarden_tenancy::access::AccessError> for AuditError {
    fn from(e: runwarden_tenancy::access::AccessError) -> Self {
        use runwarden_tenancy::access::AccessError;
        match e {
            AccessError::Unauthenticated => Self::Unauthenticated,
            AccessError::NotFound => Self::NotFound,
            AccessError::Database(e) => e.into(),
        }
    }
}

impl From<TenancyError> for AuditError {
    fn from(e: TenancyError) -> Self {
        match e {
            TenancyError::NotFound => Self::NotFound,
            TenancyError::Forbidden { .. } => Self::Forbidden(e.to_string()),
            TenancyError::UnknownRole => Self::Internal(anyhow::anyhow!("unknown role stored")),
        }
    }
}

impl From<runwarden_tokens::TokenError> for AuditError {
    fn from(_: runwarden_tokens::TokenError) -> Self {
        Self::Unauthenticated
    }
}

impl IntoResponse for AuditError {
    fn into_response(self) -> Response {
        let problem = match self {
            Self::Invalid { code, detail } => Problem::bad_request(code, detail),
            Self::Unauthenticated => Problem::unauthorized(),
            Self::Forbidden(detail) => Problem::forbidden(detail),
            Self::NotFound => Problem::not_found(),
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
