//! Cloud SQL-style connection: auth reaches PostgreSQL through a Unix socket directory
//! (`postgres://role@/db?host=/dir`), as it does through the Cloud SQL Auth Proxy on Cloud Run.

use std::path::Path;

use runwarden_e2e::{AUTH_ROLE, Api, PASSWORD, SOCKET_DIR, TestDb, start_auth, unique_email};

#[tokio::test]
async fn auth_serves_over_a_unix_socket_database_url() {
    if !Path::new(SOCKET_DIR).is_dir() {
        eprintln!(
            "SKIPPED auth_serves_over_a_unix_socket_database_url: {SOCKET_DIR} does not exist on this machine"
        );
        return;
    }
    let db = TestDb::create().await;
    let url = db.socket_url_as(AUTH_ROLE, SOCKET_DIR);
    assert!(url.contains("@/") && url.contains("?host="), "{url}");
    let auth = start_auth(&url, &[]).await;
    let api = Api::new(auth.base_url());

    let email = unique_email("socket");
    let signup = api.signup(&email, PASSWORD).await;
    assert_eq!(
        signup.status, 200,
        "signup over the Unix socket: {}",
        signup.text
    );
    let me = api.get("/v1/me", Some(&signup.str("access_token"))).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json["email"], email.as_str());
    let login = api.login(&email, PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.text);
}
