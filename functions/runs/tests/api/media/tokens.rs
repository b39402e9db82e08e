//! Media tokens: the role matrix of minting them, and a token of one run, scope or org never
//! opening another.

use super::*;

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn media_tokens_role_matrix_and_token_confusion(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let (org, member, project) = setup(&app).await;
    let (run, _) = running(&app, org, &member, &project, 600).await;
    let (other_run, _) = running(&app, org, &member, &project, 600).await;
    let viewer = app.fx.member(org, Role::Viewer).await;

    // Viewer and up get two tokens (one per scope) with ready URLs; audited as the user.
    let (status, body) = mint(&app, org, &run, &viewer.token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 300);
    let events = body["events"]["token"].as_str().unwrap().to_owned();
    let artifacts = body["artifacts"]["token"].as_str().unwrap().to_owned();
    assert_ne!(events, artifacts);
    assert_eq!(
        body["events"]["url"],
        format!("/v1/media/runs/{run}/events?token={events}")
    );
    assert_eq!(body["artifacts"]["urls"], json!({}));
    let audited = app.fx.audit_events(org, "run.media_token").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["actor"]["id"], viewer.user_id.to_string());
    assert_eq!(audited[0]["target"]["id"], run);
    assert!(
        !audited[0].to_string().contains(&events),
        "no token in the audit log"
    );
    let header = |token: &str| -> Value {
        let part = token.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(header(&events)["typ"], "media+jwt");
    assert_eq!(header(&events)["kid"], "test-media-key");
    assert_eq!(mint(&app, org, &run, &member).await.0, StatusCode::OK);

    // Another org's member: 404 through either org's path; no token: 401; a run of another
    // org named under one's own org: 404.
    let other = app.fx.org_on("team").await;
    let stranger = app.fx.member(other, Role::Owner).await;
    for o in [org, other] {
        let (status, body) = mint(&app, o, &run, &stranger.token).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{o}: {body}");
        let (status, _) = app
            .call(
                Method::GET,
                &format!("/v1/orgs/{o}/runs/{run}/artifacts"),
                &stranger.token,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        mint(&app, org, &Uuid::now_v7().to_string(), &member)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(mint(&app, org, &run, "").await.0, StatusCode::UNAUTHORIZED);

    let events_url = |run: &str, token: &str| format!("/v1/media/runs/{run}/events?token={token}");
    let artifact_url =
        |run: &str, token: &str| format!("/v1/media/runs/{run}/artifacts/shot.png?token={token}");

    // JWT-12: a login access token never opens a media URL, and a media token never opens
    // the API (GET or POST).
    for url in [
        events_url(&run, &viewer.token),
        artifact_url(&run, &viewer.token),
    ] {
        assert_eq!(
            get(&app, &url).await.status(),
            StatusCode::UNAUTHORIZED,
            "{url}"
        );
    }
    for token in [&events, &artifacts] {
        for (method, path) in [
            (Method::GET, format!("/v1/orgs/{org}/runs")),
            (Method::GET, format!("/v1/orgs/{org}/runs/{run}")),
            (
                Method::POST,
                format!("/v1/orgs/{org}/runs/{run}/media-token"),
            ),
            (Method::POST, format!("/v1/orgs/{org}/projects")),
        ] {
            let (status, _) = app
                .call(method.clone(), &path, token, Some(&json!({})))
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        }
    }

    // JWT-13: the scope of the route, the run of the path; tampered; expired (no leeway).
    assert_eq!(
        get(&app, &artifact_url(&run, &events)).await.status(),
        StatusCode::UNAUTHORIZED,
        "an events token on artifacts"
    );
    assert_eq!(
        get(&app, &events_url(&run, &artifacts)).await.status(),
        StatusCode::UNAUTHORIZED,
        "an artifacts token on events"
    );
    for url in [
        events_url(&other_run, &events),
        artifact_url(&other_run, &artifacts),
    ] {
        assert_eq!(
            get(&app, &url).await.status(),
            StatusCode::UNAUTHORIZED,
            "run A's token on run B"
        );
    }
    let mut tampered: Vec<char> = events.chars().collect();
    let middle = events.find('.').unwrap() + 5;
    tampered[middle] = if tampered[middle] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let mut bad_sig = events.clone();
    bad_sig.pop();
    bad_sig.push(if events.ends_with('A') { 'B' } else { 'A' });
    let now = Utc::now().timestamp();
    let expired = token_at(&app, org, &run, Scope::Events, now - 400, now - 100);
    let just_expired = token_at(&app, org, &run, Scope::Events, now - 299, now - 1);
    let foreign = MediaKeys::new(runwarden_tokens::TokenSigner::generate("test-media-key"))
        .sign(&MediaKeys::claims(
            org,
            run.parse().unwrap(),
            viewer.user_id.into(),
            viewer.session_id.into(),
            Scope::Events,
            now,
        ))
        .unwrap();
    for (what, token) in [
        ("tampered payload", tampered.as_str()),
        ("tampered signature", bad_sig.as_str()),
        ("expired", expired.as_str()),
        ("expired a second ago", just_expired.as_str()),
        ("another key, same kid", foreign.as_str()),
        ("garbage", "eyJ.x.y"),
    ] {
        assert_eq!(
            get(&app, &events_url(&run, token)).await.status(),
            StatusCode::UNAUTHORIZED,
            "{what}"
        );
    }

    // DATA-04: only `token=` in the query carries a media token; not a header, not
    // `access_token=`, not twice. Other parameters with a good token: 400.
    for query in [
        String::new(),
        format!("?access_token={events}"),
        format!("?token={events}&token={events}"),
    ] {
        let url = format!("/v1/media/runs/{run}/events{query}");
        assert_eq!(
            get(&app, &url).await.status(),
            StatusCode::UNAUTHORIZED,
            "{url}"
        );
    }
    let in_header = app
        .client
        .get(app.served.url(&format!("/v1/media/runs/{run}/events")))
        .bearer_auth(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(in_header.status(), StatusCode::UNAUTHORIZED);
    let extra = get(&app, &format!("{}&x=1", events_url(&run, &events))).await;
    assert_eq!(extra.status(), StatusCode::BAD_REQUEST);

    // A good token works; a member removed since then: 404 (the org's run is no longer
    // theirs), even with a token that has not expired.
    let ok = get(&app, &events_url(&run, &events)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    drop(ok);
    sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
        .bind(org)
        .bind(viewer.user_id)
        .execute(&app.fx.admin)
        .await
        .unwrap();
    assert_eq!(
        get(&app, &events_url(&run, &events)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, &artifact_url(&run, &artifacts)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        mint(&app, org, &run, &viewer.token).await.0,
        StatusCode::NOT_FOUND
    );
}
