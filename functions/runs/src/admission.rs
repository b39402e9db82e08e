//! Asking quotas to admit a run (`POST /internal/admissions`, `X-Internal-Auth`). Admission
//! is idempotent by run id, so asking again after a timeout or a crash is safe.

use std::time::Duration;

use reqwest::StatusCode;
use runwarden_tenancy::OrgId;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use url::Url;
use uuid::Uuid;

use crate::error::{RunsError, RunsResult};

/// Quotas' answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Admitted {
        granted_cap_secs: i64,
    },
    /// 429 or 402 with quotas' problem (its `code` says which limit), passed on as is.
    Refused {
        status: StatusCode,
        problem: Value,
    },
}

#[derive(Clone)]
pub struct QuotasClient {
    http: reqwest::Client,
    admissions: Url,
    secret: SecretString,
}

impl QuotasClient {
    pub fn new(base: &Url, secret: SecretString) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            admissions: base.join("/internal/admissions")?,
            secret,
        })
    }

    pub async fn admit(&self, org: OrgId, run: Uuid, cap_secs: i64) -> RunsResult<Admission> {
        let response = self
            .http
            .post(self.admissions.clone())
            .header("x-internal-auth", self.secret.expose_secret())
            .json(&json!({"org_id": org, "run_id": run, "requested_cap_secs": cap_secs}))
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "quotas unreachable");
                RunsError::Unavailable
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            StatusCode::OK => body["granted_cap_secs"]
                .as_i64()
                .map(|granted_cap_secs| Admission::Admitted { granted_cap_secs })
                .ok_or_else(|| {
                    RunsError::Internal(anyhow::anyhow!("quotas answered 200 without a cap"))
                }),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::PAYMENT_REQUIRED => {
                Ok(Admission::Refused {
                    status,
                    problem: body,
                })
            }
            StatusCode::NOT_FOUND => Err(RunsError::NotFound),
            s if s.is_server_error() => {
                tracing::warn!(status = s.as_u16(), "quotas failed an admission");
                Err(RunsError::Unavailable)
            }
            s => Err(RunsError::Internal(anyhow::anyhow!(
                "quotas answered {s} to an admission: {}",
                body["code"]
            ))),
        }
    }
}
