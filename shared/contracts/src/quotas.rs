//! quotas' internal API as runs calls it (`X-Internal-Auth`): admitting a run before it is
//! queued, and settling it when it ends (also done from [`crate::messages::RunFinished`]).
//! Both are idempotent by run id. A refusal is quotas' problem+json (429 or 402, its `code`
//! naming the limit), not a body here.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::RunId;

/// `POST` here with [`AdmissionRequest`]; 200 answers [`Admitted`].
pub const ADMISSIONS_PATH: &str = "/internal/admissions";
/// `POST` here with [`SettlementRequest`]; 200 answers [`Settlement`].
pub const SETTLEMENTS_PATH: &str = "/internal/settlements";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionRequest {
    /// The run's org (a `runwarden_tenancy::OrgId`).
    pub org_id: Uuid,
    pub run_id: RunId,
    /// Positive; quotas grants at most the plan's cap.
    pub requested_cap_secs: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admitted {
    /// Always true (a refusal is a problem, not this body).
    pub admitted: bool,
    pub run_id: RunId,
    pub granted_cap_secs: i64,
    pub reserved_cents: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementRequest {
    pub run_id: RunId,
    /// Not negative.
    pub actual_secs: i64,
}

/// A run's settlement as quotas recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub run_id: RunId,
    /// The reservation's status: `reserved`, `settled` or `timed_out` (settled at its cap by the reaper).
    pub status: String,
    pub actual_secs: Option<i64>,
    pub actual_cents: Option<i64>,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const RUN: &str = "0191e5f2-7b3c-7a00-8000-000000000001";
    const ORG: &str = "0191e5f2-7b3c-7a00-8000-000000000002";

    fn round_trip<T: Serialize + serde::de::DeserializeOwned>(wire: Value) {
        let value: T = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(serde_json::to_value(&value).unwrap(), wire);
    }

    #[test]
    fn bodies_json_is_pinned() {
        round_trip::<AdmissionRequest>(
            json!({"org_id": ORG, "run_id": RUN, "requested_cap_secs": 60}),
        );
        round_trip::<Admitted>(
            json!({"admitted": true, "run_id": RUN, "granted_cap_secs": 60, "reserved_cents": 5}),
        );
        round_trip::<SettlementRequest>(json!({"run_id": RUN, "actual_secs": 3}));
        round_trip::<Settlement>(
            json!({"run_id": RUN, "status": "settled", "actual_secs": 3, "actual_cents": 1}),
        );
        round_trip::<Settlement>(
            json!({"run_id": RUN, "status": "released", "actual_secs": null, "actual_cents": null}),
        );
    }

    #[test]
    fn requests_refuse_unknown_fields() {
        let extra = json!({"run_id": RUN, "actual_secs": 3, "plan": "enterprise"});
        assert!(serde_json::from_value::<SettlementRequest>(extra).is_err());
        let extra = json!({"org_id": ORG, "run_id": RUN, "requested_cap_secs": 1, "x": 1});
        assert!(serde_json::from_value::<AdmissionRequest>(extra).is_err());
    }
}
