//! Media tokens and signed URLs never reach the log (LOG-05).

use super::*;

/// Everything the app writes to its log, as Cloud Logging JSON lines (the production layer,
/// at the production level for dependencies and debug for runwarden's own crates).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn log05_media_tokens_and_signed_urls_never_reach_the_log(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    use tracing_subscriber::layer::SubscriberExt;
    // A second registered dispatcher, alive while this one captures: with a single scoped
    // dispatcher registered, tracing computes a new callsite's interest from the thread that
    // first hits it, so a parallel test thread without a subscriber could cache "never" for
    // a line this capture needs (tracing-core 0.1's `has_just_one` shortcut).
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info,runwarden=debug"))
        .with(runwarden_platform::telemetry::CloudLoggingLayer::new(
            captured.clone(),
            None,
        ));
    // The test runtime has one thread: the app, its tasks and this test all log here.
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = spawn_app(options).await;
    let (org, member, project) = setup(&app).await;
    let (run, runner) = running(&app, org, &member, &project, 600).await;
    let (status, target) = upload_target(
        &app,
        &run,
        Some(&runner),
        &json!({"name": "shot.png", "content_type": "image/png", "size": 3}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, tokens) = mint(&app, org, &run, &member).await;
    let events = tokens["events"]["token"].as_str().unwrap().to_owned();
    let artifacts = tokens["artifacts"]["token"].as_str().unwrap().to_owned();
    let redirect = get(
        &app,
        tokens["artifacts"]["urls"]["shot.png"].as_str().unwrap(),
    )
    .await;
    assert_eq!(redirect.status(), StatusCode::FOUND);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    append(&app, &run, &runner, &["hello"]).await;
    complete(&app, &run, &runner).await;
    let frames = SseReader::new(get(&app, tokens["events"]["url"].as_str().unwrap()).await)
        .rest()
        .await;
    assert_eq!(frames.last().unwrap().event, "status");
    // Error paths: the wrong scope, another run, a tampered token, an access token.
    for url in [
        format!("/v1/media/runs/{run}/artifacts/shot.png?token={events}"),
        format!("/v1/media/runs/{}/events?token={events}", Uuid::now_v7()),
        format!("/v1/media/runs/{run}/events?token={events}x"),
        format!("/v1/media/runs/{run}/events?token={}", member),
    ] {
        assert_eq!(get(&app, &url).await.status(), StatusCode::UNAUTHORIZED);
    }

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("/v1/media/runs/{run}/events"),
        "the access log names the route template: {log}"
    );
    assert!(
        log.contains("media_token_refused"),
        "refusals are logged (without the token)"
    );
    let signature = |token: &str| token.rsplit('.').next().unwrap().to_owned();
    let url_signature = |url: &str| {
        reqwest::Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "X-Goog-Signature")
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    for (what, secret) in [
        ("events token", signature(&events)),
        ("artifacts token", signature(&artifacts)),
        ("access token", signature(&member)),
        ("runner token", runner.clone()),
        ("signed GET", url_signature(&location)),
        (
            "signed PUT",
            url_signature(target["upload_url"].as_str().unwrap()),
        ),
    ] {
        assert!(!log.contains(&secret), "{what} in the log");
    }
    assert!(!log.contains("token="), "no query string in the log");
    assert!(
        !log.contains("X-Goog-Signature"),
        "no signed URL in the log"
    );
}
