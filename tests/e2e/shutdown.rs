//! Graceful shutdown: on SIGTERM (Cloud Run's stop signal) auth stops accepting, lets the
//! requests already in flight finish, and exits 0 well inside Cloud Run's 10 s.

use std::time::{Duration, Instant};

use runwarden_e2e::{AUTH_ROLE, Api, PASSWORD, TestDb, start_auth, unique_email};

/// Logins fired together at a pool that hashes one password at a time: they queue behind
/// each other, so most are still in flight when the signal arrives.
const LOGINS: u32 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let db = TestDb::create().await;
    let mut auth = start_auth(&db.url_as(AUTH_ROLE), &[("AUTH_HASH_CONCURRENCY", "1")]).await;
    let api = Api::new(auth.base_url());
    let email = unique_email("shutdown");
    let signup = api.signup(&email, PASSWORD).await;
    assert_eq!(signup.status, 200, "{}", signup.text);
    // How long one login takes here (mostly its Argon2 hash), to time the signal.
    let started = Instant::now();
    let login = api.login(&email, PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.text);
    let one_login = started.elapsed();

    let mut logins = Vec::new();
    for _ in 0..LOGINS {
        let api = api.clone();
        let email = email.clone();
        logins.push(tokio::spawn(async move {
            let reply = api.login(&email, PASSWORD).await;
            (reply, Instant::now())
        }));
    }
    // About two logins' time: long enough for every connection to be accepted and its
    // request read, short enough that most of the queued hashes are not done.
    let wait = (one_login * 2).clamp(Duration::from_millis(30), Duration::from_millis(500));
    assert!(
        one_login * LOGINS > wait * 2,
        "one login took {one_login:?}"
    );
    tokio::time::sleep(wait).await;

    let signalled = Instant::now();
    auth.terminate();
    let status = auth
        .wait_exit(Duration::from_secs(8))
        .await
        .unwrap_or_else(|| {
            panic!(
                "auth still running 8 s after SIGTERM\n{}",
                auth.output_tail()
            )
        });
    let took = signalled.elapsed();
    assert!(
        status.success(),
        "auth exited with {status} after SIGTERM\n{}",
        auth.output_tail()
    );
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");

    let mut after_signal = 0;
    for login in logins {
        let (reply, finished) = login.await.expect("the login task");
        assert_eq!(
            reply.status, 200,
            "an in-flight login was cut off by the shutdown: {}",
            reply.text
        );
        assert!(reply.json["access_token"].is_string(), "{}", reply.text);
        if finished > signalled {
            after_signal += 1;
        }
    }
    assert!(
        after_signal > 0,
        "no login was still in flight when SIGTERM was sent, so draining was not exercised"
    );
    let stdout = auth.stdout();
    assert!(
        stdout.contains("draining in-flight requests"),
        "shutdown is logged:\n{stdout}"
    );

    // Nothing listens any more.
    let refused = api
        .client
        .get(api.url("/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(refused.is_err(), "auth still answers after it exited");
}
