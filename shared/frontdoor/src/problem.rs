//! The front door's own errors, as the shared RFC 9457 `Problem` of `runwarden-platform`,
//! with the security headers every Runwarden response carries (the functions add them
//! through their middleware; the front door answers these itself).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use runwarden_platform::Problem;
pub use runwarden_platform::problem::CONTENT_TYPE as PROBLEM_JSON;

pub fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found").detail("no public route matches this path")
}

pub fn bad_request(detail: &str) -> Problem {
    Problem::bad_request("bad_request", detail)
}

pub fn bad_gateway() -> Problem {
    Problem::new(StatusCode::BAD_GATEWAY, "bad_gateway")
        .detail("the service behind this path did not answer")
}

pub fn gateway_timeout() -> Problem {
    Problem::new(StatusCode::GATEWAY_TIMEOUT, "gateway_timeout")
        .detail("the service behind this path did not answer in time")
}

/// The problem+json response with `Cache-Control: no-store`, `nosniff` and
/// `Referrer-Policy: no-referrer`.
pub fn respond(problem: Problem) -> Response {
    let mut res = problem.into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_errors_are_problem_json_with_stable_codes_and_security_headers() {
        for (p, status, code) in [
            (not_found(), 404, "not_found"),
            (bad_request("x"), 400, "bad_request"),
            (bad_gateway(), 502, "bad_gateway"),
            (gateway_timeout(), 504, "gateway_timeout"),
        ] {
            let json = serde_json::to_value(&p).unwrap();
            assert_eq!(json["type"], "about:blank");
            assert_eq!(json["status"], status);
            assert_eq!(json["code"], code);
            assert!(json["title"].is_string() && json["detail"].is_string());
            let res = respond(p);
            assert_eq!(res.status().as_u16(), status);
            assert_eq!(res.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
            assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
            assert_eq!(res.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(res.headers()[header::REFERRER_POLICY], "no-referrer");
        }
    }
}
