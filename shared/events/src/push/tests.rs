//! Envelope parsing (the exact body the emulator sends), authentication decisions, and what
//! the route answers for each outcome. The OIDC path against real RS256 tokens and a served
//! JWKS is tested in runwarden-tokens (oidc) and end to end in functions/audit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{HeaderValue, Request as HttpRequest};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tower::ServiceExt;

use super::*;

/// Exactly what the Pub/Sub emulator POSTed (docs/architecture.md §8, push envelope).
const EMULATOR_BODY: &str = r#"{"subscription":"projects/test-project/subscriptions/jobs-push",
 "message":{"publishTime":"2026-11-24T06:15:20.058Z","data":"aGVsbG8gam9iIDE=","publish_time":"2026-11-24T06:15:20.058Z",
            "messageId":"1","attributes":{"execution_id":"exec-123"},"message_id":"1"}}"#;

const SECRET: &str = "local-push-secret-0123456789abcdef";

#[test]
fn parses_the_exact_emulator_body() {
    let delivery = PushEnvelope::parse(EMULATOR_BODY.as_bytes()).unwrap();
    assert_eq!(
        delivery,
        Delivery {
            subscription: "projects/test-project/subscriptions/jobs-push".into(),
            message_id: "1".into(),
            publish_time: Some("2026-11-24T06:15:20.058Z".into()),
            attributes: BTreeMap::from([("execution_id".into(), "exec-123".into())]),
            ordering_key: None,
            delivery_attempt: None,
            data: Some(b"hello job 1".to_vec()),
        }
    );
}

#[test]
fn parses_production_fields_and_attribute_only_messages() {
    let body = serde_json::json!({
        "subscription": "projects/p/subscriptions/audit-events-push",
        "deliveryAttempt": 3,
        "message": {
            "attributes": {"event_id": "e-1", "kind": "org.update"},
            "messageId": "2070443601311540",
            "message_id": "2070443601311540",
            "orderingKey": "org-1",
            "publishTime": "2021-02-26T19:13:55.749Z",
            "publish_time": "2021-02-26T19:13:55.749Z"
        },
        "someFutureField": {"x": 1}
    });
    let delivery = PushEnvelope::parse(body.to_string().as_bytes()).unwrap();
    assert_eq!(delivery.delivery_attempt, Some(3));
    assert_eq!(delivery.ordering_key.as_deref(), Some("org-1"));
    assert_eq!(delivery.data, None);
    assert!(matches!(
        delivery.json::<serde_json::Value>(),
        Err(PushError::Malformed(_))
    ));
    // deliveryAttempt 0 (no dead-letter policy) means "not sent".
    let zero = serde_json::json!({"message": {"messageId": "1"}, "deliveryAttempt": 0});
    let delivery = PushEnvelope::parse(zero.to_string().as_bytes()).unwrap();
    assert_eq!(delivery.delivery_attempt, None);
    assert_eq!(delivery.subscription, "");
}

