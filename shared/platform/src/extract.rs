//! Extractors whose rejections are problem+json like every other error.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
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

/// `axum::extract::Path`, but a path parameter that does not parse (a malformed id, say
/// `/v1/orgs/{org}/runs/not-a-uuid`) answers 404 `not_found`, exactly like a resource that
/// does not exist: a client cannot tell a bad id from someone else's (see
/// `docs/security.md`). Declare path structs with the id newtypes
/// (`runwarden_contracts::RunId`, `runwarden_tenancy::OrgId`, ...) so they parse here, once.
///
/// A path the route cannot supply at all (a parameter missing from the route, or a type
/// serde cannot read from a path) is the server's bug: 500, logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(path_problem(&rejection)),
        }
    }
}

fn path_problem(rejection: &PathRejection) -> Problem {
    if rejection.status().is_server_error() {
        tracing::error!(error = %rejection.body_text(), "a route cannot extract its path");
        Problem::internal()
    } else {
        Problem::not_found()
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

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use serde::Deserialize;
    use tower::ServiceExt;
    use uuid::Uuid;

    use super::*;

    #[derive(Deserialize)]
    struct RunPath {
        org: Uuid,
        run: Uuid,
    }

    fn app() -> Router {
        Router::new()
            .route(
                "/runs/{run}",
                get(|Path(run): Path<Uuid>| async move { run.to_string() }),
            )
            .route(
                "/orgs/{org}/runs/{run}",
                get(|Path(p): Path<RunPath>| async move { format!("{} {}", p.org, p.run) }),
            )
            .route(
                "/wrong/{one}",
                get(|Path((a, b)): Path<(Uuid, Uuid)>| async move { format!("{a}{b}") }),
            )
    }

    async fn call(uri: &str) -> (StatusCode, Option<String>, bytes::Bytes) {
        let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let response = app().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, content_type, body)
    }

    async fn not_found() -> (StatusCode, Option<String>, bytes::Bytes) {
        let response = Problem::not_found().into_response();
        let status = response.status();
        let content_type = response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, content_type, body)
    }

    #[tokio::test]
    async fn a_good_id_is_extracted() {
        let (org, run) = (Uuid::now_v7(), Uuid::now_v7());
        let (status, _, body) = call(&format!("/runs/{run}")).await;
        assert_eq!((status, body), (StatusCode::OK, run.to_string().into()));
        let (status, _, body) = call(&format!("/orgs/{org}/runs/{run}")).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, format!("{org} {run}").into())
        );
    }

    #[tokio::test]
    async fn a_malformed_id_answers_exactly_like_a_missing_resource() {
        let expected = not_found().await;
        assert_eq!(expected.0, StatusCode::NOT_FOUND);
        let run = Uuid::now_v7();
        for uri in [
            "/runs/not-a-uuid".to_owned(),
            "/runs/%00".to_owned(),
            format!("/runs/{run}x"),
            format!("/orgs/nope/runs/{run}"),
            format!("/orgs/{run}/runs/1234"),
        ] {
            assert_eq!(call(&uri).await, expected, "{uri}");
        }
    }

    #[tokio::test]
    async fn a_route_that_cannot_supply_its_path_is_a_server_error() {
        let (status, _, body) = call(&format!("/wrong/{}", Uuid::now_v7())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["code"], "internal");
    }
}
