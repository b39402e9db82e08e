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

use crate::abuse_limits::{LimitError, Limited};
use crate::accounts::AccountError;
use crate::credentials::CredentialError;
use crate::email::EmailError;
use crate::google::GoogleError;
use crate::invitations::InvitationError;
use crate::members::MemberError;
use crate::orgs::{InvalidDomain, InvalidOrgName, Refusal, UpdateError};
use crate::password::PasswordRejection;
use crate::password_reset::ResetError;
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
    /// 429: a login refused before its password was checked (see [`crate::throttle`]), or
    /// a password reset request past its limits (see [`crate::password_reset`]).
    #[error("login throttled")]
    Throttled(Box<Throttled>),
    /// 429 with the limit's own code: an abuse limit ([`crate::abuse_limits`]).
    #[error("rate limited: {}", .0.code)]
    Limited(Box<Limited>),
    /// 403 `email_unverified`: the account has not verified its address yet.
    #[error("email not verified")]
    EmailUnverified,
    /// 404 `not_configured`: an optional provider this deployment does not have.
    #[error("not configured: {0}")]
    NotConfigured(&'static str),
    /// 403 `reauth_required`: a sensitive change in a session whose last sign-in is older
    /// than [`crate::sessions::RECENT_AUTH`] (SES-08).
    #[error("re-authentication required")]
    ReauthRequired,
    /// 403 `invalid_password`: a signed-in user's own password, given again, is wrong.
    #[error("invalid password")]
    InvalidPassword,
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

impl From<InvalidDomain> for AuthError {
    fn from(e: InvalidDomain) -> Self {
        Self::invalid("invalid_domain", e.to_string())
    }
}

impl From<LimitError> for AuthError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Limited(limited) => Self::Limited(limited),
            LimitError::Database(e) => e.into(),
        }
    }
}

impl From<UpdateError> for AuthError {
    fn from(e: UpdateError) -> Self {
        match e {
            UpdateError::DomainMismatch => {
                Self::conflict("workspace_domain_mismatch", e.to_string())
            }
            UpdateError::Database(e) => e.into(),
        }
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
            SessionError::ReauthRequired => Self::ReauthRequired,
        }
    }
}

impl From<AccountError> for AuthError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::InvalidCredentials => Self::InvalidCredentials,
            AccountError::Throttled(throttled) => Self::Throttled(throttled),
            AccountError::Limited { code, throttled } => Self::Limited(Box::new(Limited {
                code,
                policy: throttled.policy,
                quota: throttled.quota,
                decision: throttled.decision,
            })),
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
            MemberError::ReauthRequired => Self::ReauthRequired,
            MemberError::Database(e) => e.into(),
        }
    }
}

impl From<CredentialError> for AuthError {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::Unauthenticated => Self::unauthenticated(),
            CredentialError::ReauthRequired => Self::ReauthRequired,
            CredentialError::WrongPassword => Self::InvalidPassword,
            CredentialError::Rejected(rejection) => Self::Password(rejection),
            CredentialError::Throttled(throttled) => Self::Throttled(throttled),
            CredentialError::NotFound => Self::not_found(),
            CredentialError::Access(e) => e.into(),
            CredentialError::Hashing(e) => e.into(),
            CredentialError::Database(e) => e.into(),
        }
    }
}

impl From<ResetError> for AuthError {
    fn from(e: ResetError) -> Self {
        match e {
            ResetError::Throttled(throttled) => Self::Throttled(throttled),
            ResetError::InvalidToken => Self::invalid("invalid_token", e.to_string()),
            ResetError::Rejected(rejection) => Self::Password(rejection),
            ResetError::Hashing(e) => e.into(),
            ResetError::Database(e) => e.into(),
        }
    }
}

impl From<InvitationError> for AuthError {
    fn from(e: InvitationError) -> Self {
        match e {
            InvitationError::NotFound => Self::not_found(),
            InvitationError::OtherEmail => Self::Api(ApiError::Forbidden(e.to_string())),
            InvitationError::AlreadyMember => Self::conflict("already_member", e.to_string()),
            InvitationError::Limited(limited) => Self::Limited(limited),
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
                let security_event = if throttled.policy.starts_with("password-reset") {
                    "password_reset_throttled"
                } else {
                    "login_throttled"
                };
                tracing::info!(
                    security_event,
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
            Self::Limited(limited) => {
                // Logged (with its ids) where it fired: `abuse_limits`.
                let seconds = limited.decision.retry_after_secs().unwrap_or(1);
                let mut response = Problem::new(StatusCode::TOO_MANY_REQUESTS, limited.code)
                    .detail("too many for now; retry later")
                    .retry_after(seconds)
                    .into_response();
                limited.decision.write_headers(
                    &limited.quota,
                    limited.policy,
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
            Self::ReauthRequired => Problem::new(StatusCode::FORBIDDEN, "reauth_required")
                .detail(
                    "this change needs a sign-in within the last 5 minutes: \
                     POST /v1/auth/reauthenticate with your password, or sign in again",
                )
                .into_response(),
            Self::InvalidPassword => Problem::new(StatusCode::FORBIDDEN, "invalid_password")
                .detail("the password is incorrect")
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
        assert_eq!(status(MemberError::ReauthRequired), StatusCode::FORBIDDEN);
        assert_eq!(
            status(CredentialError::WrongPassword),
            StatusCode::FORBIDDEN
        );
        assert_eq!(status(CredentialError::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(status(InvitationError::OtherEmail), StatusCode::FORBIDDEN);
        assert_eq!(status(GoogleError::Rejected), StatusCode::UNAUTHORIZED);
        assert_eq!(
            status(GoogleError::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
