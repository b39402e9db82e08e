//! The runner job's calls to runs' runner API (`/internal/runner/...`) and its uploads to
//! Cloud Storage.
//!
//! Every call to runs carries `X-Internal-Auth`; after the exchange also the runner token.
//! Transient failures (no connection, timeouts, 5xx) are retried a few times with backoff;
//! a 4xx never is. 401 and 404 mean the run is over for this runner (cancelled, ended, or
//! its credential dead) and come back as [`CallError::Refused`].

use std::path::Path;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use runwarden_contracts::RunId;
use runwarden_contracts::runner_api::{
    self, ArtifactRequest, CompleteRequest, EventsRequest, ExchangeRequest, ExchangeResponse,
    RunnerSecret, SecretsResponse, UploadTarget,
};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const INTERNAL_AUTH: &str = "x-internal-auth";

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// 401 or 404: the dispatch ticket or runner token is not (or no longer) good for this run.
    #[error("runs refused the call with {status} ({code})")]
    Refused { status: u16, code: String },
    /// Another 4xx: this request is wrong and retrying will not help.
    #[error("runs rejected the call with {status} ({code})")]
    Rejected { status: u16, code: String },
    /// No answer, or only 5xx, after the retries.
    #[error("runs did not answer: {0}")]
    Unavailable(String),
}

impl CallError {
    pub fn is_refused(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }
}

/// How often and how patiently transient failures are retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub first_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            first_delay: Duration::from_millis(300),
        }
    }
}

impl Retry {
    fn delay(&self, attempt: u32) -> Duration {
        self.first_delay * 2u32.saturating_pow(attempt.saturating_sub(1))
    }
}

/// May this call be sent again when it is unknown whether the first one arrived? The
/// exchange may not: a dispatch ticket is single-use, so a replay after a lost answer is a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    Safe,
    OnlyIfUnsent,
}

/// The runner's HTTP client for runs (and for uploads).
#[derive(Clone)]
pub struct RunsClient {
    http: reqwest::Client,
    base: String,
    run_id: RunId,
    internal: HeaderValue,
    bearer: Option<HeaderValue>,
    retry: Retry,
}

