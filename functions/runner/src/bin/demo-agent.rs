//! `demo-agent`: the real agent behind `"agent": "demo"`, so the whole path of a run can be
//! seen locally. Input (`RUNWARDEN_INPUT`): `{"sleep_seconds": N}` (default 3, at most 3600).
//!
//! It prints `secrets: A,B` (the names of the secrets it received, never their values),
//! prints `progress: <p>%` about once a second for N seconds, then renders `screenshot.png`
//! and `video.webm` (a one-second VP8 clip) into `RUNWARDEN_ARTIFACTS_DIR` with ffmpeg.
//!
//! Exit codes: 0 done, 2 bad input or environment, 3 ffmpeg missing, 4 ffmpeg failed,
//! 5 stdout closed.

use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const DEFAULT_SLEEP_SECONDS: u64 = 3;
const MAX_SLEEP_SECONDS: u64 = 3600;

/// `RUNWARDEN_INPUT` -> seconds to sleep. Absent, `null` or without `sleep_seconds`: the
/// default; more than the maximum: the maximum.
fn sleep_seconds(input: Option<&str>) -> Result<u64, String> {
    let input = match input.map(str::trim) {
        None | Some("") => return Ok(DEFAULT_SLEEP_SECONDS),
        Some(raw) => serde_json::from_str::<Value>(raw)
            .map_err(|e| format!("RUNWARDEN_INPUT is not JSON: {e}"))?,
    };
    let seconds = match &input {
        Value::Null => None,
        Value::Object(fields) => fields.get("sleep_seconds").filter(|v| !v.is_null()),
        _ => return Err("RUNWARDEN_INPUT must be a JSON object".into()),
    };
    match seconds {
        None => Ok(DEFAULT_SLEEP_SECONDS),
        Some(value) => value
            .as_u64()
            .map(|n| n.min(MAX_SLEEP_SECONDS))
            .ok_or_else(|| "sleep_seconds must be a non-negative whole number".into()),
    }
}

/// One line on stdout, flushed at once (the runner streams lines as they come).
fn say(line: &str) -> Result<(), ExitCode> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|_| ExitCode::from(5))
}

fn ffmpeg(args: &[&str], output: &Path) -> Result<(), ExitCode> {
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(output)
        .stdin(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => {
            eprintln!(
                "demo-agent: ffmpeg failed rendering {} ({status})",
                output.display()
            );
            Err(ExitCode::from(4))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "demo-agent: ffmpeg is not installed (apt-get install ffmpeg); \
                 it renders screenshot.png and video.webm"
            );
            Err(ExitCode::from(3))
        }
        Err(e) => {
            eprintln!("demo-agent: ffmpeg could not start: {e}");
            Err(ExitCode::from(3))
        }
    }
}

fn run() -> Result<(), ExitCode> {
    let seconds = sleep_seconds(std::env::var("RUNWARDEN_INPUT").ok().as_deref()).map_err(|e| {
        eprintln!("demo-agent: {e}");
        ExitCode::from(2)
    })?;
    let Some(artifacts) = std::env::var_os("RUNWARDEN_ARTIFACTS_DIR") else {
        eprintln!("demo-agent: RUNWARDEN_ARTIFACTS_DIR is not set");
        return Err(ExitCode::from(2));
    };
    let artifacts = Path::new(&artifacts);

    // Names only, and only those really set.
    let names: Vec<String> = std::env::var("RUNWARDEN_SECRET_NAMES")
        .unwrap_or_default()
        .split(',')
        .filter(|name| !name.is_empty() && std::env::var_os(name).is_some())
        .map(str::to_owned)
        .collect();
    say(&format!("secrets: {}", names.join(",")))?;

    let start = Instant::now();
    for second in 0..seconds {
        say(&format!("progress: {}%", second * 100 / seconds))?;
        let next = start + Duration::from_secs(second + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    say("progress: 100%")?;

    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=1",
            "-frames:v",
            "1",
        ],
        &artifacts.join("screenshot.png"),
    )?;
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=10",
            "-t",
            "1",
            "-c:v",
            "libvpx",
            "-b:v",
            "200k",
        ],
        &artifacts.join("video.webm"),
    )?;
    say("artifacts: screenshot.png video.webm")?;
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_defaults_clamps_and_refuses_nonsense() {
        assert_eq!(sleep_seconds(None), Ok(3));
        assert_eq!(sleep_seconds(Some("null")), Ok(3));
        assert_eq!(sleep_seconds(Some("{}")), Ok(3));
        assert_eq!(sleep_seconds(Some(r#"{"sleep_seconds": null}"#)), Ok(3));
        assert_eq!(sleep_seconds(Some(r#"{"sleep_seconds": 0}"#)), Ok(0));
        assert_eq!(sleep_seconds(Some(r#"{"sleep_seconds": 7}"#)), Ok(7));
        assert_eq!(sleep_seconds(Some(r#"{"sleep_seconds": 99999}"#)), Ok(3600));
        for bad in [
            r#"{"sleep_seconds": -1}"#,
            r#"{"sleep_seconds": 1.5}"#,
            r#"{"sleep_seconds": "3"}"#,
            "[1]",
            "nope",
        ] {
            assert!(sleep_seconds(Some(bad)).is_err(), "{bad}");
        }
    }
}