#[test]
fn delivery_json_decodes_the_payload() {
    #[derive(Deserialize, Debug, PartialEq)]
    struct Payload {
        id: u32,
    }
    let data = STANDARD.encode(br#"{"id": 7}"#);
    let body = serde_json::json!({"message": {"messageId": "9", "data": data}});
    let delivery = PushEnvelope::parse(body.to_string().as_bytes()).unwrap();
    assert_eq!(delivery.json::<Payload>().unwrap(), Payload { id: 7 });
    assert!(matches!(
        delivery.json::<Vec<u8>>(),
        Err(PushError::Malformed(_))
    ));
}

#[test]
fn malformed_envelopes_are_refused() {
    let not_base64 = serde_json::json!({"message": {"messageId": "1", "data": "%%%"}});
    // URL-safe base64 is not what Pub/Sub sends.
    let url_safe = serde_json::json!({"message": {"messageId": "1",
        "data": URL_SAFE_NO_PAD.encode([0xfb, 0xff, 0xfe])}});
    for body in [
        "".to_owned(),
        "not json".to_owned(),
        "[]".to_owned(),
        "{}".to_owned(),
        r#"{"subscription":"s"}"#.to_owned(),
        r#"{"message":{}}"#.to_owned(),
        r#"{"message":{"messageId":""}}"#.to_owned(),
        r#"{"message":{"messageId":1}}"#.to_owned(),
        r#"{"message":{"messageId":"1","data":7}}"#.to_owned(),
        r#"{"message":{"messageId":"1","attributes":{"a":1}}}"#.to_owned(),
        not_base64.to_string(),
        url_safe.to_string(),
    ] {
        assert!(
            matches!(
                PushEnvelope::parse(body.as_bytes()),
                Err(PushError::Malformed(_))
            ),
            "{body}"
        );
    }
}

fn secret_auth() -> PushAuth {
    PushAuth::shared_secret(SecretString::from(SECRET)).unwrap()
}

#[tokio::test]
async fn the_shared_secret_is_the_only_accepted_token() {
    let auth = secret_auth();
    let headers = HeaderMap::new();
    let ok = format!("token={SECRET}");
    assert_eq!(auth.authenticate(&headers, Some(&ok)).await, Ok(()));
    let ok_among_others = format!("a=1&token={SECRET}&b=2");
    assert_eq!(
        auth.authenticate(&headers, Some(&ok_among_others)).await,
        Ok(())
    );
    let prefix = &SECRET[..SECRET.len() - 1];
    for query in [
        None,
        Some(String::new()),
        Some("token=".into()),
        Some("token".into()),
        Some(format!("token={prefix}")),
        Some(format!("token={SECRET}x")),
        Some(format!("token={SECRET}%20")),
        Some(format!("Token={SECRET}")),
        Some(format!("tok={SECRET}")),
        Some(format!("token={SECRET}&token={SECRET}")),
        Some(format!("token=wrong&token={SECRET}")),
    ] {
        assert!(
            matches!(
                auth.authenticate(&headers, query.as_deref()).await,
                Err(AuthFailure::Rejected(_))
            ),
            "{query:?}"
        );
    }
    // The secret in a header instead of the query is not the shared-secret scheme.
    let mut bearer = HeaderMap::new();
    bearer.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {SECRET}")).unwrap(),
    );
    assert!(auth.authenticate(&bearer, None).await.is_err());
    // Percent-encoding is decoded like any query value.
    let special = PushAuth::shared_secret(SecretString::from("s3cr3t+/=&with spaces")).unwrap();
    assert_eq!(
        special
            .authenticate(&headers, Some("token=s3cr3t%2B%2F%3D%26with+spaces"))
            .await,
        Ok(())
    );
}

#[test]
fn short_shared_secrets_are_refused() {
    assert!(PushAuth::shared_secret(SecretString::from("short")).is_err());
    assert!(PushAuth::shared_secret(SecretString::from("x".repeat(16))).is_ok());
    let debug = format!("{:?}", secret_auth());
    assert!(!debug.contains(SECRET), "{debug}");
}

fn oidc_auth_with_unreachable_keys() -> PushAuth {
    PushAuth::google_oidc(
        Some("http://127.0.0.1:9/certs"),
        "https://audit.example/push/audit-events",
        "push@p.iam.gserviceaccount.com",
    )
    .unwrap()
}

fn rs256_shaped_token() -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"1"}"#);
    format!("{header}.{claims}.AAAA")
}

