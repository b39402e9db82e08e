//! Pub/Sub topic names. `runwarden-events`' `topics.json` declares each with its
//! subscriptions; its tests check that the two agree.

/// Audit events, from every function's outbox to audit (`POST /push/audit-events`).
pub const AUDIT_EVENTS: &str = "audit-events";
/// Runs to start ([`crate::messages::RunDispatch`]), from runs' outbox back to runs
/// (`POST /push/run-dispatch`), which launches the runner job.
pub const RUN_DISPATCH: &str = "run-dispatch";
/// Ended runs ([`crate::messages::RunFinished`]), from runs to quotas
/// (`POST /push/run-finished`), which settles the run's reservation.
pub const RUN_FINISHED: &str = "run-finished";

/// Every topic, in `topics.json`'s order.
pub const ALL: [&str; 3] = [AUDIT_EVENTS, RUN_FINISHED, RUN_DISPATCH];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(ALL, ["audit-events", "run-finished", "run-dispatch"]);
    }
}
