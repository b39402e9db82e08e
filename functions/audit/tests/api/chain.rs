//! The chain under concurrency and under attack: concurrent and out-of-order pushes keep one
//! linear chain per org; an edited, deleted or forged record is reported by the verify
//! endpoint and by the offline verifier (the built `audit-verify` binary) on an export.

use chrono::{Duration, Utc};
use futures::future::join_all;
use reqwest::StatusCode;
use runwarden_audit::chain::{self, GENESIS, Record};
use runwarden_tenancy::{OrgId, Role};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{TestApp, event, offline_verify, spawn_app};

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn concurrent_and_out_of_order_pushes_keep_one_linear_chain_per_org(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org_a = app.org().await;
    let org_b = app.org().await;
    let admin_a = app.member(org_a, Role::Admin).await;
    let admin_b = app.member(org_b, Role::Admin).await;
    // Events whose own times run backwards, interleaved across two orgs, all at once.
    let now = Utc::now();
    let events: Vec<_> = (0..60)
        .map(|i| {
            let org = if i % 3 == 0 { org_b } else { org_a };
            let mut e = event(org, "project.update");
            e.time = now - Duration::seconds(i);
            e
        })
        .collect();
    let statuses = join_all(events.iter().map(|e| app.push(e))).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::NO_CONTENT),
        "{statuses:?}"
    );

    for (org, admin, expected) in [(org_a, &admin_a, 40), (org_b, &admin_b, 20)] {
        let seqs: Vec<i64> = app.seqs(org).await.into_iter().map(|(s, _)| s).collect();
        assert_eq!(seqs, (1..=expected).collect::<Vec<i64>>(), "contiguous");
        let verdict = app.verify(org, &admin.token).await;
        assert_eq!(verdict["ok"], true, "{verdict}");
        assert_eq!(verdict["count"], expected);
        let (code, offline) = offline_verify(&app.export(org, &admin.token).await, &[]);
        assert_eq!((code, &offline["head"]), (0, &verdict["head"]));
    }
}

/// An org with five records, its admin, and the records as exported.
async fn five_records(app: &TestApp) -> (OrgId, String, Vec<Record>) {
    let org = app.org().await;
    let admin = app.member(org, Role::Admin).await;
    for i in 0..5 {
        let e = event(org, &format!("project.step{i}"));
        assert_eq!(app.push(&e).await, StatusCode::NO_CONTENT);
    }
    let export = app.export(org, &admin.token).await;
    let records: Vec<Record> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 5);
    (org, admin.token, records)
}

