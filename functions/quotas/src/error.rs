//! quotas' one error enum and how each answers (problem+json). 4xx carry a safe detail and a
//! stable code; internal causes are logged once, here, and never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use runwarden_platform::Problem;
use runwarden_platform::error::ApiError;

use crate::rules::Refusal;

/// quotas' errors: the common ones ([`ApiError`]) and its own refusals.
#[derive(Debug, thiserror::Error)]
pub enum QuotasError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A run refused admission: 429 for parallel runs (retry later), 402 for the month.
    #[error("refused: {}", .0.code())]
    Refused(Refusal),
}

pub type QuotasResult<T> = Result<T, QuotasError>;

runwarden_platform::api_error_from!(
    QuotasError: sqlx::Error,
    anyhow::Error,
    runwarden_tenancy::TenancyError,
    runwarden_tenancy::access::AccessError,
    runwarden_tokens::TokenError,
);

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
        Refusal::PlanRequired => Problem::new(StatusCode::PAYMENT_REQUIRED, refusal.code()).detail(
            "the organization has no trial of its own (one per user); choose a plan to run",
        ),
    }
}

impl IntoResponse for QuotasError {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::Refused(refusal) => refusal_problem(refusal).into_response(),
        }
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
        let p = refusal_problem(Refusal::PlanRequired);
        assert_eq!((p.status, p.code.as_str()), (402, "plan_required"));
        let p = refusal_problem(Refusal::MonthlyBudgetExceeded);
        assert_eq!(
            (p.status, p.code.as_str()),
            (402, "monthly_budget_exceeded")
        );
    }
}
