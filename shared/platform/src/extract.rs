//! Extractors whose rejections are problem+json like every other error.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::Problem;

/// `axum::Json`, but a bad body answers problem+json with a safe detail. Request types
/// should use `#[serde(deny_unknown_fields)]` so mass assignment fails loudly.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_problem(&rejection)),
        }
    }
}

fn json_problem(rejection: &JsonRejection) -> Problem {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
                .detail("expected Content-Type: application/json")
        }
        JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
                .detail("request body is too large")
        }
        JsonRejection::JsonDataError(e) => {
            // serde's message names the field and the expectation; it never echoes values
            // longer than a token of the input, and passwords are not logged from here.
            Problem::bad_request("invalid_body", e.body_text())
        }
        _ => Problem::bad_request("invalid_body", "request body is not valid JSON"),
    }
}