/// Checks that the API and the offline verifier both report `seq` with `reason`.
async fn assert_broken_at(app: &TestApp, org: OrgId, token: &str, seq: i64, reason: &str) {
    let verdict = app.verify(org, token).await;
    assert_eq!(verdict["ok"], false, "{verdict}");
    assert_eq!(verdict["broken_at"]["seq"], seq, "{verdict}");
    assert_eq!(verdict["broken_at"]["reason"], reason, "{verdict}");
    assert!(verdict["broken_at"]["event_id"].is_string());
    let (code, offline) = offline_verify(&app.export(org, token).await, &[]);
    assert_eq!(code, 1, "{offline}");
    assert_eq!(offline["ok"], false);
    assert_eq!(offline["broken_at"]["seq"], seq, "{offline}");
    assert_eq!(offline["broken_at"]["reason"], reason, "{offline}");
    assert_eq!(offline["count"], verdict["count"]);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn an_edited_record_is_reported(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let (org, token, records) = five_records(&app).await;
    let (code, offline) = offline_verify(&app.export(org, &token).await, &[]);
    assert_eq!((code, &offline["count"]), (0, &Value::from(5)));

    // As the superuser (the runtime role cannot): rewrite what record 3 says happened.
    sqlx::query("UPDATE audit_log SET action = 'project.nothing' WHERE org_id = $1 AND seq = 3")
        .bind(org)
        .execute(&app.admin)
        .await
        .unwrap();
    assert_broken_at(&app, org, &token, 3, "hash_mismatch").await;
    assert_eq!(
        app.verify(org, &token).await["broken_at"]["event_id"],
        records[2].event_id.to_string()
    );

    // Re-hashing the edited record only moves the break to the next link.
    let mut edited = records[2].clone();
    edited.action = "project.nothing".into();
    let edited = edited.seal();
    sqlx::query("UPDATE audit_log SET hash = $2 WHERE org_id = $1 AND seq = 3")
        .bind(org)
        .bind(edited.hash.as_slice())
        .execute(&app.admin)
        .await
        .unwrap();
    assert_broken_at(&app, org, &token, 4, "prev_hash_mismatch").await;
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn edits_of_details_time_and_actor_are_reported(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    for edit in [
        "details = '{\"from\":\"member\",\"to\":\"owner\"}'",
        "details = 'not json'",
        "occurred_at = occurred_at + interval '1 microsecond'",
        "actor_id = 'someone-else'",
        "ip = NULL",
    ] {
        let (org, token, _) = five_records(&app).await;
        sqlx::query(&format!(
            "UPDATE audit_log SET {edit} WHERE org_id = $1 AND seq = 2"
        ))
        .bind(org)
        .execute(&app.admin)
        .await
        .unwrap();
        assert_broken_at(&app, org, &token, 2, "hash_mismatch").await;
    }
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn a_deleted_record_is_reported(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let (org, token, records) = five_records(&app).await;
    sqlx::query("DELETE FROM audit_log WHERE org_id = $1 AND seq = 3")
        .bind(org)
        .execute(&app.admin)
        .await
        .unwrap();
    // The record after the gap is the one reported.
    assert_broken_at(&app, org, &token, 4, "seq_gap").await;

    // Deleting the first record breaks at the new first one.
    let (org, token, _) = five_records(&app).await;
    sqlx::query("DELETE FROM audit_log WHERE org_id = $1 AND seq = 1")
        .bind(org)
        .execute(&app.admin)
        .await
        .unwrap();
    assert_broken_at(&app, org, &token, 2, "seq_gap").await;

    // Deleting the last record leaves a valid, shorter chain: only a head kept from before
    // shows it (the offline verifier's --anchor).
    let (org, token, _) = five_records(&app).await;
    let before = app.verify(org, &token).await;
    let head = before["head"].as_str().unwrap().to_owned();
    sqlx::query("DELETE FROM audit_log WHERE org_id = $1 AND seq = 5")
        .bind(org)
        .execute(&app.admin)
        .await
        .unwrap();
    assert_eq!(app.verify(org, &token).await["count"], 4);
    let export = app.export(org, &token).await;
    let (code, offline) = offline_verify(&export, &["--anchor", &format!("5:{head}")]);
    assert_eq!(code, 1, "{offline}");
    assert_eq!(offline["broken_at"]["reason"], "truncated");
    let fourth = records_hash(&export, 4);
    let (code, _) = offline_verify(&export, &["--anchor", &format!("4:{fourth}")]);
    assert_eq!(code, 0);
    drop(records);
}

fn records_hash(export: &str, seq: i64) -> String {
    export
        .lines()
        .map(|l| serde_json::from_str::<Record>(l).unwrap())
        .find(|r| r.seq == seq)
        .map(|r| chain::to_hex(&r.hash))
        .unwrap()
}

/// Inserts `record` as the superuser.
async fn insert_raw(app: &TestApp, r: &Record) {
    sqlx::query(
        "INSERT INTO audit_log (org_id, seq, event_id, occurred_at, created_at, actor_kind,
             actor_id, action, target_type, target_id, outcome, request_id, ip, user_agent,
             details, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(r.org_id)
    .bind(r.seq)
    .bind(r.event_id)
    .bind(r.time)
    .bind(r.created_at)
    .bind(&r.actor.kind)
    .bind(&r.actor.id)
    .bind(&r.action)
    .bind(&r.target.kind)
    .bind(&r.target.id)
    .bind(&r.outcome)
    .bind(&r.request_id)
    .bind(&r.ip)
    .bind(&r.user_agent)
    .bind(r.details.to_string())
    .bind(r.prev_hash.as_slice())
    .bind(r.hash.as_slice())
    .execute(&app.admin)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn a_forged_record_is_reported(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;

    // Appended after the head, linked correctly, but with a hash that is not its own.
    let (org, token, records) = five_records(&app).await;
    let mut forged = records[4].clone();
    forged.seq = 6;
    forged.event_id = uuid::Uuid::now_v7();
    forged.action = "org.transfer".into();
    forged.prev_hash = records[4].hash;
    forged.hash = chain::link_hash(&GENESIS, "made up");
    insert_raw(&app, &forged).await;
    assert_broken_at(&app, org, &token, 6, "hash_mismatch").await;

    // Sealed properly but not linked to the chain.
    let (org, token, records) = five_records(&app).await;
    let mut forged = records[4].clone();
    forged.seq = 6;
    forged.event_id = uuid::Uuid::now_v7();
    forged.prev_hash = chain::link_hash(&GENESIS, "another chain");
    let forged = forged.seal();
    insert_raw(&app, &forged).await;
    assert_broken_at(&app, org, &token, 6, "prev_hash_mismatch").await;

    // A record moved in from another org's chain.
    let (org, token, _) = five_records(&app).await;
    let (_, _, theirs) = five_records(&app).await;
    sqlx::query("UPDATE audit_log SET org_id = $1, seq = 6 WHERE event_id = $2")
        .bind(org)
        .bind(theirs[4].event_id)
        .execute(&app.admin)
        .await
        .unwrap();
    assert_broken_at(&app, org, &token, 6, "prev_hash_mismatch").await;
}
