//! Artifacts up and down through signed URLs, under row-level security.

use super::*;

fn png() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(PNG_BASE64)
        .unwrap()
}

fn expires_secs(url: &str) -> u64 {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "X-Goog-Expires")
        .map(|(_, v)| v.parse().unwrap())
        .expect("a V4 signed URL")
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn artifacts_go_up_and_down_through_signed_urls(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let gcs = gcs_emulator(&app.client).await;
    let (org, member, project) = setup(&app).await;
    let (run, runner) = running(&app, org, &member, &project, 600).await;
    let bytes = png();
    let meta = json!({"name": "screenshot.png", "content_type": "image/png", "size": bytes.len()});

    // No runner token, a wrong one, another run's, or no X-Internal-Auth: 401.
    let (other_run, other_runner) = running(&app, org, &member, &project, 600).await;
    assert_eq!(
        upload_target(&app, &run, None, &meta).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        upload_target(&app, &run, Some("rnt_forged"), &meta).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        upload_target(&app, &run, Some(&other_runner), &meta)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let viewer_token = app.fx.member(org, Role::Viewer).await.token;
    assert_eq!(
        upload_target(&app, &run, Some(&viewer_token), &meta)
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "an access token is no runner token"
    );
    let no_secret = app
        .client
        .post(
            app.served
                .url(&format!("/internal/runner/runs/{run}/artifacts")),
        )
        .bearer_auth(&runner)
        .json(&meta)
        .send()
        .await
        .unwrap();
    assert_eq!(no_secret.status(), StatusCode::UNAUTHORIZED);

    // Names with separators or dot segments, and odd content types: 400, nothing recorded.
    for name in [
        "../escape.png",
        "a/b.png",
        "..",
        ".",
        "a\\b.png",
        ".env",
        "",
        "x y.png",
    ] {
        let (status, body) = upload_target(
            &app,
            &run,
            Some(&runner),
            &json!({"name": name, "content_type": "image/png", "size": 1}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}: {body}");
        assert_eq!(body["code"], "invalid_artifact_name");
    }
    for content_type in ["text/html; charset=utf-8", "image/png\r\nx: y", "PNG"] {
        let (status, _) = upload_target(
            &app,
            &run,
            Some(&runner),
            &json!({"name": "a.png", "content_type": content_type, "size": 1}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{content_type:?}");
    }
    let (status, _) = upload_target(
        &app,
        &run,
        Some(&runner),
        &json!({"name": "a.png", "content_type": "image/png", "size": 1, "bucket": "other"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unknown fields");
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM run_artifacts")
        .fetch_one(&app.fx.admin)
        .await
        .unwrap();
    assert_eq!(recorded, 0);

    // The upload target: a signed PUT for runs/{org}/{run}/{name}, at most 5 minutes.
    let (status, target) = upload_target(&app, &run, Some(&runner), &meta).await;
    assert_eq!(status, StatusCode::OK, "{target}");
    assert_eq!(target["method"], "PUT");
    assert_eq!(target["headers"], json!({"content-type": "image/png"}));
    let upload_url = target["upload_url"].as_str().unwrap();
    assert!(
        upload_url.starts_with(&format!(
            "{gcs}/runwarden-artifacts-test/runs/{org}/{run}/screenshot.png?"
        )),
        "{upload_url}"
    );
    assert!(expires_secs(upload_url) <= 300);
    let put = app
        .client
        .put(upload_url)
        .header("content-type", "image/png")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert!(
        put.status().is_success(),
        "PUT to fake-gcs: {}",
        put.status()
    );
    let audited = app.fx.audit_events(org, "run.artifact_upload").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["actor"]["kind"], "runner");
    assert_eq!(audited[0]["details"]["name"], "screenshot.png");
    assert!(!audited[0].to_string().contains("X-Goog-Signature"));

    // Listed for Viewers; the media token's URLs name it.
    let viewer = app.fx.member(org, Role::Viewer).await;
    let (status, list) = app
        .call(
            Method::GET,
            &format!("/v1/orgs/{org}/runs/{run}/artifacts"),
            &viewer.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"][0]["name"], "screenshot.png");
    assert_eq!(list["items"][0]["content_type"], "image/png");
    assert_eq!(list["items"][0]["size"], bytes.len());
    let (_, tokens) = mint(&app, org, &run, &viewer.token).await;
    let media_url = tokens["artifacts"]["urls"]["screenshot.png"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = tokens["artifacts"]["token"].as_str().unwrap();
    assert_eq!(
        media_url,
        format!("/v1/media/runs/{run}/artifacts/screenshot.png?token={token}")
    );

    // The media URL: 302 to a signed GET (≤ 5 minutes) that serves the same bytes.
    let redirect = get(&app, &media_url).await;
    assert_eq!(redirect.status(), StatusCode::FOUND);
    assert_eq!(redirect.headers()["referrer-policy"], "no-referrer");
    assert_eq!(redirect.headers()["cache-control"], "no-store");
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!(
        "{gcs}/runwarden-artifacts-test/runs/{org}/{run}/screenshot.png?"
    )));
    let expires = expires_secs(&location);
    assert!((1..=300).contains(&expires), "{expires}");
    let fetched = app.client.get(&location).send().await.unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // Names that are not one safe segment: 400 (encoded separators included); an unknown
    // artifact: 404; another run's artifact through this run's token: 401.
    for name in [
        "a%2Fb.png",
        "..%2F..%2Fescape",
        "a%5Cb.png",
        ".env",
        "%2Eenv",
    ] {
        let url = format!("/v1/media/runs/{run}/artifacts/{name}?token={token}");
        assert_eq!(
            get(&app, &url).await.status(),
            StatusCode::BAD_REQUEST,
            "{name}"
        );
    }
    // A bare dot segment never reaches the route: URLs resolve it (`.../artifacts/..` is
    // `.../runs/{run}/`), which serves nothing.
    for name in ["..", "%2E%2E"] {
        let url = format!("/v1/media/runs/{run}/artifacts/{name}?token={token}");
        assert_eq!(
            get(&app, &url).await.status(),
            StatusCode::NOT_FOUND,
            "{name}"
        );
    }
    let missing = format!("/v1/media/runs/{run}/artifacts/missing.png?token={token}");
    assert_eq!(get(&app, &missing).await.status(), StatusCode::NOT_FOUND);
    let (status, _) = upload_target(&app, &other_run, Some(&other_runner), &meta).await;
    assert_eq!(status, StatusCode::OK);
    let cross = format!("/v1/media/runs/{other_run}/artifacts/screenshot.png?token={token}");
    assert_eq!(get(&app, &cross).await.status(), StatusCode::UNAUTHORIZED);

    // After the run ends its token uploads nothing more.
    complete(&app, &run, &runner).await;
    assert_eq!(
        upload_target(&app, &run, Some(&runner), &meta).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn run_artifacts_are_under_row_level_security(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let (org, member, project) = setup(&app).await;
    let (run, runner) = running(&app, org, &member, &project, 600).await;
    for name in ["a.png", "b.mp4", "a.png"] {
        let (status, body) = upload_target(
            &app,
            &run,
            Some(&runner),
            &json!({"name": name, "content_type": "video/mp4", "size": 10}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let runtime = app.fx.pool_as(runwarden_store::roles::RUNS, 2).await;
    let count_as = |org: OrgId| {
        let runtime = runtime.clone();
        async move {
            let mut tx = runtime.begin().await.unwrap();
            runwarden_tenancy::set_tenant(&mut tx, Some(org), None)
                .await
                .unwrap();
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM run_artifacts")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            n
        }
    };
    assert_eq!(count_as(org).await, 2, "a retry of a name replaces it");
    let other = app.fx.org_on("team").await;
    assert_eq!(count_as(other).await, 0, "another org sees none");
    // Nor can the runtime role write a row for an org other than its transaction's.
    let mut tx = runtime.begin().await.unwrap();
    runwarden_tenancy::set_tenant(&mut tx, Some(other), None)
        .await
        .unwrap();
    let written = sqlx::query(
        "INSERT INTO run_artifacts (run_id, org_id, name, content_type, size)
         VALUES ($1::uuid, $2, 'x.png', 'image/png', 1)",
    )
    .bind(&run)
    .bind(org)
    .execute(&mut *tx)
    .await;
    assert!(written.is_err(), "RLS refuses another org's row");
}