fn sensitive(value: &str) -> anyhow::Result<HeaderValue> {
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| anyhow::anyhow!("a credential is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

impl RunsClient {
    pub fn new(
        runs_url: &url::Url,
        run_id: RunId,
        internal_secret: &SecretString,
        retry: Retry,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            // A redirect would carry X-Internal-Auth wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            base: runs_url.as_str().trim_end_matches('/').to_owned(),
            run_id,
            internal: sensitive(internal_secret.expose_secret())?,
            bearer: None,
            retry,
        })
    }

    /// The same client, now also presenting the runner token.
    pub fn with_token(mut self, token: &SecretString) -> anyhow::Result<Self> {
        self.bearer = Some(sensitive(&format!("Bearer {}", token.expose_secret()))?);
        Ok(self)
    }

    fn run_path(&self, rest: &str) -> String {
        format!("{}{}", self.base, runner_api::run_path(self.run_id, rest))
    }

    /// Trades the dispatch ticket for the runner token (and what to run).
    pub async fn exchange(&self, ticket: &SecretString) -> Result<ExchangeResponse, CallError> {
        let body = ExchangeRequest {
            run_id: self.run_id,
            ticket: ticket.clone(),
        };
        let url = format!("{}{}", self.base, runner_api::EXCHANGE_PATH);
        let response = self
            .call(Method::POST, &url, Some(&body), Replay::OnlyIfUnsent)
            .await?;
        json(response).await
    }

    pub async fn secrets(&self) -> Result<Vec<RunnerSecret>, CallError> {
        let url = self.run_path("secrets");
        let response = self
            .call::<()>(Method::GET, &url, None, Replay::Safe)
            .await?;
        Ok(json::<SecretsResponse>(response).await?.secrets)
    }

    pub async fn send_events(&self, events: &EventsRequest) -> Result<(), CallError> {
        let url = self.run_path("events");
        self.call(Method::POST, &url, Some(events), Replay::Safe)
            .await?;
        Ok(())
    }

    pub async fn register_artifact(
        &self,
        artifact: &ArtifactRequest,
    ) -> Result<UploadTarget, CallError> {
        let url = self.run_path("artifacts");
        let response = self
            .call(Method::POST, &url, Some(artifact), Replay::Safe)
            .await?;
        json(response).await
    }

    pub async fn complete(&self, completion: &CompleteRequest) -> Result<(), CallError> {
        let url = self.run_path("complete");
        self.call(Method::POST, &url, Some(completion), Replay::Safe)
            .await?;
        Ok(())
    }

    async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: &str,
        body: Option<&B>,
        replay: Replay,
    ) -> Result<reqwest::Response, CallError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .request(method.clone(), url)
                .timeout(Duration::from_secs(30))
                .header(INTERNAL_AUTH, self.internal.clone());
            if let Some(bearer) = &self.bearer {
                request = request.header(AUTHORIZATION, bearer.clone());
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let failure = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status();
                    if !status.is_server_error() {
                        let code = problem_code(response).await;
                        return Err(
                            if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND) {
                                CallError::Refused {
                                    status: status.as_u16(),
                                    code,
                                }
                            } else {
                                CallError::Rejected {
                                    status: status.as_u16(),
                                    code,
                                }
                            },
                        );
                    }
                    format!("{status}")
                }
                Err(e) => {
                    // Only a connection that never opened is certainly unsent.
                    if replay == Replay::OnlyIfUnsent && !e.is_connect() {
                        return Err(CallError::Unavailable(e.without_url().to_string()));
                    }
                    e.without_url().to_string()
                }
            };
            if attempt >= self.retry.attempts {
                return Err(CallError::Unavailable(failure));
            }
            let delay = self.retry.delay(attempt);
            tracing::warn!(
                path = path_of(url),
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                failure,
                "call to runs failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Sends `size` bytes of `file` where `target` says. Errors never include the URL.
    pub async fn upload(
        &self,
        target: &UploadTarget,
        file: &Path,
        size: u64,
    ) -> Result<(), UploadError> {
        let method = match target.method.to_ascii_uppercase().as_str() {
            "PUT" => Method::PUT,
            "POST" => Method::POST,
            other => return Err(UploadError::Rejected(format!("method {other:?}"))),
        };
        let url = reqwest::Url::parse(target.upload_url.expose_secret())
            .map_err(|_| UploadError::Rejected("the upload URL does not parse".into()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UploadError::Rejected(
                "the upload URL is not http(s)".into(),
            ));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &target.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| UploadError::Rejected(format!("header name {name:?}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| UploadError::Rejected(format!("header {name} value")))?;
            headers.insert(name, value);
        }
        headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let body = crate::artifacts::open_regular(file, size)
                .await
                .map_err(|e| UploadError::File(e.to_string()))?;
            let request = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                // Generous: up to 100 MiB at a slow 1 MiB/s, plus the handshake.
                .timeout(Duration::from_secs(120 + size / (1024 * 1024)))
                .body(reqwest::Body::from(body));
            let failure = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) if !response.status().is_server_error() => {
                    return Err(UploadError::Rejected(format!(
                        "storage answered {}",
                        response.status()
                    )));
                }
                Ok(response) => format!("storage answered {}", response.status()),
                Err(e) => e.without_url().to_string(),
            };
            if attempt >= self.retry.attempts {
                return Err(UploadError::Unavailable(failure));
            }
            let delay = self.retry.delay(attempt);
            tracing::warn!(
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                failure,
                "upload failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the upload was refused: {0}")]
    Rejected(String),
    #[error("the upload failed: {0}")]
    Unavailable(String),
    #[error("the artifact could not be read: {0}")]
    File(String),
}

/// The path of a runs URL for logs (it holds only the run id, never a credential).
fn path_of(url: &str) -> &str {
    url.find("/internal/").map_or(url, |at| &url[at..])
}

async fn json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, CallError> {
    let status = response.status().as_u16();
    response.json().await.map_err(|e| CallError::Rejected {
        status,
        code: format!("unreadable answer: {}", e.without_url()),
    })
}

/// The `code` of a problem+json answer (or `-`).
async fn problem_code(response: reqwest::Response) -> String {
    #[derive(Deserialize)]
    struct Problem {
        code: String,
    }
    match response.json::<Problem>().await {
        Ok(problem) => problem
            .code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect(),
        Err(_) => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles() {
        let retry = Retry::default();
        assert_eq!(retry.delay(1), Duration::from_millis(300));
        assert_eq!(retry.delay(2), Duration::from_millis(600));
        assert_eq!(retry.delay(3), Duration::from_millis(1200));
    }

    #[test]
    fn log_paths_hold_no_host() {
        assert_eq!(
            path_of("http://h:1/internal/runner/exchange"),
            "/internal/runner/exchange"
        );
    }
}
