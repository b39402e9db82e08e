//! When runs refuses the runner: a bad ticket starts nothing; a run that disappears
//! mid-way (cancelled, token dead) has its agent killed, and the runner exits non-zero.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_refused_ticket_starts_nothing_and_exits_non_zero() {
    let scratch = Scratch::new();
    let servers = Servers::start(Fake::new("agent", json!({}), 30)).await;
    let out = run_runner(
        &servers,
        Options {
            ticket: "rtk_wrong".into(),
            ..Options::agent(&["/bin/sh", "-c", "touch started"], scratch.path())
        },
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    out.assert_no_leaks();
    assert!(!out.stdout.contains("rtk_wrong"));
    let fake = &servers.fake;
    assert_eq!(*fake.calls.lock().unwrap(), ["POST exchange"]);
    assert!(fake.events().is_empty());
    assert!(fake.complete().is_none());
    assert!(!scratch.path().join("started").exists());
}

#[tokio::test]
async fn a_used_ticket_is_refused_the_second_time() {
    let scratch = Scratch::new();
    let servers = Servers::start(Fake::new("agent", json!({}), 30)).await;
    let options = || Options::agent(&["/bin/sh", "-c", "echo run >> runs.txt"], scratch.path());
    assert!(run_runner(&servers, options()).await.status.success());
    let again = run_runner(&servers, options()).await;
    assert!(!again.status.success());
    let runs = std::fs::read_to_string(scratch.path().join("runs.txt")).unwrap();
    assert_eq!(runs, "run\n");
}

#[tokio::test]
async fn runs_answering_404_mid_run_kills_the_agent() {
    let scratch = Scratch::new();
    let fake = Fake::new("agent", json!({}), 60);
    // The started status is taken, then the run is gone.
    fake.events_before_404
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let servers = Servers::start(fake).await;
    let script = r#"echo $$ > agent.pid; sleep 30 & echo $! > child.pid; while true; do echo tick; sleep 0.2; done"#;
    let out = run_runner(
        &servers,
        Options::agent(&["/bin/sh", "-c", script], scratch.path()),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    out.assert_no_leaks();
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    let fake = &servers.fake;
    assert!(fake.complete().is_none());
    assert!(fake.artifacts.lock().unwrap().is_empty());
    for file in ["agent.pid", "child.pid"] {
        let pid = read_pid(&scratch.path().join(file)).await;
        assert!(
            gone_within(pid, Duration::from_secs(2)).await,
            "{file} {pid} survived"
        );
    }
}

#[tokio::test]
async fn a_runner_stopped_with_sigterm_kills_its_agent_first() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let scratch = Scratch::new();
    let servers = Servers::start(Fake::new("agent", json!({}), 60)).await;
    let options = Options::agent(
        &["/bin/sh", "-c", "sleep 30 & echo $! > child.pid; wait"],
        scratch.path(),
    );
    let started = std::time::Instant::now();
    let child = runner_command(&servers, &options).spawn().unwrap();
    let grandchild = read_pid(&scratch.path().join("child.pid")).await;
    let runner = i32::try_from(child.id().unwrap()).unwrap();
    kill(Pid::from_raw(runner), Signal::SIGTERM).unwrap();
    let out = finish(child, started).await;
    assert_eq!(out.status.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    assert!(gone_within(grandchild, Duration::from_secs(2)).await);
    assert!(servers.fake.complete().is_none());
}

#[tokio::test]
async fn missing_configuration_exits_2_naming_the_variable() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .env_clear()
        .env("RUNWARDEN_RUN_ID", uuid::Uuid::new_v4().to_string())
        .env("RUNS_URL", "http://127.0.0.1:9")
        .env("INTERNAL_AUTH_SECRET", INTERNAL)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RUNNER_TICKET"), "{stderr}");
    assert!(!stderr.contains(INTERNAL));
}
