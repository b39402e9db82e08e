//! auth's errors and how each answers: the HTTP edge. Domain modules return their own errors
//! (`EmailError`, `Refusal`, `AccountError`, `Throttled` …); they are mapped here, and only
//! here. 4xx carry a safe detail and a stable code; internal causes are logged once, here,
//! and never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use runwarden_platform::Problem;
use runwarden_tenancy::TenancyError;

use crate::accounts::AccountError;
use crate::email::EmailError;
use crate::google::GoogleError;
use crate::invitations::InvitationError;
use crate::members::MemberError;
use crate::orgs::{InvalidOrgName, Refusal};
use crate::password::PasswordRejection;
use crate::sessions::SessionError;
use crate::throttle::Throttled;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{detail}")]
    Invalid { code: &'static str, detail: String },
    #[error("weak password: {0}")]
    Password(#[from] PasswordRejection),
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// A login refused before its password was checked (see [`crate::throttle`]).
    #[error("login throttled")]
    Throttled(Box<Throttled>),
    #[error("unavailable")]
    Unavailable,
    #[error("not configured: {0}")]
    NotConfigured(&'static str),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type AuthResult<T> = Result<T, AuthError>;

impl AuthError {
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

impl From<sqlx::Error> for AuthError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Self::Unavailable
            }
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<TenancyError> for AuthError {
    fn from(e: TenancyError) -> Self {
        match e {
            TenancyError::NotFound => Self::NotFound,
            TenancyError::Forbidden { .. } => Self::Forbidden(e.to_string()),
            TenancyError::UnknownRole => Self::invalid("invalid_role", "unknown role"),
        }
    }
}

impl From<EmailError> for AuthError {
    fn from(e: EmailError) -> Self {
        Self::invalid("invalid_email", e.to_string())
    }
}

impl From<InvalidOrgName> for AuthError {
    fn from(e: InvalidOrgName) -> Self {
        Self::invalid("invalid_name", e.to_string())
    }
}

impl From<Refusal> for AuthError {
    fn from(e: Refusal) -> Self {
        match e {
            Refusal::NeedsAdmin | Refusal::OwnerOnly => Self::Forbidden(e.to_string()),
            Refusal::LastOwner => Self::conflict("last_owner", e.to_string()),
        }
    }
}

impl From<SessionError> for AuthError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Database(e) => e.into(),
            SessionError::Signing(_) => Self::Internal(anyhow::Error::new(e)),
        }
    }
}

impl From<AccountError> for AuthError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::EmailTaken => Self::conflict("email_taken", e.to_string()),
            AccountError::InvalidCredentials => Self::InvalidCredentials,
            AccountError::Throttled(throttled) => Self::Throttled(throttled),
            AccountError::Hashing(e) => Self::Internal(e),
            AccountError::Session(e) => e.into(),
            AccountError::Database(e) => e.into(),
        }
    }
}

impl From<MemberError> for AuthError {
    fn from(e: MemberError) -> Self {
        match e {
            MemberError::NotFound => Self::NotFound,
            MemberError::Refused(refusal) => refusal.into(),
            MemberError::Database(e) => e.into(),
        }
    }
}

impl From<InvitationError> for AuthError {
    fn from(e: InvitationError) -> Self {
        match e {
            InvitationError::NotFound => Self::NotFound,
            InvitationError::OtherEmail => Self::Forbidden(e.to_string()),
            InvitationError::AlreadyMember => Self::conflict("already_member", e.to_string()),
            InvitationError::Database(e) => e.into(),
        }
    }
}

impl From<GoogleError> for AuthError {
    fn from(e: GoogleError) -> Self {
        match e {
            GoogleError::Rejected => Self::Unauthenticated,
            GoogleError::Unavailable => Self::Unavailable,
            GoogleError::Unreachable(e) => Self::Internal(e),
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let problem = match self {
            Self::Invalid { code, detail } => Problem::bad_request(code, detail),
            Self::Password(rejection) => {
                Problem::bad_request("weak_password", rejection.to_string())
            }
            Self::InvalidCredentials => {
                Problem::new(StatusCode::UNAUTHORIZED, "invalid_credentials")
                    .detail("email or password is incorrect")
            }
            Self::Unauthenticated => Problem::unauthorized(),
            Self::Forbidden(detail) => {
                tracing::info!(security_event = "authz_denied", reason = %detail, "forbidden");
                Problem::forbidden(detail)
            }
            Self::NotFound => Problem::not_found(),
            Self::Conflict { code, detail } => Problem::conflict(code, detail),
            Self::Throttled(throttled) => {
                let seconds = throttled.decision.retry_after_secs().unwrap_or(1);
                tracing::info!(
                    security_event = "login_throttled",
                    limit = throttled.policy,
                    retry_after_s = seconds,
                    "throttled"
                );
                let mut response = Problem::too_many_requests(seconds).into_response();
                throttled.decision.write_headers(
                    &throttled.quota,
                    throttled.policy,
                    response.headers_mut(),
                );
                return response;
            }
            Self::Unavailable => {
                tracing::warn!("database unavailable");
                Problem::unavailable()
            }
            Self::NotConfigured(what) => Problem::new(StatusCode::NOT_FOUND, "not_configured")
                .detail(format!("{what} is not configured")),
            Self::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                Problem::internal()
            }
        };
        problem.into_response()
    }
}
