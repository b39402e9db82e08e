//! `/internal/`: called by runs (admission, settlement) and by operators' tooling (plan,
//! overrides), behind `X-Internal-Auth`. Thin: parse, call `store`, answer.

use axum::Json as AxumJson;
use axum::extract::State;
use runwarden_contracts::quotas::{AdmissionRequest, Admitted, SettlementRequest};
use runwarden_platform::error::ApiError;
use runwarden_platform::extract::{Json, Path};
use runwarden_tenancy::OrgId;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{QuotasError, QuotasResult};
use crate::rules::Overrides;
use crate::store::{self, Ending, OrgLimits, Settlement};

pub async fn admit(
    State(state): State<AppState>,
    Json(req): Json<AdmissionRequest>,
) -> QuotasResult<AxumJson<Admitted>> {
    if req.requested_cap_secs <= 0 {
        return Err(ApiError::invalid("invalid_cap", "requested_cap_secs must be positive").into());
    }
    let grant = store::admit(
        &state.pool,
        OrgId::from(req.org_id),
        req.run_id.as_uuid(),
        req.requested_cap_secs,
    )
    .await?
    .map_err(QuotasError::Refused)?;
    Ok(AxumJson(Admitted {
        admitted: true,
        run_id: req.run_id,
        granted_cap_secs: grant.granted_cap_secs,
        reserved_cents: grant.reserved_cents,
    }))
}

pub async fn settle(
    State(state): State<AppState>,
    Json(req): Json<SettlementRequest>,
) -> QuotasResult<AxumJson<Settlement>> {
    if req.actual_secs < 0 {
        return Err(
            ApiError::invalid("invalid_duration", "actual_secs must not be negative").into(),
        );
    }
    let ending = Ending::Finished {
        actual_secs: req.actual_secs,
    };
    let settlement = store::settle(&state.pool, req.run_id.as_uuid(), ending)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(AxumJson(settlement))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    pub plan: String,
}

fn limits_body(org: OrgId, l: &OrgLimits) -> AxumJson<Value> {
    AxumJson(json!({
        "org_id": org,
        "plan": l.plan,
        "limits": l.limits,
        "overrides": l.overrides,
    }))
}

pub async fn set_plan(
    State(state): State<AppState>,
    Path(org): Path<OrgId>,
    Json(req): Json<PlanRequest>,
) -> QuotasResult<AxumJson<Value>> {
    let limits = store::set_plan(&state.pool, org, &req.plan).await?;
    Ok(limits_body(org, &limits))
}

pub async fn set_overrides(
    State(state): State<AppState>,
    Path(org): Path<OrgId>,
    Json(overrides): Json<Overrides>,
) -> QuotasResult<AxumJson<Value>> {
    let limits = store::set_overrides(&state.pool, org, &overrides).await?;
    Ok(limits_body(org, &limits))
}
