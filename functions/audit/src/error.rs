//! audit's errors. audit has none of its own: it answers with the platform's error core
//! ([`ApiError`]: problem+json, one security log line per 401/403/tenancy 404, internal
//! causes logged once and never sent). A variant of its own would make this an enum
//! `AuditError { Api(#[from] ApiError), … }` with `runwarden_platform::api_error_from!`.

pub use runwarden_platform::error::ApiError;

pub type AuditError = ApiError;

pub type AuditResult<T> = Result<T, AuditError>;
