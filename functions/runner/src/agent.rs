//! The agent as a child process: its work folder, the only environment it gets, its own
//! process group (so the cap kills whatever it started too), and the signals it gets.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::process::{Child, Command};
use uuid::Uuid;

use runwarden_contracts::RunId;
use runwarden_contracts::runner_api::RunnerSecret;

/// Used when the runner itself has no `PATH`.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The agent's home and working folder, with `artifacts/` and `tmp/` inside. A folder the
/// runner made up itself is removed when this is dropped.
pub struct WorkDir {
    pub root: PathBuf,
    pub artifacts: PathBuf,
    pub tmp: PathBuf,
    remove_on_drop: bool,
}

fn private_dir(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

impl WorkDir {
    /// `configured` (`RUNNER_WORK_DIR`) as is, or a fresh folder under the temp dir.
    pub fn prepare(configured: Option<&Path>, run_id: RunId) -> io::Result<Self> {
        let (root, remove_on_drop) = match configured {
            Some(dir) => (dir.to_path_buf(), false),
            None => (
                std::env::temp_dir().join(format!(
                    "runwarden-run-{run_id}-{}",
                    Uuid::new_v4().simple()
                )),
                true,
            ),
        };
        private_dir(&root)?;
        let work = Self {
            artifacts: root.join("artifacts"),
            tmp: root.join("tmp"),
            root,
            remove_on_drop,
        };
        private_dir(&work.artifacts)?;
        private_dir(&work.tmp)?;
        Ok(work)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove_on_drop {
            // remove_dir_all does not follow symlinks the agent may have left.
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// The agent's whole environment. Not `Debug`: it holds secret values.
pub struct ChildEnv {
    plain: Vec<(&'static str, OsString)>,
    secrets: Vec<(String, SecretString)>,
    /// Secret names passed, in runs' order (also in `RUNWARDEN_SECRET_NAMES`).
    pub passed: Vec<String>,
    /// Secrets not passed, and why (names only).
    pub skipped: Vec<(String, &'static str)>,
}

/// A portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Names the runner sets itself; a secret cannot replace them.
fn is_reserved(name: &str) -> bool {
    matches!(name, "PATH" | "LANG" | "HOME" | "TMPDIR") || name.starts_with("RUNWARDEN_")
}

impl ChildEnv {
    /// PATH, LANG, HOME, TMPDIR, the `RUNWARDEN_*` variables and one variable per secret.
    /// Nothing of the runner's own environment besides `PATH`: not the dispatch ticket, not the
    /// token, not the internal secret.
    pub fn new(run_id: RunId, input: &Value, work: &WorkDir, secrets: &[RunnerSecret]) -> Self {
        let mut passed = Vec::new();
        let mut skipped = Vec::new();
        let mut kept: Vec<(String, SecretString)> = Vec::new();
        for secret in secrets {
            // `SecretName` already holds to the rule; checked again because this is the
            // agent's environment, whatever produced the name.
            let name = secret.name.as_str().to_owned();
            if !is_env_name(&name) {
                skipped.push((name, "not a valid environment variable name"));
            } else if is_reserved(&name) {
                skipped.push((name, "a name the runner sets itself"));
            } else if passed.contains(&name) {
                skipped.push((name, "given twice"));
            } else {
                passed.push(name.clone());
                kept.push((name, secret.value.clone()));
            }
        }
        let plain = vec![
            (
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
            ),
            ("LANG", "C.UTF-8".into()),
            ("HOME", work.root.clone().into_os_string()),
            ("TMPDIR", work.tmp.clone().into_os_string()),
            ("RUNWARDEN_RUN_ID", run_id.to_string().into()),
            ("RUNWARDEN_INPUT", input.to_string().into()),
            (
                "RUNWARDEN_ARTIFACTS_DIR",
                work.artifacts.clone().into_os_string(),
            ),
            ("RUNWARDEN_SECRET_NAMES", passed.join(",").into()),
        ];
        Self {
            plain,
            secrets: kept,
            passed,
            skipped,
        }
    }
}

/// Starts `argv` in `work` with exactly `env`, in a process group of its own, with stdout
/// and stderr piped to the runner.
pub fn spawn(argv: &[String], env: &ChildEnv, work: &WorkDir) -> io::Result<Child> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .current_dir(&work.root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its pid becomes its process group id: one killpg reaches its children too.
        .process_group(0)
        .kill_on_drop(true);
    for (name, value) in &env.plain {
        command.env(name, value);
    }
    for (name, value) in &env.secrets {
        command.env(name, value.expose_secret());
    }
    command.spawn()
}

/// Sends `signal` to the agent's whole process group (`pgid` = the agent's pid). A group
/// that is already gone is fine.
pub fn signal_group(pgid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pgid) else { return };
    if raw <= 1 {
        return;
    }
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(error = %e, ?signal, "signalling the agent's process group failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use runwarden_contracts::SecretName;
    use runwarden_contracts::runner_api::SecretKind;

    use super::*;

    fn secret(name: &str, value: &str) -> RunnerSecret {
        RunnerSecret {
            name: SecretName::parse(name).unwrap(),
            kind: SecretKind::SecretVariable,
            value: value.into(),
        }
    }

    #[test]
    fn env_names() {
        for ok in ["A", "API_KEY", "_x1"] {
            assert!(is_env_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A=B", "A B", "é"] {
            assert!(!is_env_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_environment_is_the_fixed_set_plus_fair_secrets() {
        let work = WorkDir::prepare(None, RunId::from(Uuid::nil())).unwrap();
        let root = work.root.clone();
        assert!(work.artifacts.is_dir() && work.tmp.is_dir());
        let env = ChildEnv::new(
            RunId::from(Uuid::nil()),
            &serde_json::json!({"sleep_seconds": 1}),
            &work,
            &[
                secret("A", "1"),
                secret("PATH", "/evil"),
                secret("RUNWARDEN_INPUT", "x"),
                secret("B", "2"),
                secret("A", "3"),
            ],
        );
        assert_eq!(env.passed, ["A", "B"]);
        let skipped: Vec<_> = env.skipped.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(skipped, ["PATH", "RUNWARDEN_INPUT", "A"]);
        // A name that is no environment variable name never gets here: the runner refuses
        // the whole secrets answer that carries it.
        let bad = serde_json::json!({"name": "BAD-NAME", "kind": "secret_variable", "value": "x"});
        assert!(serde_json::from_value::<RunnerSecret>(bad).is_err());
        let names: Vec<_> = env.plain.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "LANG",
                "HOME",
                "TMPDIR",
                "RUNWARDEN_RUN_ID",
                "RUNWARDEN_INPUT",
                "RUNWARDEN_ARTIFACTS_DIR",
                "RUNWARDEN_SECRET_NAMES"
            ]
        );
        assert_eq!(env.plain[5].1, r#"{"sleep_seconds":1}"#);
        assert_eq!(env.plain[7].1, "A,B");
        assert_ne!(env.plain[0].1, "/evil");
        drop(work);
        assert!(!root.exists(), "a made-up work dir is removed");
    }
}
