//! Key rotation re-wraps data keys and never touches ciphertexts (CRY-06); production
//! refuses to start without a valid key ring (CRY-05).

use super::*;

fn meta() -> RequestMeta {
    RequestMeta {
        request_id: Some("test".into()),
        ip: None,
        user_agent: None,
    }
}

/// A Member's context in `org`, for calling `secrets` directly.
async fn member_ctx(app: &TestApp, org: OrgId) -> OrgContext {
    let caller = app.fx.member(org, Role::Member).await;
    OrgContext {
        principal: Principal {
            user_id: caller.user_id.into(),
            session_id: caller.session_id.into(),
        },
        org_id: org,
        role: Role::Member,
    }
}

/// Writes `value` as a new version of `name`, with `ring`, as the runtime role.
async fn put_with(
    runtime: &PgPool,
    ring: &KeyRing,
    ctx: &OrgContext,
    project: &str,
    name: &str,
    value: &str,
) -> RunsResult<i32> {
    let mut tx = begin_org_tx(runtime, ctx.org_id, None).await.unwrap();
    let (meta_out, _) = secrets::put(
        &mut tx,
        ring,
        &meta(),
        ctx,
        project.parse().unwrap(),
        &SecretName::parse(name).unwrap(),
        SecretKind::SecretVariable,
        &SecretValue::parse(SecretString::from(value)).unwrap(),
    )
    .await?;
    tx.commit().await.unwrap();
    Ok(meta_out.version)
}

async fn kek_versions(admin: &PgPool) -> Vec<(Uuid, String)> {
    sqlx::query_as("SELECT org_id, kek_version FROM org_data_keys ORDER BY org_id")
        .fetch_all(admin)
        .await
        .unwrap()
}

