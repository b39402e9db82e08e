//! `POST /push/audit-events` with the local shared secret: what is appended, what is
//! refused (401 unauthenticated, 400 malformed: nothing written either way), and redelivery
//! (REL-01, REL-05: one record however often and however concurrently an event arrives).

use futures::future::join_all;
use reqwest::StatusCode;
use runwarden_audit::chain::{GENESIS, Record};
use runwarden_events::AuditEvent;
use runwarden_tenancy::{OrgId, Role};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{PUSH_PATH, PUSH_SECRET, TestApp, envelope, event, event_envelope, spawn_app};

async fn records(app: &TestApp, org: OrgId, token: &str) -> Vec<Record> {
    app.export(org, token)
        .await
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn a_push_with_the_local_secret_appends_the_event(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    let admin = app.member(org, Role::Admin).await;
    let e = event(org, "member.role_change");
    assert_eq!(app.push(&e).await, StatusCode::NO_CONTENT);

    let stored = records(&app, org, &admin.token).await;
    assert_eq!(stored.len(), 1);
    let r = &stored[0];
    assert_eq!((r.org_id, r.seq, r.event_id), (org, 1, e.id));
    assert_eq!(r.prev_hash, GENESIS);
    assert_eq!(r.hash, r.compute_hash());
    assert_eq!(r.action, "member.role_change");
    assert_eq!(r.actor.kind, "user");
    assert_eq!(r.actor.id, e.actor.id);
    assert_eq!(
        (r.target.kind.as_str(), r.target.id.as_str()),
        ("user", e.target.id.as_str())
    );
    assert_eq!(r.outcome, "success");
    assert_eq!(r.request_id, e.request_id);
    assert_eq!(r.ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(r.user_agent, e.user_agent);
    assert_eq!(r.details, json!({"from": "member", "to": "admin"}));
    assert_eq!(r.time.timestamp_micros(), e.time.timestamp_micros());

    let verdict = app.verify(org, &admin.token).await;
    assert_eq!(verdict["ok"], true);
    assert_eq!(verdict["count"], 1);
    assert_eq!(verdict["head"], runwarden_audit::chain::to_hex(&r.hash));

    // A second event links to the first.
    assert_eq!(
        app.push(&event(org, "org.update")).await,
        StatusCode::NO_CONTENT
    );
    let stored = records(&app, org, &admin.token).await;
    assert_eq!(stored[1].seq, 2);
    assert_eq!(stored[1].prev_hash, stored[0].hash);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn a_push_without_the_right_token_is_401_and_writes_nothing(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    let admin = app.member(org, Role::Admin).await;
    let body = event_envelope(&event(org, "org.update"));
    let prefix = &PUSH_SECRET[..PUSH_SECRET.len() - 1];
    let cases: Vec<(String, Option<&str>)> = vec![
        (PUSH_PATH.to_owned(), None),
        (format!("{PUSH_PATH}?token="), None),
        (format!("{PUSH_PATH}?token=wrong"), None),
        (format!("{PUSH_PATH}?token={prefix}"), None),
        (format!("{PUSH_PATH}?token={PUSH_SECRET}x"), None),
        (format!("{PUSH_PATH}?token=x&token={PUSH_SECRET}"), None),
        // The secret as a bearer token, and a user's access token: neither is a push credential.
        (PUSH_PATH.to_owned(), Some(PUSH_SECRET)),
        (PUSH_PATH.to_owned(), Some(admin.token.as_str())),
    ];
    for (path, bearer) in cases {
        let (status, text) = app.post_json(&app.url(&path), bearer, &body).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} {bearer:?}: {text}"
        );
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["code"], "unauthenticated");
        assert!(!text.contains(PUSH_SECRET));
    }
    // Even a malformed body is 401 first.
    let (status, _) = app
        .post_json(&app.url(PUSH_PATH), None, &json!("garbage"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.count().await, 0);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn malformed_envelopes_and_payloads_are_400_and_write_nothing(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    let valid = serde_json::to_value(event(org, "org.update")).unwrap();
    let with = |patch: &dyn Fn(&mut Value)| {
        let mut v = valid.clone();
        patch(&mut v);
        envelope(&serde_json::to_vec(&v).unwrap(), "m-1")
    };
    let bodies = vec![
        ("not an envelope", json!({"hello": "world"})),
        ("no message id", json!({"message": {"data": "e30="}})),
        (
            "data not base64",
            json!({"message": {"messageId": "1", "data": "%%%"}}),
        ),
        ("no data", json!({"message": {"messageId": "1"}})),
        ("data not JSON", envelope(b"not json", "m")),
        ("data not an event", envelope(br#"{"hello":"world"}"#, "m")),
        ("unknown field", with(&|v| v["password"] = json!("hunter2"))),
        (
            "unknown actor field",
            with(&|v| v["actor"]["token"] = json!("t")),
        ),
        (
            "secret-looking details",
            with(&|v| v["details"] = json!({"api_key": "k"})),
        ),
        (
            "a JWT in details",
            with(&|v| v["details"] = json!({"note": "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxIn0.c2ln"})),
        ),
        ("bad action", with(&|v| v["action"] = json!("DROP TABLE"))),
        ("bad outcome", with(&|v| v["outcome"] = json!("maybe"))),
        (
            "NUL in target id",
            with(&|v| v["target"]["id"] = json!("a\u{0}b")),
        ),
    ];
    for (what, body) in bodies {
        let (status, text) = app.post_json(&app.push_url(), None, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {text}");
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["code"], "invalid_push", "{what}");
        assert!(!text.contains("hunter2"), "{what}: the value is not echoed");
    }
    // Not JSON at all, and not application/json.
    let response = app
        .client
        .post(app.push_url())
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = app
        .client
        .post(app.push_url())
        .header("content-type", "text/plain")
        .body(event_envelope(&event(org, "org.update")).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.count().await, 0);
}

/// REL-01 and REL-05: the same event delivered 5 times in a row and 5 times at once (as a
/// redelivery after an ack deadline would arrive while the first is still running): all 10
/// answers 2xx, exactly one record.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn redeliveries_in_sequence_and_at_once_record_one_event(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    let admin = app.member(org, Role::Admin).await;
    let e = event(org, "member.remove");
    for _ in 0..5 {
        assert_eq!(app.push(&e).await, StatusCode::NO_CONTENT);
    }
    let at_once: Vec<StatusCode> = join_all((0..5).map(|_| app.push(&e))).await;
    assert!(at_once.iter().all(|s| s.is_success()), "{at_once:?}");
    assert_eq!(app.seqs(org).await, vec![(1, e.id)]);

    // A brand-new event arriving 10 times at once: still one record.
    let fresh = event(org, "member.add");
    let statuses: Vec<StatusCode> = join_all((0..10).map(|_| app.push(&fresh))).await;
    assert!(statuses.iter().all(|s| s.is_success()), "{statuses:?}");
    assert_eq!(app.seqs(org).await, vec![(1, e.id), (2, fresh.id)]);
    assert_eq!(app.verify(org, &admin.token).await["ok"], true);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn an_event_id_already_recorded_for_another_org_is_not_recorded_again(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org_a = app.org().await;
    let org_b = app.org().await;
    let e = event(org_a, "org.update");
    assert_eq!(app.push(&e).await, StatusCode::NO_CONTENT);
    let replayed = AuditEvent {
        org_id: org_b,
        ..e.clone()
    };
    assert_eq!(app.push(&replayed).await, StatusCode::NO_CONTENT);
    assert_eq!(app.seqs(org_a).await, vec![(1, e.id)]);
    assert!(app.seqs(org_b).await.is_empty());
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn a_database_outage_is_503_so_pubsub_retries(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    // The app's pool is closed: every query fails as if the database were gone.
    app.runtime.close().await;
    let (status, text) = app
        .post_json(
            &app.push_url(),
            None,
            &event_envelope(&event(org, "org.update")),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert_eq!(app.count().await, 0);
}
