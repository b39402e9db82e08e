//! auth's errors and how each answers: the HTTP edge. The variants every function shares
//! (400 with a code, 401, 403, 404, 409, 503, 500) are the platform's
//! [`ApiError`], which also writes the one security log line for each 401, 403 and tenancy
//! 404; what is left here is auth's own: weak passwords, invalid credentials, throttled
//! logins and an unconfigured provider.
//!
//! Domain modules return their own errors (`EmailError`, `Refusal`, `AccountError`,
//! `Throttled` …); they are mapped here, and only here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use runwarden_platform::Problem;
use runwarden_platform::error::ApiError;
use runwarden_tenancy::access::AccessError;
use runwarden_tenancy::{Role, TenancyError};

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
    #[error(transparent)]
    Api(#[from] ApiError),
    /// 400 `weak_password`.
    #[error("weak password: {0}")]
    Password(#[from] PasswordRejection),
    /// 401 `invalid_credentials`: wrong password and unknown email alike.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// 429: a login refused before its password was checked (see [`crate::throttle`]).
    #[error("login throttled")]
    Throttled(Box<Throttled>),
    /// 429 with a `code` (`signup_rate_limited`, `resend_rate_limited`): an abuse limit
    /// (see [`crate::signup_limits`]).
    #[error("rate limited: {code}")]
    Limited {
        code: &'static str,
        throttled: Box<Throttled>,
    },
    /// 403 `email_unverified`: the account has not verified its address yet.
    #[error("email not verified")]
    EmailUnverified,
    /// 404 `not_configured`: an optional provider this deployment does not have.
    #[error("not configured: {0}")]
    NotConfigured(&'static str),
}

pub type AuthResult<T> = Result<T, AuthError>;

runwarden_platform::api_error_from!(AuthError:
    sqlx::Error,
    anyhow::Error,
    TenancyError,
    AccessError,
);

impl AuthError {
    pub fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Api(ApiError::invalid(code, detail))
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Api(ApiError::conflict(code, detail))
    }

    pub fn unauthenticated() -> Self {
        Self::Api(ApiError::Unauthenticated)
    }

    pub fn not_found() -> Self {
        Self::Api(ApiError::NotFound)
    }
}

/// A role in a request body, parsed at the edge: an unknown one is the caller's 400
/// `invalid_role` (an unknown role read from the database is a 500, see tenancy).
pub fn parse_role(raw: &str) -> AuthResult<Role> {
    raw.parse()
        .map_err(|_| AuthError::invalid("invalid_role", "unknown role"))
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
            Refusal::NeedsAdmin | Refusal::OwnerOnly => {
                Self::Api(ApiError::Forbidden(e.to_string()))
            }
            Refusal::LastOwner => Self::conflict("last_owner", e.to_string()),
        }
    }
}

impl From<SessionError> for AuthError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Database(e) => e.into(),
            SessionError::Signing(_) => anyhow::Error::new(e).into(),
        }
    }
}

impl From<AccountError> for AuthError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::InvalidCredentials => Self::InvalidCredentials,
            AccountError::Throttled(throttled) => Self::Throttled(throttled),
            AccountError::Limited { code, throttled } => Self::Limited { code, throttled },
            AccountError::EmailUnverified => Self::EmailUnverified,
            AccountError::InvalidToken => Self::invalid("invalid_token", e.to_string()),
            AccountError::Hashing(e) => e.into(),
            AccountError::Session(e) => e.into(),
            AccountError::Database(e) => e.into(),
        }
    }
}

impl From<MemberError> for AuthError {
    fn from(e: MemberError) -> Self {
        match e {
            MemberError::NotFound => Self::not_found(),
            MemberError::Refused(refusal) => refusal.into(),
            MemberError::Database(e) => e.into(),
        }
    }
}

impl From<InvitationError> for AuthError {
    fn from(e: InvitationError) -> Self {
        match e {
            InvitationError::NotFound => Self::not_found(),
            InvitationError::OtherEmail => Self::Api(ApiError::Forbidden(e.to_string())),
            InvitationError::AlreadyMember => Self::conflict("already_member", e.to_string()),
            InvitationError::EmailUnverified => Self::EmailUnverified,
            InvitationError::Database(e) => e.into(),
        }
    }
}

impl From<GoogleError> for AuthError {
    fn from(e: GoogleError) -> Self {
        match e {
            GoogleError::Rejected => Self::unauthenticated(),
            GoogleError::Unavailable => Self::Api(ApiError::Unavailable),
            GoogleError::Unreachable(e) => e.into(),
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::Password(rejection) => {
                Problem::bad_request("weak_password", rejection.to_string()).into_response()
            }
            Self::InvalidCredentials => {
                Problem::new(StatusCode::UNAUTHORIZED, "invalid_credentials")
                    .detail("email or password is incorrect")
                    .into_response()
            }
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
                response
            }
            Self::Limited { code, throttled } => {
                let seconds = throttled.decision.retry_after_secs().unwrap_or(1);
                let mut response = Problem::new(StatusCode::TOO_MANY_REQUESTS, code)
                    .detail("too many requests from this client; retry later")
                    .retry_after(seconds)
                    .into_response();
                throttled.decision.write_headers(
                    &throttled.quota,
                    throttled.policy,
                    response.headers_mut(),
                );
                response
            }
            Self::EmailUnverified => Problem::new(StatusCode::FORBIDDEN, "email_unverified")
                .detail("verify your email address first: follow the link mailed to it")
                .into_response(),
            Self::NotConfigured(what) => Problem::new(StatusCode::NOT_FOUND, "not_configured")
                .detail(format!("{what} is not configured"))
                .into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: impl Into<AuthError>) -> StatusCode {
        e.into().into_response().status()
    }

    #[test]
    fn a_role_from_the_body_is_a_400_and_a_stored_one_a_500() {
        let from_body = parse_role("superuser").unwrap_err();
        assert!(matches!(
            &from_body,
            AuthError::Api(ApiError::Invalid {
                code: "invalid_role",
                ..
            })
        ));
        assert_eq!(status(from_body), StatusCode::BAD_REQUEST);
        assert_eq!(parse_role("admin").unwrap(), Role::Admin);
        assert_eq!(
            status(TenancyError::UnknownRole),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn domain_errors_answer_their_status() {
        assert_eq!(status(EmailError), StatusCode::BAD_REQUEST);
        assert_eq!(status(InvalidOrgName), StatusCode::BAD_REQUEST);
        assert_eq!(status(Refusal::OwnerOnly), StatusCode::FORBIDDEN);
        assert_eq!(status(Refusal::LastOwner), StatusCode::CONFLICT);
        assert_eq!(status(AccountError::EmailUnverified), StatusCode::FORBIDDEN);
        assert_eq!(status(AccountError::InvalidToken), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(AccountError::InvalidCredentials),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(status(MemberError::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(status(InvitationError::OtherEmail), StatusCode::FORBIDDEN);
        assert_eq!(status(GoogleError::Rejected), StatusCode::UNAUTHORIZED);
        assert_eq!(
            status(GoogleError::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
