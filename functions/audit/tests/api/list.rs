//! `GET /v1/orgs/{org}/audit-events`: filters, newest-first cursor pagination, the clamped
//! limit, and refused query parameters.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use futures::future::join_all;
use reqwest::StatusCode;
use runwarden_events::{Actor, Target};
use runwarden_tenancy::Role;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{event, spawn_app};

fn seqs(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["seq"].as_i64().unwrap())
        .collect()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn filters_select_by_actor_action_target_and_time(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    let admin = app.member(org, Role::Admin).await;
    let alice = Uuid::now_v7().to_string();
    let project = Uuid::now_v7().to_string();
    let t0: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
    // seq: 1 alice member.add user; 2 alice project.update project; 3 bob project.update
    // project; 4 alice project.delete other project; at t0 + 0..3 hours.
    let specs = [
        (&alice, "member.add", "user", Uuid::now_v7().to_string()),
        (&alice, "project.update", "project", project.clone()),
        (
            &"bob".to_owned(),
            "project.update",
            "project",
            project.clone(),
        ),
        (
            &alice,
            "project.delete",
            "project",
            Uuid::now_v7().to_string(),
        ),
    ];
    for (hour, (actor, action, target_type, target_id)) in specs.iter().enumerate() {
        let mut e = event(org, action);
        e.actor = Actor::user(actor);
        e.target = Target::new(target_type, target_id);
        e.time = t0 + Duration::hours(hour as i64);
        assert_eq!(app.push(&e).await, StatusCode::NO_CONTENT);
    }
    // Another org's matching event never shows.
    let other = app.org().await;
    let mut foreign = event(other, "project.update");
    foreign.actor = Actor::user(&alice);
    assert_eq!(app.push(&foreign).await, StatusCode::NO_CONTENT);

    let base = format!("/v1/orgs/{org}/audit-events");
    let cases: Vec<(String, Vec<i64>)> = vec![
        (String::new(), vec![4, 3, 2, 1]),
        (format!("?actor={alice}"), vec![4, 2, 1]),
        ("?action=project.update".into(), vec![3, 2]),
        ("?target_type=project".into(), vec![4, 3, 2]),
        (format!("?target_id={project}"), vec![3, 2]),
        (
            format!("?target_type=project&target_id={project}&actor={alice}"),
            vec![2],
        ),
        ("?from=2026-11-01T01:00:00Z".into(), vec![4, 3, 2]),
        ("?to=2026-11-01T02:00:00Z".into(), vec![2, 1]),
        (
            "?from=2026-11-01T01:00:00Z&to=2026-11-01T03:00:00Z".into(),
            vec![3, 2],
        ),
        // Offsets are honoured: 03:00+02:00 is 01:00Z.
        ("?from=2026-11-01T03:00:00%2B02:00".into(), vec![4, 3, 2]),
        ("?action=nothing.here".into(), vec![]),
        ("?actor=".into(), vec![4, 3, 2, 1]),
    ];
    for (query, expected) in cases {
        let (status, page) = app.get(&format!("{base}{query}"), &admin.token).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert_eq!(seqs(&page), expected, "{query}");
        assert_eq!(page["next_cursor"], Value::Null, "{query}");
    }

    for (query, code) in [
        ("?from=yesterday", "invalid_time"),
        ("?to=2026-11-01", "invalid_time"),
        ("?cursor=abc", "invalid_cursor"),
        ("?cursor=-1", "invalid_cursor"),
        ("?limit=ten", "invalid_limit"),
        ("?org_id=x", "invalid_query"),
        ("?action=a&action=b", "invalid_query"),
    ] {
        let (status, body) = app.get(&format!("{base}{query}"), &admin.token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["code"], code, "{query}");
    }
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn pages_run_newest_first_with_a_clamped_limit(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    let admin = app.member(org, Role::Admin).await;
    let events: Vec<_> = (0..205).map(|_| event(org, "project.update")).collect();
    for chunk in events.chunks(20) {
        let statuses = join_all(chunk.iter().map(|e| app.push(e))).await;
        assert!(statuses.iter().all(|s| *s == StatusCode::NO_CONTENT));
    }
    let base = format!("/v1/orgs/{org}/audit-events");

    // Default 50; at most 100 (the platform's one limit policy); at least 1.
    for (query, len) in [
        ("", 50),
        ("?limit=1000", 100),
        ("?limit=0", 1),
        ("?limit=-5", 1),
        ("?limit=7", 7),
    ] {
        let (status, page) = app.get(&format!("{base}{query}"), &admin.token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(seqs(&page).len(), len, "{query}");
        assert_eq!(seqs(&page)[0], 205, "{query}: newest first");
    }

    // Walk all pages of 60: every record exactly once, in descending seq.
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("{base}?limit=60&cursor={c}"),
            None => format!("{base}?limit=60"),
        };
        let (status, page) = app.get(&query, &admin.token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        all.extend(seqs(&page));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(all, (1..=205).rev().collect::<Vec<i64>>());
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 205);

    // A filter and the cursor together; an exact last page has no next cursor.
    let (_, page) = app
        .get(&format!("{base}?limit=5&cursor=6"), &admin.token)
        .await;
    assert_eq!(seqs(&page), vec![5, 4, 3, 2, 1]);
    assert_eq!(page["next_cursor"], Value::Null);
}
