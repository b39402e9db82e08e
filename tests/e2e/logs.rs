//! No secrets in logs: drive auth through a whole session (sign-up, login, refresh, a reused
//! refresh token, /v1/me, an invitation, logout, a revoked token, a wrong password) and read everything it
//! wrote. Every stdout line is a Cloud Logging JSON object; no password, token, password
//! hash or signing key appears anywhere in stdout or stderr.

use std::collections::BTreeSet;
use std::time::Duration;

use runwarden_e2e::{
    AUTH_ROLE, Api, PASSWORD, Reply, TestDb, Tokens, generate_signing_key_pem, pem_body_lines,
    start_auth, unique_email,
};
use serde_json::{Value, json};

const WRONG_PASSWORD: &str = "definitely not the right passphrase";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_structured_json_and_never_contain_secrets() {
    let db = TestDb::create().await;
    let pem = generate_signing_key_pem();
    let mut auth = start_auth(
        &db.url_as(AUTH_ROLE),
        &[
            ("RUNWARDEN_ENV", "production"),
            // The scheduler's tasks are authenticated like pushes (no network: a dead JWKS URL).
            ("PUSH_AUDIENCE", "https://auth.example/internal/tasks"),
            (
                "PUSH_SERVICE_ACCOUNT",
                "push@example.iam.gserviceaccount.com",
            ),
            ("GOOGLE_OIDC_JWKS_URL", "http://127.0.0.1:9/certs"),
            ("AUTH_SIGNING_KEY", &pem),
            ("AUTH_SIGNING_KEY_ID", "e2e-logs"),
            // Production requires the mail settings; SMTP_URL is the local sink.
            ("MAIL_FROM", "Runwarden e2e <no-reply@runwarden.localhost>"),
            ("PUBLIC_APP_URL", "https://app.example"),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    let api = Api::new(auth.base_url());
    let email = unique_email("logs");
    let mut replies: Vec<(&str, Reply)> = Vec::new();
    let mut tokens: Vec<Tokens> = Vec::new();

    let signup = api.signup(&email, PASSWORD).await;
    assert_eq!(signup.status, 200, "signup: {}", signup.text);
    let signup_org = signup.json["org_id"].as_str().unwrap().to_owned();
    tokens.push(Tokens::from_reply(&signup));
    replies.push(("signup", signup));

    let login = api.login(&email, PASSWORD).await;
    assert_eq!(login.status, 200, "login: {}", login.text);
    let session = Tokens::from_reply(&login);
    tokens.push(session.clone());
    replies.push(("login", login));

    let refreshed = api.refresh(&session.refresh).await;
    assert_eq!(refreshed.status, 200, "refresh: {}", refreshed.text);
    let current = Tokens::from_reply(&refreshed);
    tokens.push(current.clone());
    replies.push(("refresh", refreshed));

    let me = api.get("/v1/me", Some(&current.access)).await;
    assert_eq!(me.status, 200, "me: {}", me.text);
    assert_eq!(me.json["email"], email.as_str());
    replies.push(("me", me));

    // Another org's (here: any unknown) org is a plain 404 to the caller, and an
    // authorization-denied security event for operators (LOG-04).
    let probe = api
        .get(
            &format!("/v1/orgs/{}", uuid::Uuid::now_v7()),
            Some(&current.access),
        )
        .await;
    assert_eq!(probe.status, 404, "probe: {}", probe.text);
    replies.push(("probe of another org", probe));

    // An invitation: its token travels in a URL path, which the access log must not print.
    let invitee_email = unique_email("invitee");
    let invitee = api.signup(&invitee_email, PASSWORD).await;
    assert_eq!(invitee.status, 200, "invitee signup: {}", invitee.text);
    let invitee = Tokens::from_reply(&invitee);
    tokens.push(invitee.clone());
    let org = signup_org.as_str();
    let invitation = api
        .post(
            &format!("/v1/orgs/{org}/invitations"),
            Some(&current.access),
            &json!({"email": invitee_email, "role": "member"}),
        )
        .await;
    assert_eq!(invitation.status, 201, "invite: {}", invitation.text);
    let invitation_token = invitation.json["token"].as_str().unwrap().to_owned();
    replies.push(("invite", invitation));
    let accepted = api
        .post(
            &format!("/v1/invitations/{invitation_token}/accept"),
            Some(&invitee.access),
            &json!({}),
        )
        .await;
    assert_eq!(accepted.status, 200, "accept: {}", accepted.text);
    replies.push(("accept", accepted));

    let logout = api
        .post("/v1/auth/logout", Some(&current.access), &json!({}))
        .await;
    assert_eq!(logout.status, 204, "logout: {}", logout.text);
    replies.push(("logout", logout));

    // A revoked access token and a reused refresh token: both refused, both logged about.
    let revoked = api.get("/v1/me", Some(&current.access)).await;
    assert_eq!(revoked.status, 401, "me after logout: {}", revoked.text);
    replies.push(("me after logout", revoked));
    let reused = api.refresh(&session.refresh).await;
    assert_eq!(reused.status, 401, "reused refresh token: {}", reused.text);
    replies.push(("reused refresh", reused));

    let failed = api.login(&email, WRONG_PASSWORD).await;
    assert_eq!(failed.status, 401, "wrong password: {}", failed.text);
    replies.push(("failed login", failed));

    // Stop it so every line is written, then read everything.
    auth.terminate();
    let status = auth
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("auth exits after SIGTERM");
    assert!(status.success(), "auth exit status {status}");
    let stdout = auth.stdout();
    let stderr = auth.stderr();

    // Every line is a Cloud Logging JSON object.
    let mut lines: Vec<Value> = Vec::new();
    for (n, line) in stdout
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout line {} is not JSON ({e}): {line}", n + 1));
        assert!(
            value.is_object(),
            "stdout line {} is not an object: {line}",
            n + 1
        );
        for field in ["severity", "message", "time"] {
            let present = value[field].as_str().is_some_and(|s| !s.is_empty());
            assert!(
                present,
                "stdout line {} lacks a string `{field}`: {line}",
                n + 1
            );
        }
        let severity = value["severity"].as_str().unwrap_or_default();
        assert!(
            [
                "DEBUG",
                "INFO",
                "NOTICE",
                "WARNING",
                "ERROR",
                "CRITICAL",
                "ALERT",
                "EMERGENCY"
            ]
            .contains(&severity),
            "stdout line {} has a severity Cloud Logging does not know: {line}",
            n + 1
        );
        lines.push(value);
    }

    // One access line per request, each with the request id the client saw.
    let access: Vec<&Value> = lines.iter().filter(|l| l["message"] == "request").collect();
    assert!(
        access.len() >= replies.len(),
        "expected at least {} access-log lines (one per request), found {}:\n{stdout}",
        replies.len(),
        access.len()
    );
    let logged_ids: BTreeSet<&str> = access
        .iter()
        .map(|l| {
            l["request_id"]
                .as_str()
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| panic!("access-log line without a request_id: {l}"))
        })
        .collect();
    for (what, reply) in &replies {
        let id = reply
            .request_id()
            .unwrap_or_else(|| panic!("{what}: response without x-request-id"));
        assert!(
            logged_ids.contains(id),
            "{what}: request id {id} not found in the access log:\n{stdout}"
        );
    }
    for event in [
        "login_failed",
        "login_succeeded",
        "refresh_reuse_detected",
        "authz_denied",
    ] {
        assert!(
            lines.iter().any(|l| l["security_event"] == event),
            "{event} is logged as a security event (LOG-03/04):\n{stdout}"
        );
    }

    // And nothing secret anywhere, in stdout or stderr.
    let mut secrets: Vec<(String, String)> = vec![
        ("the password".into(), PASSWORD.into()),
        ("the wrong password".into(), WRONG_PASSWORD.into()),
        ("an Argon2 hash".into(), "$argon2".into()),
        ("the invitation token".into(), invitation_token.clone()),
    ];
    for (i, t) in tokens.iter().enumerate() {
        secrets.push((format!("access token #{i}"), t.access.clone()));
        let signature = t.access.rsplit('.').next().unwrap_or_default();
        assert!(
            signature.len() >= 40,
            "access token #{i} is a JWS: {}",
            t.access
        );
        secrets.push((
            format!("the signature of access token #{i}"),
            signature.to_owned(),
        ));
        secrets.push((format!("refresh token #{i}"), t.refresh.clone()));
        let random = t.refresh.trim_start_matches("rt_");
        assert!(
            random.len() >= 20,
            "refresh token #{i} carries enough randomness: {}",
            t.refresh
        );
        secrets.push((
            format!("the random part of refresh token #{i}"),
            random.to_owned(),
        ));
    }
    // The verification links the sign-ups were mailed: only ever in the mail.
    let mail_dir = runwarden_testkit::mail::dir();
    for to in [&email, &invitee_email] {
        for (i, mail) in runwarden_testkit::mail::messages_to(&mail_dir, to)
            .iter()
            .enumerate()
        {
            if let Some(token) = mail.token("token=") {
                secrets.push((format!("verification token #{i} to {to}"), token));
            }
        }
    }
    let body = pem_body_lines(&pem);
    assert!(!body.is_empty());
    secrets.push(("the signing key PEM body".into(), body.concat()));
    for (i, line) in body.iter().enumerate() {
        secrets.push((
            format!("line {i} of the signing key PEM body"),
            line.clone(),
        ));
    }
    for (what, secret) in &secrets {
        for (stream, text) in [("stdout", &stdout), ("stderr", &stderr)] {
            if let Some(line) = text.lines().find(|l| l.contains(secret.as_str())) {
                panic!("{what} appears in auth's {stream}: {line}");
            }
        }
    }
}
