//! Admitting a run: [`start`] records it (`admitting`), asks quotas (`POST
//! /internal/admissions`, `X-Internal-Auth`, through [`QuotasClient`]) and queues or refuses
//! it on quotas' answer. Admission is idempotent by run id, so asking again after a timeout or
//! a crash is safe; a retry with the same `Idempotency-Key` finds the same run.

use std::time::Duration;

use reqwest::StatusCode;
use runwarden_contracts::RunId;
use runwarden_contracts::quotas::{ADMISSIONS_PATH, AdmissionRequest, Admitted};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{OrgContext, OrgId};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use url::Url;

use crate::error::{ApiError, RunsError, RunsResult};
use crate::runs::{self, NewRun, Run, Status};

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
            admissions: base.join(ADMISSIONS_PATH)?,
            secret,
        })
    }

    pub async fn admit(&self, org: OrgId, run: RunId, cap_secs: i64) -> RunsResult<Admission> {
        let response = self
            .http
            .post(self.admissions.clone())
            .header("x-internal-auth", self.secret.expose_secret())
            .json(&AdmissionRequest {
                org_id: org.as_uuid(),
                run_id: run,
                requested_cap_secs: cap_secs,
            })
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "quotas unreachable");
                RunsError::unavailable()
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            StatusCode::OK => serde_json::from_value::<Admitted>(body)
                .map(|admitted| Admission::Admitted {
                    granted_cap_secs: admitted.granted_cap_secs,
                })
                .map_err(|e| {
                    RunsError::from(anyhow::anyhow!(
                        "quotas answered 200 with another body: {e}"
                    ))
                }),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::PAYMENT_REQUIRED => {
                Ok(Admission::Refused {
                    status,
                    problem: body,
                })
            }
            StatusCode::NOT_FOUND => Err(RunsError::not_found()),
            s if s.is_server_error() => {
                tracing::warn!(status = s.as_u16(), "quotas failed an admission");
                Err(RunsError::unavailable())
            }
            s => Err(RunsError::from(anyhow::anyhow!(
                "quotas answered {s} to an admission: {}",
                body["code"]
            ))),
        }
    }
}

/// Starts `new` in the caller's org: the run, queued (its dispatch committed), or
/// [`RunsError::Refused`] with quotas' problem. `tx` is the request's transaction (scoped to
/// the org); it commits the `admitting` run before quotas is asked, so a retry with the same
/// `Idempotency-Key` (or a concurrent one) finds it and never asks quotas for a second run.
/// A run already past admission is answered as it is; a run refused before replays its
/// refusal.
pub async fn start(
    quotas: &QuotasClient,
    pool: &PgPool,
    mut tx: Transaction<'static, Postgres>,
    ctx: &OrgContext,
    meta: &RequestMeta,
    new: &NewRun,
) -> RunsResult<Run> {
    let run = runs::insert(&mut tx, ctx, new).await?;
    tx.commit().await?;
    match run.status() {
        Status::Admitting => {}
        Status::Refused => {
            let problem = run.refusal.map(|p| p.0).unwrap_or(Value::Null);
            let status = problem["status"]
                .as_u64()
                .and_then(|s| StatusCode::from_u16(u16::try_from(s).ok()?).ok())
                .unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            return Err(RunsError::Refused { status, problem });
        }
        _ => return Ok(run),
    }
    let org = ctx.org_id;
    let admission = quotas.admit(org, run.id, run.requested_cap_secs).await?;
    let mut tx = pool.begin().await?;
    runwarden_tenancy::set_tenant(&mut tx, Some(org), Some(ctx.principal.user_id)).await?;
    match admission {
        Admission::Admitted { granted_cap_secs } => {
            let run = match runs::admitted(&mut tx, meta, ctx, run.id, granted_cap_secs).await {
                Ok(run) => run,
                // A concurrent retry with the same key finished the admission first.
                Err(RunsError::Api(ApiError::Conflict { .. })) => {
                    runs::get(&mut tx, org, run.id, false).await?
                }
                Err(e) => return Err(e),
            };
            tx.commit().await?;
            Ok(run)
        }
        Admission::Refused { status, problem } => {
            runs::refused(&mut tx, meta, ctx, run.id, &problem).await?;
            tx.commit().await?;
            Err(RunsError::Refused { status, problem })
        }
    }
}
