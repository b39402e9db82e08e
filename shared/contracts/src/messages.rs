//! Pub/Sub payloads (the `data` of a message, JSON). Readers ignore fields they do not know,
//! so a field can be added before its readers use it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::RunId;

/// On [`crate::topics::RUN_DISPATCH`]: a run quotas admitted, to be started. Written to
/// runs' outbox in the transaction that queues the run; redelivery starts nothing twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDispatch {
    pub run_id: RunId,
    /// The run's org (a `runwarden_tenancy::OrgId`), so the receiver can enter its tenancy.
    pub org_id: Uuid,
}

/// On [`crate::topics::RUN_FINISHED`]: a run that ended, however it ended. quotas settles
/// its reservation from `actual_secs` (idempotent by run id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFinished {
    pub run_id: RunId,
    /// The run's org (a `runwarden_tenancy::OrgId`).
    pub org_id: Uuid,
    /// The run's final status: `succeeded`, `failed`, `timed_out` or `cancelled`.
    pub status: String,
    /// The seconds the run is billed for.
    pub actual_secs: i64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const RUN: &str = "0191e5f2-7b3c-7a00-8000-000000000001";
    const ORG: &str = "0191e5f2-7b3c-7a00-8000-000000000002";

    #[test]
    fn run_dispatch_json_is_pinned() {
        let wire = json!({"run_id": RUN, "org_id": ORG});
        let message: RunDispatch = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(message.run_id.to_string(), RUN);
        assert_eq!(serde_json::to_value(message).unwrap(), wire);
    }

    #[test]
    fn run_finished_json_is_pinned_and_unknown_fields_are_ignored() {
        let wire = json!({"run_id": RUN, "org_id": ORG, "status": "timed_out", "actual_secs": 7});
        let message: RunFinished = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(
            (message.status.as_str(), message.actual_secs),
            ("timed_out", 7)
        );
        assert_eq!(serde_json::to_value(&message).unwrap(), wire);
        let mut newer = wire;
        newer["exit_code"] = json!(0);
        assert_eq!(
            serde_json::from_value::<RunFinished>(newer).unwrap(),
            message
        );
    }
}
