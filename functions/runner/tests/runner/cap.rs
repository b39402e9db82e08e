//! The wall-clock cap: the agent and everything it started are killed, and the run is
//! reported timed out.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn an_agent_past_its_cap_is_killed_and_reported_timed_out() {
    let scratch = Scratch::new();
    let servers = Servers::start(Fake::new("agent", json!({}), 2)).await;
    let out = run_runner(
        &servers,
        Options::agent(
            &["/bin/sh", "-c", "echo $$ > agent.pid; sleep 30"],
            scratch.path(),
        ),
    )
    .await;
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    out.assert_no_leaks();
    // A correctness bound, not a benchmark: killed at ~2 s, never near the 30 s sleep.
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    assert!(out.elapsed >= Duration::from_secs(2), "{:?}", out.elapsed);
    let fake = &servers.fake;
    let complete = fake.complete().unwrap();
    assert_eq!(complete["outcome"], "timed_out");
    assert_eq!(complete["exit_code"], json!(null));
    assert_eq!(complete["actual_secs"], 2);
    assert_eq!(
        fake.events().last().unwrap(),
        &json!({"kind": "status", "message": "timed_out"})
    );
    let pid = read_pid(&scratch.path().join("agent.pid")).await;
    assert!(gone_within(pid, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn a_grandchild_that_ignores_sigterm_is_killed_too() {
    let scratch = Scratch::new();
    let servers = Servers::start(Fake::new("agent", json!({}), 2)).await;
    // Both the shell and its background child ignore SIGTERM: only SIGKILL to the whole
    // process group ends them.
    let script = r#"trap '' TERM; sleep 30 & echo $! > grandchild.pid; wait; wait"#;
    let out = run_runner(
        &servers,
        Options::agent(&["/bin/sh", "-c", script], scratch.path()),
    )
    .await;
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    let fake = &servers.fake;
    let complete = fake.complete().unwrap();
    assert_eq!(complete["outcome"], "timed_out");
    assert_eq!(complete["actual_secs"], 2);
    let grandchild = read_pid(&scratch.path().join("grandchild.pid")).await;
    assert!(
        gone_within(grandchild, Duration::from_secs(2)).await,
        "grandchild {grandchild} survived the cap"
    );
}

#[tokio::test]
async fn a_grandchild_left_behind_by_a_finished_agent_is_killed() {
    let scratch = Scratch::new();
    let servers = Servers::start(Fake::new("agent", json!({}), 30)).await;
    // The agent exits at once and leaves a sleeper behind (its output closed, so the runner
    // is not kept waiting for the pipes).
    let script = r#"sleep 30 >/dev/null 2>&1 & echo $! > leftover.pid; exit 0"#;
    let out = run_runner(
        &servers,
        Options::agent(&["/bin/sh", "-c", script], scratch.path()),
    )
    .await;
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    assert_eq!(servers.fake.complete().unwrap()["outcome"], "succeeded");
    let leftover = read_pid(&scratch.path().join("leftover.pid")).await;
    assert!(gone_within(leftover, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn a_process_that_left_the_group_does_not_hold_the_runner() {
    let scratch = Scratch::new();
    let servers = Servers::start(Fake::new("agent", json!({}), 30)).await;
    // setsid puts the sleeper in a session (and group) of its own, out of the runner's
    // reach, with the agent's stdout still open: the runner stops reading after a grace.
    let script = r#"setsid sleep 30 & echo $! > escaped.pid; echo done"#;
    let out = run_runner(
        &servers,
        Options::agent(&["/bin/sh", "-c", script], scratch.path()),
    )
    .await;
    let escaped = read_pid(&scratch.path().join("escaped.pid")).await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(escaped).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    assert!(servers.fake.stdout_lines().contains(&"done".to_owned()));
    assert_eq!(servers.fake.complete().unwrap()["outcome"], "succeeded");
}
