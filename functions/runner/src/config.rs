//! The runner's configuration, from the environment a job execution (or runs' local
//! executor) gives it; documented in `.env.example`.

use runwarden_contracts::RunId;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use runwarden_platform::config::{
    http_url, optional_var, parse_value, required_secret, required_var,
};
use runwarden_platform::{ConfigError, Environment};
use secrecy::SecretString;
use url::Url;

/// Agent name -> argv (program first).
pub type Agents = BTreeMap<String, Vec<String>>;

/// The agent every runner knows unless `RUNNER_AGENTS` says otherwise.
pub const DEMO_AGENT: &str = "demo";
/// The demo agent's binary, beside the runner's own.
pub const DEMO_AGENT_BIN: &str = "demo-agent";

/// Not `Debug`: it holds the dispatch ticket and the internal secret.
pub struct Config {
    pub env: Environment,
    pub run_id: RunId,
    /// runs' base URL (`/internal/runner/...` is appended).
    pub runs_url: Url,
    /// Single-use: exchanged once for the runner token.
    pub ticket: SecretString,
    /// The `X-Internal-Auth` value.
    pub internal_secret: SecretString,
    pub agents: Agents,
    /// `None`: a fresh directory under the temp dir, removed at the end.
    pub work_dir: Option<PathBuf>,
    pub project: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let env = Environment::from_env()?;
        let run_id: RunId = parse_value("RUNWARDEN_RUN_ID", &required_var("RUNWARDEN_RUN_ID")?)?;
        let runs_url = http_url("RUNS_URL", &required_var("RUNS_URL")?)?;
        if env.is_production() && runs_url.scheme() != "https" {
            // The dispatch ticket, the internal secret and every secret value travel over it.
            return Err(ConfigError::Invalid {
                name: "RUNS_URL",
                reason: "must be https in production".into(),
            });
        }
        let agents = match optional_var("RUNNER_AGENTS") {
            Some(raw) => parse_agents(&raw)?,
            None => default_agents(),
        };
        Ok(Self {
            env,
            run_id,
            runs_url,
            ticket: required_secret("RUNNER_TICKET")?,
            internal_secret: required_secret("INTERNAL_AUTH_SECRET")?,
            agents,
            work_dir: optional_var("RUNNER_WORK_DIR").map(PathBuf::from),
            project: optional_var("GOOGLE_CLOUD_PROJECT"),
        })
    }
}

/// `RUNNER_AGENTS`: a JSON object, agent name -> non-empty argv array of strings.
pub fn parse_agents(raw: &str) -> Result<Agents, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: "RUNNER_AGENTS",
        reason,
    };
    let agents: Agents = serde_json::from_str(raw).map_err(|e| {
        invalid(format!(
            "expected a JSON object of agent name -> argv array: {e}"
        ))
    })?;
    for (name, argv) in &agents {
        if name.is_empty() || argv.is_empty() || argv[0].is_empty() {
            return Err(invalid(format!(
                "agent {name:?} needs a non-empty name and argv"
            )));
        }
    }
    Ok(agents)
}

/// `{"demo": ["<dir of this executable>/demo-agent"]}`.
pub fn default_agents() -> Agents {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let demo = dir.join(DEMO_AGENT_BIN).to_string_lossy().into_owned();
    Agents::from([(DEMO_AGENT.to_owned(), vec![demo])])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_parse_and_reject_empty_argv() {
        let agents = parse_agents(r#"{"env": ["/bin/sh", "-c", "env"]}"#).unwrap();
        assert_eq!(agents["env"], ["/bin/sh", "-c", "env"]);
        for bad in [
            r#"{"x": []}"#,
            r#"{"x": [""]}"#,
            r#"["a"]"#,
            r#"{"x": "a"}"#,
            "nope",
        ] {
            let err = parse_agents(bad).unwrap_err();
            assert!(err.to_string().contains("RUNNER_AGENTS"), "{err}");
        }
    }

    #[test]
    fn the_default_is_the_demo_agent_beside_the_runner() {
        let agents = default_agents();
        assert_eq!(agents.len(), 1);
        assert!(agents[DEMO_AGENT][0].ends_with("/demo-agent"));
    }
}
