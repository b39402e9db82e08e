//! `GET /v1/orgs/{org}/audit-events/export`: the whole chain as streamed NDJSON, accepted by
//! the offline verifier, which also rejects what is not a chain.

use futures::StreamExt;
use futures::future::join_all;
use reqwest::StatusCode;
use runwarden_audit::chain::Record;
use runwarden_audit::offline::verify_export;
use runwarden_audit::{ingest, store};
use runwarden_tenancy::Role;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{event, offline_verify, spawn_app};

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn the_export_streams_the_whole_chain_and_verifies_offline(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    let admin = app.member(org, Role::Admin).await;
    // More than two of the export's internal pages (500 records each), appended through the
    // same code path the push route uses.
    const N: usize = 1203;
    let events: Vec<_> = (0..N)
        .map(|i| event(org, &format!("project.step{}", i % 7)))
        .collect();
    for chunk in events.chunks(16) {
        let results = join_all(chunk.iter().map(|e| {
            let pool = app.runtime.clone();
            let valid = ingest::validate(e.clone()).unwrap();
            async move { store::append(&pool, &valid).await }
        }))
        .await;
        assert!(results.iter().all(Result::is_ok));
    }
    // Another org's records are not in it.
    assert_eq!(
        app.push(&event(app.org().await, "org.update")).await,
        StatusCode::NO_CONTENT
    );

    let response = app
        .client
        .get(app.url(&format!("/v1/orgs/{org}/audit-events/export")))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment"),
    );
    // Streamed: no Content-Length, sent in chunks.
    assert!(response.headers().get("content-length").is_none());
    let mut chunks = 0;
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
        chunks += 1;
    }
    assert!(chunks >= 3, "{chunks} chunks");
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with('\n'));
    let records: Vec<Record> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), N);
    assert!(records.iter().all(|r| r.org_id == org));
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=N as i64).collect::<Vec<_>>()
    );

    // The offline verifier (the built binary, and its library function) accepts it with the
    // API's head.
    let verdict = app.verify(org, &admin.token).await;
    assert_eq!(verdict["count"], N);
    let (code, offline) = offline_verify(&text, &[]);
    assert_eq!(code, 0, "{offline}");
    assert_eq!(offline, verdict);
    let in_process = verify_export(text.as_bytes(), &[]).unwrap();
    assert_eq!(serde_json::to_value(in_process).unwrap(), verdict);

    // Reordered, truncated at the front, or with a line that is not a record: refused.
    let lines: Vec<&str> = text.lines().collect();
    let swapped = [lines[1], lines[0]].join("\n");
    assert_eq!(
        offline_verify(&swapped, &[]).1["broken_at"]["reason"],
        "seq_gap"
    );
    let headless = lines[1..].join("\n");
    assert_eq!(offline_verify(&headless, &[]).1["broken_at"]["seq"], 2);
    let garbage = format!("{}\n{{\"seq\": 2, \"hello\": 1}}\n", lines[0]);
    let (code, out) = offline_verify(&garbage, &[]);
    assert_eq!(
        (code, &out["broken_at"]["reason"]),
        (1, &"unreadable".into())
    );
    assert_eq!(out["broken_at"]["seq"], 2);

    // An empty chain exports nothing and verifies as empty.
    let empty = app.org().await;
    let empty_admin = app.member(empty, Role::Owner).await;
    assert_eq!(app.export(empty, &empty_admin.token).await, "");
    let (code, out) = offline_verify("", &[]);
    assert_eq!((code, &out["count"]), (0, &0.into()));
    assert_eq!(
        app.verify(empty, &empty_admin.token).await["head"],
        "0".repeat(64)
    );
}

#[test]
fn the_offline_verifier_reports_usage_errors_with_exit_2() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_audit-verify"))
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(run(&["/no/such/file.ndjson"]).status.code(), Some(2));
    assert_eq!(run(&["--anchor", "x"]).status.code(), Some(2));
    assert_eq!(run(&["a", "b"]).status.code(), Some(2));
    assert_eq!(run(&["--help"]).status.code(), Some(0));
}
