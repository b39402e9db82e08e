//! quotas' one error enum and how each answers (problem+json). 4xx carry a safe detail and a
//! stable code; internal causes are logged once, here, and never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use runwarden_platform::Problem;
use runwarden_tenancy::TenancyError;

use crate::rules::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
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
    /// A run refused admission: 429 for parallel runs (retry later), 402 for the month.
    #[error("refused: {}", .0.code())]
    Refused(Refusal),
    #[error("unavailable")]
    Unavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type QuotaResult<T> = Result<T, QuotaError>;

impl QuotaError {
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

    /// Serialization failures and deadlocks: the whole transaction may be retried.
    pub fn is_retryable(e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c == "40001" || c == "40P01"))
    }
}

impl From<sqlx::Error> for QuotaError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Self::Unavailable
            }
            ref other if Self::is_retryable(other) => Self::Unavailable,
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<runwarden_tenancy::access::AccessError> for QuotaError {
    fn from(e: runwarden_tenancy::access::AccessError) -> Self {
        use runwarden_tenancy::access::AccessError;
        match e {
            AccessError::Unauthenticated => Self::Unauthenticated,
            AccessError::NotFound => Self::NotFound,
            AccessError::Database(e) => e.into(),
        }
    }
}

impl From<TenancyError> for QuotaError {
    fn from(e: TenancyError) -> Self {
        match e {
            TenancyError::NotFound => Self::NotFound,
            TenancyError::Forbidden { .. } => Self::Forbidden(e.to_string()),
            TenancyError::UnknownRole => Self::Internal(anyhow::anyhow!("unknown role stored")),
        }
    }
}

impl From<runwarden_tokens::TokenError> for QuotaError {
    fn from(_: runwarden_tokens::TokenError) -> Self {
        Self::Unauthenticated
    }
}

/// The problem a refusal answers with.
pub fn refusal_problem(refusal: Refusal) -> Problem {
    match refusal {
        Refusal::ParallelRunsExceeded => {
            Problem::new(StatusCode::TOO_MANY_REQUESTS, refusal.code())
                .detail("the organization already has as many runs in progress as its plan allows")
                .retry_after(30)
        }
        Refusal::MonthlyRunsExceeded => Problem::new(StatusCode::PAYMENT_REQUIRED, refusal.code())
            .detail("the organization has used this month's runs"),
        Refusal::MonthlyBudgetExceeded => {
            Problem::new(StatusCode::PAYMENT_REQUIRED, refusal.code())
                .detail("the run's worst-case cost does not fit in this month's budget")
        }
        Refusal::TrialExpired => Problem::new(StatusCode::PAYMENT_REQUIRED, refusal.code())
            .detail("the organization's trial has ended; choose a plan to run again"),
    }
}

impl IntoResponse for QuotaError {
    fn into_response(self) -> Response {
        let problem = match self {
            Self::Invalid { code, detail } => Problem::bad_request(code, detail),
            Self::Unauthenticated => Problem::unauthorized(),
            Self::Forbidden(detail) => Problem::forbidden(detail),
            Self::NotFound => Problem::not_found(),
            Self::Conflict { code, detail } => Problem::conflict(code, detail),
            Self::Refused(refusal) => refusal_problem(refusal),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_their_status() {
        assert_eq!(
            refusal_problem(Refusal::ParallelRunsExceeded).status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            refusal_problem(Refusal::MonthlyRunsExceeded).status(),
            StatusCode::PAYMENT_REQUIRED
        );
        let p = refusal_problem(Refusal::MonthlyBudgetExceeded);
        assert_eq!(
            (p.status, p.code.as_str()),
            (402, "monthly_budget_exceeded")
        );
    }
}
