//! No value in any answer, event or row (CRY-01), and bad input refused with problem+json.

use super::*;

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn no_value_in_any_answer_event_or_row(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("team").await;
    let member = app.fx.member(org, Role::Member).await;
    let project = app.project(org, &member.token).await;

    let canaries: Vec<(String, &str, String)> = KINDS
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            (
                format!("CANARY_{i}"),
                *kind,
                format!("canary-{kind}-{}", Uuid::new_v4().simple()),
            )
        })
        .collect();
    let mut bodies = Vec::new();
    for (name, kind, value) in &canaries {
        for _ in 0..2 {
            let (status, body, _) = put_raw(
                &app,
                org,
                &project,
                &member.token,
                name,
                &json!({"kind": kind, "value": value}),
            )
            .await;
            assert!(status.is_success(), "{body}");
            bodies.push(body);
        }
        // Refusals never echo the value either.
        for body in [
            json!({"kind": "password", "value": value}),
            json!({"kind": kind, "value": value, "extra": 1}),
            json!({"kind": kind, "value": format!("{value}\u{0}")}),
            json!({"kind": kind, "value": value.repeat(65536 / value.len() + 1)}),
        ] {
            let (status, text, _) = put_raw(&app, org, &project, &member.token, name, &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
            bodies.push(text);
        }
        let (status, text, _) = put_raw(
            &app,
            org,
            &project,
            &member.token,
            "lower_case",
            &json!({"kind": kind, "value": value}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        bodies.push(text);
        bodies.push(
            text_of(
                &app,
                Method::GET,
                &secret_path(org, &project, name),
                &member.token,
            )
            .await,
        );
    }
    bodies.push(text_of(&app, Method::GET, &list_path(org, &project), &member.token).await);
    let runtime = app.fx.pool_as(runwarden_store::roles::RUNS, 1).await;
    runner_read(&runtime, &app.vault, org, &project)
        .await
        .unwrap();

    let outbox: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM outbox_events")
        .fetch_all(&app.fx.admin)
        .await
        .unwrap();
    assert!(outbox.len() >= 12, "{outbox:?}");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(table_name) FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&app.fx.admin)
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t == "project_secret_versions"));
    for (_, _, value) in &canaries {
        for body in &bodies {
            assert!(
                !body.contains(value.as_str()),
                "a response carried a value: {body}"
            );
        }
        for payload in &outbox {
            assert!(
                !payload.contains(value.as_str()),
                "an event carried a value: {payload}"
            );
        }
        // Every row of every table, as text (bytea as hex), holds neither the value nor its
        // hex: the plaintext never reached the database (CRY-01).
        let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
        for table in &tables {
            let hits: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM {table} t
                 WHERE strpos(t::text, $1) > 0 OR strpos(t::text, $2) > 0"
            ))
            .bind(value)
            .bind(&hex)
            .fetch_one(&app.fx.admin)
            .await
            .unwrap();
            assert_eq!(hits, 0, "{table} holds a value");
        }
    }

    // The layout: 0x01 || 96-bit nonce || ciphertext || 128-bit tag, one row per version,
    // and a wrapped data key under the ring's version.
    for (name, _, value) in &canaries {
        let versions = ciphertexts(&app.fx.admin, &project, name).await;
        assert_eq!(versions.len(), 2);
        for (_, ciphertext) in &versions {
            assert_eq!(ciphertext[0], 1);
            assert_eq!(ciphertext.len(), 1 + 12 + value.len() + 16);
        }
        assert_ne!(versions[0].1[1..13], versions[1].1[1..13], "fresh nonces");
    }
    let (version, wrapped): (String, Vec<u8>) =
        sqlx::query_as("SELECT kek_version, wrapped_key FROM org_data_keys WHERE org_id = $1")
            .bind(org)
            .fetch_one(&app.fx.admin)
            .await
            .unwrap();
    assert_eq!(version, "test");
    assert_eq!(wrapped.len(), 1 + 12 + 32 + 16);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn bad_input_is_refused_with_problem_json(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("team").await;
    let member = app.fx.member(org, Role::Member).await;
    let project = app.project(org, &member.token).await;
    let ok = json!({"kind": "api_key", "value": "v"});

    for name in ["lower", "1ABC", "A-B", "DB.PASSWORD", "É", &"A".repeat(65)] {
        let (status, _, problem) = put_raw(&app, org, &project, &member.token, name, &ok).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {problem}");
        assert_eq!(problem["code"], "invalid_secret_name", "{name}");
        assert_eq!(problem["status"], 400);
    }
    for (body, code) in [
        (
            json!({"kind": "password", "value": "v"}),
            "invalid_secret_kind",
        ),
        (
            json!({"kind": "API_KEY", "value": "v"}),
            "invalid_secret_kind",
        ),
        (
            json!({"kind": "api_key", "value": ""}),
            "invalid_secret_value",
        ),
        (
            json!({"kind": "api_key", "value": "a\u{0}b"}),
            "invalid_secret_value",
        ),
        (
            json!({"kind": "api_key", "value": "a".repeat(65537)}),
            "invalid_secret_value",
        ),
        (json!({"kind": "api_key"}), "invalid_body"),
        (json!({"value": "v"}), "invalid_body"),
        (json!({"kind": "api_key", "value": 7}), "invalid_body"),
        (
            json!({"kind": "api_key", "value": "v", "version": 9}),
            "invalid_body",
        ),
        (json!([]), "invalid_body"),
    ] {
        let (status, _, problem) = put_raw(&app, org, &project, &member.token, "GOOD", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert_eq!(problem["code"], code, "{body}");
    }
    // Exactly 64 KiB fits, as UTF-8 bytes and even when JSON escaping doubles the body.
    for (name, value) in [
        ("ASCII", "a".repeat(65536)),
        ("TWO_BYTE", "é".repeat(32768)),
        ("QUOTES", "\"".repeat(65536)),
    ] {
        let (status, _, body) = put_raw(
            &app,
            org,
            &project,
            &member.token,
            name,
            &json!({"kind": "auth_cookie", "value": value}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
    }
    // A body far past any value is cut off before it is read.
    let (status, _, problem) = put_raw(
        &app,
        org,
        &project,
        &member.token,
        "HUGE",
        &json!({"kind": "api_key", "value": "a".repeat(400 * 1024)}),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    assert_eq!(problem["code"], "body_too_large");

    // Reading a name that cannot exist, or a malformed project: 404.
    for path in [
        secret_path(org, &project, "lower"),
        secret_path(org, "not-a-uuid", "GOOD"),
        list_path(org, "not-a-uuid"),
        list_path(org, &Uuid::now_v7().to_string()),
    ] {
        let (status, _) = app.call(Method::GET, &path, &member.token, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = put(
        &app,
        org,
        &Uuid::now_v7().to_string(),
        &member.token,
        "GOOD",
        "api_key",
        "v",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no such project");
    for query in ["?cursor=lower", "?limit=many", "?offset=1"] {
        let path = format!("{}{query}", list_path(org, &project));
        let (status, problem) = app.call(Method::GET, &path, &member.token, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
    }
}
