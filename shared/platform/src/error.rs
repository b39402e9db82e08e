//! The one API error core every function's error enum wraps: the variants all functions
//! share, their `From` impls, their problem+json answers, and the one security log line.
//!
//! A function's own enum keeps only what is its own and wraps this one:
//!
//! ```
//! use runwarden_platform::error::ApiError;
//!
//! #[derive(Debug, thiserror::Error)]
//! pub enum QuotasError {
//!     #[error(transparent)]
//!     Api(#[from] ApiError),
//!     #[error("refused: {0}")]
//!     Refused(&'static str),
//! }
//! runwarden_platform::api_error_from!(QuotasError: sqlx::Error, anyhow::Error);
//!
//! // A lost database connection is a 503 in every function.
//! let e: QuotasError = sqlx::Error::PoolTimedOut.into();
//! assert!(matches!(e, QuotasError::Api(ApiError::Unavailable)));
//! ```
//!
//! Every 401, every 403 and every 404 that comes from tenancy is logged here, once, as
//! `security_event = "authn_failed" | "authz_denied" | "tenancy_denied"`, with safe fields
//! only (see `docs/security.md`). Internal causes are logged here, once, and never sent.

use axum::response::{IntoResponse, Response};

use crate::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with a stable code and a detail safe to show.
    #[error("{detail}")]
    Invalid { code: &'static str, detail: String },
    /// 401: no, a bad or an expired credential. Logged as `authn_failed`.
    #[error("unauthenticated")]
    Unauthenticated,
    /// 403 with a detail safe to show (which role is needed). Logged as `authz_denied`.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 403 with a stable code (not a role: a condition the caller can meet, such as signing
    /// in another way) and a detail safe to show. Logged as `authz_denied` with the code.
    #[error("{detail}")]
    Denied { code: &'static str, detail: String },
    /// 404: no such resource.
    #[error("not found")]
    NotFound,
    /// 404 because of tenancy: the caller is not a member of the org, or the resource is
    /// another org's. Answers exactly like [`ApiError::NotFound`] (status and body), so the
    /// caller cannot tell the two apart, and is logged as `tenancy_denied`.
    #[error("not found")]
    TenancyNotFound,
    /// 409 with a stable code and a detail safe to show.
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// 503: the database is unreachable or asked for a retry. Logged as a warning.
    #[error("unavailable")]
    Unavailable,
    /// 429 `rate_limited` with `Retry-After`: the org's request rate (charged once the
    /// caller is known to be a member, see `runwarden_ratelimit`).
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    /// 500: the cause chain is logged once and never sent.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
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

    /// The problem this error answers with, without logging it.
    pub fn problem(&self) -> Problem {
        match self {
            Self::Invalid { code, detail } => Problem::bad_request(code, detail.clone()),
            Self::Unauthenticated => Problem::unauthorized(),
            Self::Forbidden(detail) => Problem::forbidden(detail.clone()),
            Self::Denied { code, detail } => {
                Problem::new(axum::http::StatusCode::FORBIDDEN, code).detail(detail.clone())
            }
            Self::NotFound | Self::TenancyNotFound => Problem::not_found(),
            Self::Conflict { code, detail } => Problem::conflict(code, detail.clone()),
            Self::Unavailable => Problem::unavailable(),
            Self::RateLimited { retry_after_secs } => Problem::too_many_requests(*retry_after_secs)
                .detail("request rate limit for this organization exceeded; retry later"),
            Self::Internal(_) => Problem::internal(),
        }
    }

    /// Writes the one log line this error deserves, if any.
    fn log(&self) {
        match self {
            Self::Unauthenticated => {
                tracing::info!(
                    security_event = "authn_failed",
                    http.status = 401u16,
                    "unauthenticated"
                );
            }
            Self::Forbidden(reason) => {
                tracing::info!(
                    security_event = "authz_denied",
                    http.status = 403u16,
                    reason = %reason,
                    "forbidden"
                );
            }
            Self::Denied { code, .. } => {
                tracing::info!(
                    security_event = "authz_denied",
                    http.status = 403u16,
                    reason = %code,
                    "forbidden"
                );
            }
            Self::TenancyNotFound => {
                tracing::info!(
                    security_event = "tenancy_denied",
                    http.status = 404u16,
                    "not found for this caller"
                );
            }
            Self::Unavailable => tracing::warn!("database unavailable"),
            Self::Internal(e) => tracing::error!(error = format!("{e:#}"), "internal error"),
            Self::Invalid { .. }
            | Self::NotFound
            | Self::Conflict { .. }
            | Self::RateLimited { .. } => {}
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        self.problem().into_response()
    }
}

/// Serialization failures (40001) and deadlocks (40P01): the whole transaction may be
/// retried.
pub fn is_retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c == "40001" || c == "40P01"))
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Self::Unavailable
            }
            ref other if is_retryable(other) => Self::Unavailable,
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

