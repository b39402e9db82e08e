//! Tenancy's errors as the API answers them (`runwarden_platform::error::ApiError`).
//! Every 404 from here is a tenancy 404: it answers exactly like a missing resource and is
//! logged once as `tenancy_denied` by the error core.

use runwarden_platform::error::ApiError;

use crate::TenancyError;
use crate::access::AccessError;

impl From<TenancyError> for ApiError {
    fn from(e: TenancyError) -> Self {
        match e {
            TenancyError::NotFound => Self::TenancyNotFound,
            TenancyError::Forbidden { .. } => Self::Forbidden(e.to_string()),
            // Request bodies parse roles at the edge; an unknown role here was read from the
            // database, which its CHECK constraint should have made impossible.
            TenancyError::UnknownRole => {
                Self::Internal(anyhow::anyhow!("unknown role stored in the database"))
            }
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Unauthenticated => Self::Unauthenticated,
            AccessError::NotFound => Self::TenancyNotFound,
            AccessError::RateLimited { retry_after_secs } => Self::RateLimited { retry_after_secs },
            AccessError::SsoRequired => Self::Denied {
                code: "sso_required",
                detail: e.to_string(),
            },
            AccessError::Database(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    use super::*;
    use crate::Role;

    #[test]
    fn tenancy_errors_answer_as_the_api_does() {
        assert!(matches!(
            ApiError::from(TenancyError::NotFound),
            ApiError::TenancyNotFound
        ));
        let forbidden = ApiError::from(TenancyError::Forbidden {
            required: Role::Admin,
        });
        assert_eq!(forbidden.into_response().status(), StatusCode::FORBIDDEN);
        assert_eq!(
            ApiError::from(TenancyError::UnknownRole)
                .into_response()
                .status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn access_errors_answer_as_the_api_does() {
        assert!(matches!(
            ApiError::from(AccessError::Unauthenticated),
            ApiError::Unauthenticated
        ));
        assert!(matches!(
            ApiError::from(AccessError::NotFound),
            ApiError::TenancyNotFound
        ));
        let sso = ApiError::from(AccessError::SsoRequired);
        assert!(matches!(
            sso,
            ApiError::Denied {
                code: "sso_required",
                ..
            }
        ));
        assert_eq!(sso.into_response().status(), StatusCode::FORBIDDEN);
        assert!(matches!(
            ApiError::from(AccessError::Database(sqlx::Error::PoolTimedOut)),
            ApiError::Unavailable
        ));
        assert!(matches!(
            ApiError::from(AccessError::Database(sqlx::Error::RowNotFound)),
            ApiError::Internal(_)
        ));
    }
}
