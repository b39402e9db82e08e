//! The run's event stream: in order, resumable without gaps, ending with the run (REL-21);
//! fifty watchers through one listen; closing when its token expires (JWT-13).

use super::*;

async fn open(app: &TestApp, url: &str, last_event_id: Option<i64>) -> reqwest::Response {
    let mut request = app.client.get(app.served.url(url));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    request.send().await.unwrap()
}

fn as_stored(frames: &[Frame]) -> Vec<(i64, String, String)> {
    frames
        .iter()
        .map(|f| {
            let data = f.json();
            assert_eq!(data["id"].as_i64(), Some(f.id()), "id: and data agree");
            assert_eq!(data["kind"].as_str(), Some(f.event.as_str()));
            (
                f.id(),
                f.event.clone(),
                data["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn rel21_events_stream_in_order_resume_without_gaps_and_end_with_the_run(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let (org, member, project) = setup(&app).await;
    let (run, runner) = running(&app, org, &member, &project, 600).await;
    append(&app, &run, &runner, &["l1", "l2", "l3"]).await;
    let (_, body) = mint(&app, org, &run, &member).await;
    let url = body["events"]["url"].as_str().unwrap().to_owned();

    let response = open(&app, &url, None).await;
    for (name, value) in [
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(response.headers()[name], value, "{name}");
    }
    let mut first = SseReader::new(response);
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(first.next().await.unwrap());
    }
    assert_eq!(
        as_stored(&seen)
            .iter()
            .map(|(_, k, m)| format!("{k}:{m}"))
            .collect::<Vec<_>>(),
        [
            "status:queued",
            "status:running",
            "log:l1",
            "log:l2",
            "log:l3"
        ]
    );
    assert_eq!(seen[2].json()["stream"], "stdout");
    // Live: what the runner appends now arrives on the open stream.
    append(&app, &run, &runner, &["l4", "l5"]).await;
    seen.push(first.next().await.unwrap());
    assert_eq!(seen.last().unwrap().json()["message"], "l4");
    drop(first); // the connection drops after l4 (l5 is not taken)

    // Reconnect with Last-Event-ID: l5, then what came while away, no repeat, no gap.
    append(&app, &run, &runner, &["l6"]).await;
    let resume_at = seen.last().unwrap().id();
    let mut second = SseReader::new(open(&app, &url, Some(resume_at)).await);
    for _ in 0..2 {
        seen.push(second.next().await.unwrap());
    }
    complete(&app, &run, &runner).await;
    let rest = second.rest().await; // ends by itself after the final status
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(
        (rest[0].event.as_str(), rest[0].json()["message"].as_str()),
        ("status", Some("succeeded"))
    );
    seen.extend(rest);
    let all = stored(&app, &run).await;
    assert_eq!(as_stored(&seen), all, "every event once, in order");
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));

    // After the end: from the last id nothing is left (the stream ends at once); from the
    // start, the whole run, then the end.
    let last = all.last().unwrap().0;
    assert!(
        SseReader::new(open(&app, &url, Some(last)).await)
            .rest()
            .await
            .is_empty()
    );
    let replay = SseReader::new(open(&app, &url, None).await).rest().await;
    assert_eq!(as_stored(&replay), all);
    let middle = all[3].0;
    let partial = SseReader::new(open(&app, &url, Some(middle)).await)
        .rest()
        .await;
    assert_eq!(as_stored(&partial), all[4..].to_vec());
    // A Last-Event-ID that is no event id: 400.
    let bad = app
        .client
        .get(app.served.url(&url))
        .header("last-event-id", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn fifty_watchers_of_one_run_get_every_event_through_one_listen(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    // One token, fifty streams: the caps (3 per token, 20 per run) raised to measure the
    // fan-out, as the benchmark does.
    let limits = StreamLimits {
        per_token: 50,
        per_run: 50,
    };
    let app = spawn_app_with(options, limits).await;
    let (org, member, project) = setup(&app).await;
    let (run, runner) = running(&app, org, &member, &project, 600).await;
    let (_, body) = mint(&app, org, &run, &member).await;
    let url = body["events"]["url"].as_str().unwrap().to_owned();

    // Each answer's head comes after its subscription, so all 50 are watching here.
    let readers: Vec<SseReader> =
        futures::future::join_all((0..50).map(|_| open(&app, &url, None)))
            .await
            .into_iter()
            .map(SseReader::new)
            .collect();
    assert_eq!(app.media.hub.feeds(), 1, "one feed for the run");
    let listening: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_one(&app.fx.admin)
    .await
    .unwrap();
    assert_eq!(listening, 1, "one LISTEN connection, not one per watcher");

    let watching = tokio::spawn(futures::future::join_all(
        readers.into_iter().map(SseReader::rest),
    ));
    for batch in 0..10 {
        let lines: Vec<String> = (0..5).map(|i| format!("b{batch}-{i}")).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        append(&app, &run, &runner, &lines).await;
    }
    complete(&app, &run, &runner).await;
    let all = stored(&app, &run).await;
    assert_eq!(all.len(), 2 + 50 + 1);
    let received = watching.await.unwrap();
    for (i, frames) in received.iter().enumerate() {
        assert_eq!(as_stored(frames), all, "watcher {i}");
    }
    // Unwatched, the feed retires.
    for _ in 0..100 {
        if app.media.hub.feeds() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.media.hub.feeds(), 0);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn jwt13_the_stream_closes_when_its_token_expires(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let (org, member, project) = setup(&app).await;
    let (run, _) = running(&app, org, &member, &project, 600).await;
    let now = Utc::now().timestamp();
    let (user, session) = sqlx::query_as::<_, (Uuid, Uuid)>(
        "SELECT r.created_by, s.id FROM runs r JOIN sessions s ON s.user_id = r.created_by
         WHERE r.id = $1::uuid",
    )
    .bind(&run)
    .fetch_one(&app.fx.admin)
    .await
    .unwrap();
    let mut claims = MediaKeys::claims(
        org,
        run.parse().unwrap(),
        user.into(),
        session.into(),
        Scope::Events,
        now,
    );
    claims.exp = now + 3;
    let token = app.media.keys.sign(&claims).unwrap();
    let url = format!("/v1/media/runs/{run}/events?token={token}");
    let started = Instant::now();
    let frames = SseReader::new(open(&app, &url, None).await).rest().await;
    assert_eq!(
        frames.len(),
        2,
        "queued and running, then the token ran out"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "closed at expiry, though the run goes on"
    );
    assert_eq!(app.run_status(&run).await, "running");
    // REL-21: reconnecting with the expired token: 401.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        open(&app, &url, Some(frames[1].id())).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