/// Any token failure (malformed, expired, unknown key …) is the same 401 to the caller.
impl From<runwarden_tokens::TokenError> for ApiError {
    fn from(_: runwarden_tokens::TokenError) -> Self {
        Self::Unauthenticated
    }
}

/// Writes `impl From<X> for FnError { fn from(e: X) -> Self { Self::Api(ApiError::from(e)) } }`
/// for each `X`, so a function's enum (`enum FnError { Api(#[from] ApiError), … }`) takes
/// every common error with `?` and repeats no impl
/// (see the example in this module's documentation).
#[macro_export]
macro_rules! api_error_from {
    ($target:ty : $($source:ty),+ $(,)?) => {
        $(
            impl ::core::convert::From<$source> for $target {
                fn from(e: $source) -> Self {
                    Self::Api($crate::error::ApiError::from(e))
                }
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use axum::http::StatusCode;
    use http_body_util::BodyExt;

    use super::*;

    async fn answer(e: ApiError) -> (StatusCode, serde_json::Value, bytes::Bytes) {
        let response = e.into_response();
        let status = response.status();
        assert_eq!(
            response.headers()[axum::http::header::CONTENT_TYPE],
            crate::problem::CONTENT_TYPE
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap(), body)
    }

    #[tokio::test]
    async fn each_variant_answers_its_status_code_and_body() {
        let cases = [
            (
                ApiError::invalid("invalid_name", "name is empty"),
                400,
                "invalid_name",
            ),
            (ApiError::Unauthenticated, 401, "unauthenticated"),
            (ApiError::Forbidden("needs admin".into()), 403, "forbidden"),
            (ApiError::NotFound, 404, "not_found"),
            (ApiError::TenancyNotFound, 404, "not_found"),
            (
                ApiError::conflict("name_taken", "name is taken"),
                409,
                "name_taken",
            ),
            (ApiError::Unavailable, 503, "unavailable"),
            (
                ApiError::Internal(anyhow::anyhow!("db password=hunter2")),
                500,
                "internal",
            ),
        ];
        for (error, status, code) in cases {
            let (got_status, body, _) = answer(error).await;
            assert_eq!(got_status.as_u16(), status);
            assert_eq!(body["status"], status);
            assert_eq!(body["code"], code);
            assert!(!body.to_string().contains("hunter2"), "{body}");
        }
        let (_, body, _) = answer(ApiError::invalid("invalid_name", "name is empty")).await;
        assert_eq!(body["detail"], "name is empty");
        let (_, body, _) = answer(ApiError::Forbidden("needs admin".into())).await;
        assert_eq!(body["detail"], "needs admin");
        let (_, body, _) = answer(ApiError::Internal(anyhow::anyhow!("boom"))).await;
        assert_eq!(body["detail"], "internal error");
    }

    #[tokio::test]
    async fn unavailable_asks_for_a_retry() {
        let response = ApiError::Unavailable.into_response();
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn tenancy_not_found_is_byte_for_byte_a_plain_not_found() {
        let (plain_status, _, plain) = answer(ApiError::NotFound).await;
        let (tenancy_status, _, tenancy) = answer(ApiError::TenancyNotFound).await;
        assert_eq!(plain_status, tenancy_status);
        assert_eq!(plain, tenancy);
        let plain = ApiError::NotFound.into_response();
        let tenancy = ApiError::TenancyNotFound.into_response();
        assert_eq!(plain.headers(), tenancy.headers());
    }

    #[test]
    fn sqlx_errors_map_to_unavailable_or_internal() {
        assert!(matches!(
            ApiError::from(sqlx::Error::PoolTimedOut),
            ApiError::Unavailable
        ));
        assert!(matches!(
            ApiError::from(sqlx::Error::PoolClosed),
            ApiError::Unavailable
        ));
        assert!(matches!(
            ApiError::from(sqlx::Error::Io(std::io::Error::other("reset"))),
            ApiError::Unavailable
        ));
        assert!(matches!(
            ApiError::from(sqlx::Error::RowNotFound),
            ApiError::Internal(_)
        ));
        assert!(matches!(
            ApiError::from(runwarden_tokens::TokenError::Expired),
            ApiError::Unauthenticated
        ));
    }

    /// A `tracing` writer that keeps every line, to read back in the test.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(error: ApiError) -> Vec<serde_json::Value> {
        // A second registered dispatcher, alive while this one captures: with a single scoped
        // dispatcher registered, tracing computes a new callsite's interest from the thread that
        // first hits it, so a parallel test thread without a subscriber could cache "never" for
        // a line this capture needs (tracing-core 0.1's `has_just_one` shortcut).
        let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let _ = error.into_response();
        });
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn every_401_403_and_tenancy_404_writes_one_security_line() {
        for (error, event) in [
            (ApiError::Unauthenticated, "authn_failed"),
            (
                ApiError::Forbidden("this action needs the admin role or higher".into()),
                "authz_denied",
            ),
            (ApiError::TenancyNotFound, "tenancy_denied"),
        ] {
            let lines = logged(error);
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert_eq!(lines[0]["fields"]["security_event"], event, "{lines:?}");
            assert_eq!(lines[0]["level"], "INFO");
        }
    }

    #[test]
    fn plain_4xx_write_no_security_line() {
        for error in [
            ApiError::NotFound,
            ApiError::invalid("invalid_limit", "limit must be a number"),
            ApiError::conflict("name_taken", "taken"),
        ] {
            assert!(logged(error).is_empty());
        }
    }

    #[test]
    fn internal_errors_log_the_whole_chain_once_and_never_send_it() {
        let cause = anyhow::anyhow!("connection refused").context("loading the plan");
        let lines = logged(ApiError::Internal(cause));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["level"], "ERROR");
        assert_eq!(
            lines[0]["fields"]["error"],
            "loading the plan: connection refused"
        );
        let lines = logged(ApiError::Unavailable);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["level"], "WARN");
    }

    #[test]
    fn security_lines_carry_no_secret() {
        let bearer = "eyJhbGciOiJFZERTQSJ9.secret-token";
        let lines = logged(ApiError::from(runwarden_tokens::TokenError::Invalid));
        let text = serde_json::to_string(&lines).unwrap();
        assert!(!text.contains(bearer));
        assert!(!text.to_lowercase().contains("token is invalid"));
    }

    #[derive(Debug, thiserror::Error)]
    enum DemoError {
        #[error(transparent)]
        Api(#[from] ApiError),
        #[error("its own")]
        Own,
    }
    crate::api_error_from!(DemoError: sqlx::Error, anyhow::Error, runwarden_tokens::TokenError);

    #[test]
    fn the_macro_routes_common_errors_through_the_core() {
        fn fails() -> Result<(), DemoError> {
            Err(sqlx::Error::PoolTimedOut)?
        }
        assert!(matches!(
            fails(),
            Err(DemoError::Api(ApiError::Unavailable))
        ));
        let e: DemoError = runwarden_tokens::TokenError::Expired.into();
        assert!(matches!(e, DemoError::Api(ApiError::Unauthenticated)));
        let e: DemoError = anyhow::anyhow!("x").into();
        assert!(matches!(e, DemoError::Api(ApiError::Internal(_))));
        assert!(matches!(DemoError::Own, DemoError::Own));
    }
}