#[tokio::test]
async fn google_oidc_needs_exactly_one_bearer_token() {
    let auth = oidc_auth_with_unreachable_keys();
    let with_auth = |values: &[&str]| {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        headers
    };
    let token = rs256_shaped_token();
    for headers in [
        HeaderMap::new(),
        with_auth(&["Basic dXNlcjpwYXNz"]),
        with_auth(&["Bearer"]),
        with_auth(&["Bearer not.a.jwt"]),
        with_auth(&["Bearer eyJhbGciOiJub25lIn0.e30."]),
        with_auth(&[&format!("Bearer {token}"), &format!("Bearer {token}")]),
    ] {
        assert!(
            matches!(
                auth.authenticate(&headers, None).await,
                Err(AuthFailure::Rejected(_))
            ),
            "{headers:?}"
        );
    }
    // The shared secret is not accepted in production mode.
    let query = format!("token={SECRET}");
    assert!(
        auth.authenticate(&HeaderMap::new(), Some(&query))
            .await
            .is_err()
    );
    // A well-formed token whose keys cannot be fetched now: transient, so Pub/Sub retries.
    assert_eq!(
        auth.authenticate(&with_auth(&[&format!("bearer {token}")]), None)
            .await,
        Err(AuthFailure::Unavailable)
    );
}

type HandlerOutcome = fn() -> Result<(), PushError>;

/// A handler that counts its calls and answers with `outcome`.
fn counting(calls: &Arc<AtomicUsize>, outcome: HandlerOutcome) -> impl PushHandler {
    let calls = calls.clone();
    move |delivery: Delivery| {
        let calls = calls.clone();
        async move {
            assert_eq!(delivery.message_id, "1");
            calls.fetch_add(1, Ordering::SeqCst);
            outcome()
        }
    }
}

async fn post(router: &Router, uri: &str, content_type: &str, body: &str) -> Response {
    router
        .clone()
        .oneshot(
            HttpRequest::post(uri)
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body.to_owned()))
                .unwrap(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn the_route_answers_204_only_after_the_handler_succeeds() {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = route("jobs", secret_auth(), counting(&calls, || Ok(())));
    let authed = format!("/push/jobs?token={SECRET}");

    let response = post(&router, &authed, "application/json", EMULATOR_BODY).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let response = post(
        &router,
        &authed,
        "application/json; charset=utf-8",
        EMULATOR_BODY,
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Unauthenticated: 401 before the body is looked at, and nothing handled.
    for uri in ["/push/jobs", "/push/jobs?token=wrong"] {
        for body in [EMULATOR_BODY, "garbage"] {
            let response = post(&router, uri, "application/json", body).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{uri}");
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                runwarden_platform::problem::CONTENT_TYPE
            );
        }
    }
    // Malformed: 400, nothing handled.
    for body in ["garbage", r#"{"message":{"messageId":"1","data":"%%"}}"#] {
        let response = post(&router, &authed, "application/json", body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let response = post(&router, &authed, "text/plain", EMULATOR_BODY).await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Another topic is not this route.
    let other = format!("/push/other?token={SECRET}");
    let response = post(&router, &other, "application/json", EMULATOR_BODY).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn handler_failures_map_to_400_503_and_500() {
    let calls = Arc::new(AtomicUsize::new(0));
    let authed = format!("/push/jobs?token={SECRET}");
    let cases: [(HandlerOutcome, StatusCode); 4] = [
        (
            || Err(PushError::malformed("bad payload")),
            StatusCode::BAD_REQUEST,
        ),
        (
            || Err(PushError::transient("db down")),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            || Err(PushError::from(sqlx::Error::PoolTimedOut)),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            || Err(PushError::Internal(anyhow::anyhow!("bug"))),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    ];
    for (outcome, status) in cases {
        let router = route("jobs", secret_auth(), counting(&calls, outcome));
        let response = post(&router, &authed, "application/json", EMULATOR_BODY).await;
        assert_eq!(response.status(), status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(response.headers().contains_key(header::RETRY_AFTER));
        }
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(!body.contains("db down") && !body.contains("bug"), "{body}");
    }
}

#[tokio::test]
async fn unavailable_signing_keys_answer_503_and_handle_nothing() {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = route(
        "jobs",
        oidc_auth_with_unreachable_keys(),
        counting(&calls, || Ok(())),
    );
    let response = router
        .clone()
        .oneshot(
            HttpRequest::post("/push/jobs")
                .header(header::CONTENT_TYPE, "application/json")
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", rs256_shaped_token()),
                )
                .body(Body::from(EMULATOR_BODY))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
