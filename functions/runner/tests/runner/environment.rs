//! What the agent gets: a cleared environment with the run's secrets and variables, never
//! the runner's own credentials; and what leaves the runner: lines with secret values
//! redacted.

use std::collections::BTreeSet;

use serde_json::json;

use crate::helpers::*;

/// Hex of a string as `od -An -tx1` prints it, without spaces.
fn hex(value: &str) -> String {
    value.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn the_agent_gets_its_secrets_and_none_of_the_runners_credentials() {
    let scratch = Scratch::new();
    let input = json!({"sleep_seconds": 0, "note": "hi"});
    let servers = Servers::start(Fake::new("agent", input.clone(), 30)).await;
    // `env` prints the environment (values redacted on the way out); the hex dump proves the
    // values themselves arrived intact.
    let script =
        r#"env; printf 'A_HEX=%s\n' "$(printf '%s' "$A" | od -An -tx1 | tr -d ' \n')"; pwd"#;
    let out = run_runner(
        &servers,
        Options::agent(&["/bin/sh", "-c", script], scratch.path()),
    )
    .await;
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    out.assert_no_leaks();
    let fake = &servers.fake;
    let lines = fake.stdout_lines();

    let names: BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l.split_once('=').map(|(name, _)| name))
        .filter(|name| !["A_HEX", "PWD", "SHLVL", "OLDPWD", "_"].contains(name))
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "A",
            "B",
            "HOME",
            "LANG",
            "PATH",
            "RUNWARDEN_ARTIFACTS_DIR",
            "RUNWARDEN_INPUT",
            "RUNWARDEN_RUN_ID",
            "RUNWARDEN_SECRET_NAMES",
            "TMPDIR",
        ]),
        "{lines:#?}"
    );
    let work = scratch.path().to_str().unwrap();
    for expected in [
        "A=[REDACTED]".to_owned(),
        "B=[REDACTED]".to_owned(),
        "LANG=C.UTF-8".to_owned(),
        format!("HOME={work}"),
        format!("TMPDIR={work}/tmp"),
        format!("RUNWARDEN_ARTIFACTS_DIR={work}/artifacts"),
        format!("RUNWARDEN_RUN_ID={}", fake.run_id),
        format!("RUNWARDEN_INPUT={input}"),
        "RUNWARDEN_SECRET_NAMES=A,B".to_owned(),
        format!("A_HEX={}", hex(VALUE_A)),
        // The working directory is the work folder.
        work.to_owned(),
    ] {
        assert!(
            lines.contains(&expected),
            "{expected} missing from {lines:#?}"
        );
    }
    let received = fake.everything_received();
    for never in [
        TICKET,
        TOKEN,
        INTERNAL,
        VALUE_A,
        VALUE_B,
        "RUNNER_TICKET",
        "INTERNAL_AUTH_SECRET",
        "RUNS_URL",
        "RUST_LOG",
    ] {
        assert!(
            !received.contains(never),
            "{never} reached the agent or runs"
        );
    }
    assert!(scratch.path().join("artifacts").is_dir());
}

#[tokio::test]
async fn secret_values_are_redacted_from_every_line() {
    let scratch = Scratch::new();
    let servers = Servers::start(Fake::new("agent", json!({}), 30)).await;
    let script = r#"echo "key is $A!"; echo "$B" >&2; echo "both:$A$B"; echo "progress: 40% $A""#;
    let out = run_runner(
        &servers,
        Options::agent(&["/bin/sh", "-c", script], scratch.path()),
    )
    .await;
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    out.assert_no_leaks();
    let fake = &servers.fake;
    let lines = fake.log_lines();
    for expected in [
        "stdout: key is [REDACTED]!",
        "stderr: [REDACTED]",
        "stdout: both:[REDACTED]",
        "stdout: progress: 40% [REDACTED]",
    ] {
        assert!(
            lines.contains(&expected.to_owned()),
            "{expected} missing from {lines:#?}"
        );
    }
    let received = fake.everything_received();
    assert!(
        !received.contains(VALUE_A) && !received.contains(VALUE_B),
        "{received}"
    );
}
