//! The demo agent end to end: exchange, secrets, events, artifacts, outcome.

use std::path::Path;
use std::sync::atomic::Ordering;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn the_demo_agent_runs_end_to_end() {
    // The default agents: the demo agent beside the runner binary.
    assert_eq!(
        Path::new(env!("CARGO_BIN_EXE_demo-agent")).parent(),
        Path::new(env!("CARGO_BIN_EXE_runner")).parent()
    );
    let servers = Servers::start(Fake::new("demo", json!({"sleep_seconds": 2}), 60)).await;
    let out = run_runner(&servers, Options::default()).await;
    let fake = &servers.fake;
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    out.assert_no_leaks();
    assert_eq!(fake.bad_auth.load(Ordering::SeqCst), 0);

    // The calls, in order: exchange, secrets, events..., two artifacts, complete.
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(calls[..2], ["POST exchange", "GET secrets"]);
    assert_eq!(calls.last().unwrap(), "POST complete");
    assert_eq!(calls.iter().filter(|c| *c == "POST artifacts").count(), 2);

    let events = fake.events();
    assert_eq!(events[0], json!({"kind": "status", "message": "started"}));
    assert_eq!(
        events.last().unwrap(),
        &json!({"kind": "status", "message": "succeeded"})
    );
    let stdout = fake.stdout_lines();
    assert_eq!(stdout[0], "secrets: A,B", "{stdout:?}");
    let percents: Vec<u64> = events
        .iter()
        .filter(|e| e["kind"] == "progress")
        .map(|e| e["percent"].as_u64().unwrap())
        .collect();
    assert_eq!(percents, [0, 50, 100]);
    assert!(
        events.contains(&json!({"kind": "progress", "percent": 50, "message": "progress: 50%"}))
    );
    let received = fake.everything_received();
    assert!(!received.contains(VALUE_A) && !received.contains(VALUE_B));
    // Lines were batched, not sent one per request.
    let batches = fake.batches.lock().unwrap().clone();
    assert!(batches.len() < events.len(), "{batches:?}");

    // Two artifacts, registered with their type and size, uploaded byte for byte.
    let artifacts = fake.artifacts.lock().unwrap().clone();
    let uploads = fake.uploads.lock().unwrap().clone();
    assert_eq!(artifacts.len(), 2);
    assert_eq!(uploads.len(), 2);
    for (name, content_type, magic) in [
        ("screenshot.png", "image/png", &b"\x89PNG\r\n\x1a\n"[..]),
        ("video.webm", "video/webm", &[0x1a, 0x45, 0xdf, 0xa3][..]),
    ] {
        let registered = artifacts.iter().find(|a| a["name"] == name).unwrap();
        assert_eq!(registered["content_type"], content_type);
        let upload = uploads
            .iter()
            .find(|u| u.path == format!("{}/{name}", fake.run_id))
            .unwrap();
        assert_eq!(upload.method, "PUT");
        assert_eq!(upload.content_type.as_deref(), Some(content_type));
        assert!(
            upload.bytes.starts_with(magic),
            "{name} has the wrong magic"
        );
        assert!(upload.bytes.len() > 100, "{name} is too small to be real");
        assert_eq!(registered["size"], upload.bytes.len());
        assert_eq!(
            upload.content_length.as_deref(),
            Some(upload.bytes.len().to_string().as_str())
        );
        assert_eq!(upload.transfer_encoding, None);
    }

    let complete = fake.complete().unwrap();
    assert_eq!(complete["outcome"], "succeeded");
    assert_eq!(complete["exit_code"], 0);
    let secs = complete["actual_secs"].as_i64().unwrap();
    assert!((2..=60).contains(&secs), "{complete}");
    assert_eq!(complete.as_object().unwrap().len(), 3);

    // The work folder the runner made up is gone.
    let prefix = format!("runwarden-run-{}-", fake.run_id);
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let scratch = Scratch::new();
    let fake = Fake::new("agent", json!({}), 30);
    fake.exchange_503s.store(1, Ordering::SeqCst);
    fake.events_503s.store(1, Ordering::SeqCst);
    let servers = Servers::start(fake).await;
    let out = run_runner(
        &servers,
        Options::agent(&["/bin/sh", "-c", "echo hello"], scratch.path()),
    )
    .await;
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    let fake = &servers.fake;
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(calls[..2], ["POST exchange", "POST exchange"]);
    assert!(fake.stdout_lines().contains(&"hello".to_owned()));
    assert_eq!(fake.complete().unwrap()["outcome"], "succeeded");
}

#[tokio::test]
async fn a_failing_agent_is_reported_failed_with_its_exit_code() {
    let scratch = Scratch::new();
    let servers = Servers::start(Fake::new("agent", json!({}), 30)).await;
    let out = run_runner(
        &servers,
        Options::agent(&["/bin/sh", "-c", "echo oops >&2; exit 7"], scratch.path()),
    )
    .await;
    // The runner did its job: exit 0 even though the agent failed.
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    let fake = &servers.fake;
    assert!(fake.log_lines().contains(&"stderr: oops".to_owned()));
    let complete = fake.complete().unwrap();
    assert_eq!(complete["outcome"], "failed");
    assert_eq!(complete["exit_code"], 7);
}

#[tokio::test]
async fn an_unknown_agent_is_reported_failed_without_starting_anything() {
    let servers = Servers::start(Fake::new("no-such-agent", json!({}), 30)).await;
    let out = run_runner(&servers, Options::default()).await;
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    out.assert_no_leaks();
    let fake = &servers.fake;
    let complete = fake.complete().unwrap();
    assert_eq!(
        complete,
        json!({"outcome": "failed", "exit_code": null, "actual_secs": 0})
    );
    let events = fake.events();
    assert!(
        !events
            .iter()
            .any(|e| e["kind"] == "status" && e["message"] == "started")
    );
    assert!(
        fake.log_lines()
            .iter()
            .any(|l| l.contains("no agent named \"no-such-agent\"")),
        "{events:?}"
    );
}

#[tokio::test]
async fn chatty_agents_are_batched_within_runs_body_limit() {
    let scratch = Scratch::new();
    let servers = Servers::start(Fake::new("agent", json!({}), 30)).await;
    // 3000 short lines and 40 lines of 10 000 bytes (cut to 4 KiB).
    let script = "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done; \
                  head -c 400000 /dev/zero | tr '\\0' 'x' | fold -w 10000";
    let out = run_runner(
        &servers,
        Options::agent(&["/bin/sh", "-c", script], scratch.path()),
    )
    .await;
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    let fake = &servers.fake;
    let lines = fake.stdout_lines();
    assert_eq!(lines.len(), 3040);
    assert_eq!(lines[2999], "line 2999");
    assert!(lines[3000..].iter().all(|l| l.len() == 4096));
    let batches = fake.batches.lock().unwrap().clone();
    assert!(batches.iter().all(|&n| n <= 100), "{batches:?}");
    assert!(batches.len() < 200, "{} batches", batches.len());
    assert_eq!(fake.complete().unwrap()["outcome"], "succeeded");
}