fn ring(entries: &[(&str, &SecretString)], active: &str) -> KeyRing {
    let keks: Vec<String> = entries
        .iter()
        .map(|(v, k)| format!("{v}:{}", k.expose_secret()))
        .collect();
    KeyRing::parse(&keks.join(","), active).unwrap()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn rotation_rewraps_data_keys_and_never_touches_ciphertexts(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options.clone()).await;
    let runtime = app.fx.pool_as(runwarden_store::roles::RUNS, 2).await;
    let admin = &app.fx.admin;
    let (k1, k2, k3) = (
        generate_kek_base64(),
        generate_kek_base64(),
        generate_kek_base64(),
    );
    let v1 = ring(&[("v1", &k1)], "v1");
    let both = ring(&[("v1", &k1), ("v2", &k2)], "v2");
    let v2 = ring(&[("v2", &k2)], "v2");

    // Two orgs written under v1.
    let mut orgs = Vec::new();
    for i in 0..2 {
        let org = app.fx.org_on("team").await;
        let ctx = member_ctx(&app, org).await;
        let project = app
            .project(org, &app.fx.member(org, Role::Owner).await.token)
            .await;
        put_with(&runtime, &v1, &ctx, &project, "TOKEN", &format!("old-{i}"))
            .await
            .unwrap();
        orgs.push((org, ctx, project));
    }
    let before: Vec<(String, i32, Vec<u8>)> = sqlx::query_as(
        "SELECT name, version, ciphertext FROM project_secret_versions ORDER BY project_id, name, version",
    )
    .fetch_all(admin)
    .await
    .unwrap();

    // During the rotation {v1 decrypt-only, v2 active}: old rows read, new rows are v2's.
    let newcomer = app.fx.org_on("team").await;
    let newcomer_ctx = member_ctx(&app, newcomer).await;
    let newcomer_project = app
        .project(newcomer, &app.fx.member(newcomer, Role::Owner).await.token)
        .await;
    put_with(
        &runtime,
        &both,
        &newcomer_ctx,
        &newcomer_project,
        "TOKEN",
        "new",
    )
    .await
    .unwrap();
    for (i, (org, ctx, project)) in orgs.iter().enumerate() {
        let read = runner_read(&runtime, &both, *org, project).await.unwrap();
        assert_eq!(read[0].value.expose_secret(), format!("old-{i}"));
        // Writing a new version with the new ring still uses the org's (v1-wrapped) key.
        assert_eq!(
            put_with(&runtime, &both, ctx, project, "TOKEN", &format!("old-{i}"))
                .await
                .unwrap(),
            2
        );
    }
    let mut expected: Vec<(Uuid, String)> = orgs
        .iter()
        .map(|(o, _, _)| (o.as_uuid(), "v1".to_owned()))
        .chain([(newcomer.as_uuid(), "v2".to_owned())])
        .collect();
    expected.sort();
    assert_eq!(kek_versions(admin).await, expected);

    // A ring whose v2 is another key cannot re-wrap anything, and changes nothing.
    let wrong = ring(&[("v1", &k3), ("v2", &k2)], "v2");
    assert!(secrets::rewrap_data_keys(&runtime, &wrong).await.is_err());
    assert_eq!(kek_versions(admin).await, expected);

    // The re-wrap job: the two v1 keys, then nothing left to do.
    assert_eq!(secrets::rewrap_data_keys(&runtime, &both).await.unwrap(), 2);
    assert_eq!(secrets::rewrap_data_keys(&runtime, &both).await.unwrap(), 0);
    assert!(
        kek_versions(admin)
            .await
            .iter()
            .all(|(_, version)| version == "v2")
    );
    let rotated: i64 =
        sqlx::query_scalar("SELECT count(*) FROM org_data_keys WHERE rotated_at IS NOT NULL")
            .fetch_one(admin)
            .await
            .unwrap();
    assert_eq!(rotated, 2);
    for (org, _, _) in &orgs {
        let events = app.fx.audit_events(*org, "data_key.rewrap").await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["actor"]["kind"], "system");
        assert_eq!(events[0]["details"], json!({"from": "v1", "to": "v2"}));
    }

    // Ciphertexts: not one byte changed by the rotation (only the versions added above).
    let after: Vec<(String, i32, Vec<u8>)> = sqlx::query_as(
        "SELECT name, version, ciphertext FROM project_secret_versions ORDER BY project_id, name, version",
    )
    .fetch_all(admin)
    .await
    .unwrap();
    for row in &before {
        assert!(
            after.contains(row),
            "ciphertext of {} v{} changed",
            row.0,
            row.1
        );
    }

    // v1 dropped from the ring: everything still reads; a ring of v1 alone reads nothing.
    for (i, (org, _, project)) in orgs.iter().enumerate() {
        let read = runner_read(&runtime, &v2, *org, project).await.unwrap();
        assert_eq!(values(&read), [("TOKEN".to_owned(), 2, format!("old-{i}"))]);
        assert!(matches!(
            runner_read(&runtime, &v1, *org, project).await,
            Err(RunsError::Api(ApiError::Internal(_)))
        ));
    }
    let read = runner_read(&runtime, &v2, newcomer, &newcomer_project)
        .await
        .unwrap();
    assert_eq!(read[0].value.expose_secret(), "new");

    // The vault-rotate job does the same from the environment, to a third key.
    let url = format!(
        "postgres://{}@{}:{}/{}",
        runwarden_store::roles::RUNS,
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap()
    );
    let keks = format!("v2:{},v3:{}", k2.expose_secret(), k3.expose_secret());
    let out = run_bin(
        env!("CARGO_BIN_EXE_vault-rotate"),
        &[
            ("DATABASE_URL", &url),
            ("VAULT_KEKS", &keks),
            ("VAULT_KEK_ACTIVE", "v3"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("3 data keys re-wrapped under v3"),
        "{}",
        stderr(&out)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(k2.expose_secret()));
    let v3 = ring(&[("v3", &k3)], "v3");
    for (i, (org, _, project)) in orgs.iter().enumerate() {
        let read = runner_read(&runtime, &v3, *org, project).await.unwrap();
        assert_eq!(read[0].value.expose_secret(), format!("old-{i}"));
    }
    // Without its keys the job refuses to run (exit 2, naming the variable).
    let out = run_bin(
        env!("CARGO_BIN_EXE_vault-rotate"),
        &[("DATABASE_URL", &url)],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("VAULT_KEKS"), "{}", stderr(&out));
}

/// Runs a binary of this crate with exactly `env`, for at most 20 s.
async fn run_bin(bin: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.env_clear().kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{bin} with {env:?} still running after 20 s"))
        .unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn production_refuses_to_start_without_a_valid_key_ring() {
    let runs = env!("CARGO_BIN_EXE_runs");
    let good = generate_kek_base64();
    let good = good.expose_secret();
    let short = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg=="; // 31 bytes
    let zeros = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; // 32 zero bytes
    let prod = ("RUNWARDEN_ENV", "production");
    let one = format!("v1:{good}");
    let (short_entry, zeros_entry) = (format!("v1:{short}"), format!("v1:{zeros}"));
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "VAULT_KEKS"),
        (
            vec![("VAULT_KEKS", ""), ("VAULT_KEK_ACTIVE", "v1")],
            "VAULT_KEKS",
        ),
        (vec![("VAULT_KEKS", &one)], "VAULT_KEK_ACTIVE"),
        (
            vec![("VAULT_KEKS", &one), ("VAULT_KEK_ACTIVE", "v2")],
            "VAULT_KEK_ACTIVE",
        ),
        (
            vec![("VAULT_KEKS", good), ("VAULT_KEK_ACTIVE", "v1")],
            "VAULT_KEKS",
        ),
        (
            vec![("VAULT_KEKS", &short_entry), ("VAULT_KEK_ACTIVE", "v1")],
            "VAULT_KEKS",
        ),
        (
            vec![("VAULT_KEKS", &zeros_entry), ("VAULT_KEK_ACTIVE", "v1")],
            "VAULT_KEKS",
        ),
        (
            vec![
                ("VAULT_KEKS", "v1:not-base64!!"),
                ("VAULT_KEK_ACTIVE", "v1"),
            ],
            "VAULT_KEKS",
        ),
    ];
    for (vars, named) in cases {
        let env: Vec<(&str, &str)> = [prod].into_iter().chain(vars).collect();
        let out = run_bin(runs, &env).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains("configuration error"), "{err}");
        assert!(err.contains(named), "{env:?} should name {named}: {err}");
        for key in [good, short, zeros] {
            assert!(!err.contains(key), "the key leaked: {err}");
        }
    }
    // With a valid ring, production gets past the vault (and stops at the next variable).
    let keks = format!("v1:{good}");
    let out = run_bin(
        runs,
        &[prod, ("VAULT_KEKS", &keks), ("VAULT_KEK_ACTIVE", "v1")],
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("VAULT_"), "{err}");
    assert!(!err.contains(good), "{err}");
    // Development needs no ring (a throwaway is made at start); a malformed one is refused.
    let out = run_bin(runs, &[("RUNWARDEN_ENV", "development")]).await;
    assert!(!stderr(&out).contains("VAULT_"), "{}", stderr(&out));
    let out = run_bin(
        runs,
        &[
            ("RUNWARDEN_ENV", "development"),
            ("VAULT_KEKS", &short_entry),
            ("VAULT_KEK_ACTIVE", "v1"),
        ],
    )
    .await;
    assert!(stderr(&out).contains("VAULT_KEKS"), "{}", stderr(&out));
}
