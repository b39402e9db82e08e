//! Start-up configuration, through the real `audit` binary: production refuses to start
//! without Google's push settings (naming the variable) and refuses the local shared
//! secret; development refuses to start with unauthenticated pushes.

use std::process::Command;

/// Runs `audit` with exactly these variables; its exit code and stderr. Every case fails in
/// configuration, before any network or database access.
fn start(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_audit"))
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const BASE: [(&str, &str); 3] = [
    (
        "DATABASE_URL",
        "postgres://runwarden_audit@127.0.0.1:1/runwarden",
    ),
    ("AUTH_JWKS_URL", "http://127.0.0.1:1/.well-known/jwks.json"),
    ("PORT", "0"),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    BASE.iter().copied().chain(extra.iter().copied()).collect()
}

#[test]
fn production_refuses_to_start_without_its_push_settings() {
    let prod = ("RUNWARDEN_ENV", "production");
    let audience = ("PUSH_AUDIENCE", "https://audit.example/push/audit-events");
    let account = ("PUSH_SERVICE_ACCOUNT", "push@p.iam.gserviceaccount.com");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (with(&[prod, account]), "PUSH_AUDIENCE"),
        (with(&[prod, audience]), "PUSH_SERVICE_ACCOUNT"),
        (
            with(&[prod, audience, ("PUSH_SERVICE_ACCOUNT", "not-an-email")]),
            "PUSH_SERVICE_ACCOUNT",
        ),
        (
            with(&[
                prod,
                audience,
                account,
                ("PUSH_SECRET", "0123456789abcdef0123"),
            ]),
            "PUSH_SECRET",
        ),
        (
            with(&[prod, audience, account, ("GOOGLE_OIDC_JWKS_URL", "ftp://x")]),
            "GOOGLE_OIDC_JWKS_URL",
        ),
        // Development still authenticates pushes.
        (with(&[]), "PUSH_SECRET"),
        (with(&[("PUSH_SECRET", "short")]), "PUSH_SECRET"),
        (
            vec![BASE[0], ("PUSH_SECRET", "0123456789abcdef0123")],
            "AUTH_JWKS_URL",
        ),
        (
            vec![BASE[1], ("PUSH_SECRET", "0123456789abcdef0123")],
            "DATABASE_URL",
        ),
    ];
    for (vars, named) in cases {
        let (code, stderr) = start(&vars);
        assert_eq!(code, Some(2), "{vars:?}: {stderr}");
        assert!(stderr.contains(named), "{vars:?}: {stderr}");
        assert!(
            !stderr.contains("0123456789abcdef0123"),
            "secrets are not echoed"
        );
    }
}
