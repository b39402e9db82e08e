//! The quota rules as plain functions: the worst-case cost of a run and the admission
//! decision. No I/O here; `store` feeds them what it read under the org's lock.

use serde::{Deserialize, Serialize};

/// The plan whose caps are hard: overrides never apply to it (`org_limits` in the
/// migrations ignores them; `set_overrides` refuses them).
pub const TRIAL: &str = "trial";

/// The plan of every org a user creates after their first (one trial per user): it admits
/// no run until a paid plan is set (402 `plan_required`).
pub const UNPAID: &str = "unpaid";

/// The limits an org runs under (a plan's, or a plan's with overrides applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Limits {
    pub active_projects: i64,
    pub runs_per_month: i64,
    pub parallel_runs: i64,
    pub wall_clock_cap_secs: i64,
    pub monthly_budget_cents: i64,
    /// The rate a run's worst-case cost is computed at (cap x rate).
    pub cost_cents_per_hour: i64,
    pub requests_per_minute: i64,
}

/// Per-org overrides, field by field; `None` keeps the plan's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub active_projects: Option<i64>,
    pub runs_per_month: Option<i64>,
    pub parallel_runs: Option<i64>,
    pub wall_clock_cap_secs: Option<i64>,
    pub monthly_budget_cents: Option<i64>,
    pub cost_cents_per_hour: Option<i64>,
    pub requests_per_minute: Option<i64>,
}

impl Overrides {
    /// The name of the first invalid field: negative, or a cap that is not positive.
    pub fn invalid_field(&self) -> Option<&'static str> {
        let fields = [
            ("active_projects", self.active_projects, 0),
            ("runs_per_month", self.runs_per_month, 0),
            ("parallel_runs", self.parallel_runs, 0),
            ("wall_clock_cap_secs", self.wall_clock_cap_secs, 1),
            ("monthly_budget_cents", self.monthly_budget_cents, 0),
            ("cost_cents_per_hour", self.cost_cents_per_hour, 0),
            ("requests_per_minute", self.requests_per_minute, 0),
        ];
        fields
            .into_iter()
            .find(|(_, value, min)| value.is_some_and(|v| v < *min))
            .map(|(name, _, _)| name)
    }
}

/// Cost of `secs` of wall clock at `cents_per_hour`, rounded up to the cent.
pub fn cost_cents(secs: i64, cents_per_hour: i64) -> i64 {
    let secs = i128::from(secs.max(0));
    let rate = i128::from(cents_per_hour.max(0));
    let cents = (secs * rate + 3599) / 3600;
    i64::try_from(cents).unwrap_or(i64::MAX)
}

/// What an org has used, read under its lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Admitted runs this UTC calendar month.
    pub runs_this_month: i64,
    /// Live reservations (admitted, not yet settled).
    pub parallel_now: i64,
    /// Settled cost this month.
    pub spent_cents: i64,
    /// Worst-case cost still reserved this month.
    pub reserved_cents: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub granted_cap_secs: i64,
    pub reserved_cents: i64,
}

/// Why a run is refused; each has a stable problem code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ParallelRunsExceeded,
    MonthlyRunsExceeded,
    MonthlyBudgetExceeded,
    /// A trial org past its trial's end: nothing more runs until it changes plan.
    TrialExpired,
    /// An org on a plan that admits no runs ([`UNPAID`]): nothing runs until a paid plan
    /// is set.
    PlanRequired,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Self::ParallelRunsExceeded => "parallel_runs_exceeded",
            Self::MonthlyRunsExceeded => "monthly_runs_exceeded",
            Self::MonthlyBudgetExceeded => "monthly_budget_exceeded",
            Self::TrialExpired => "trial_expired",
            Self::PlanRequired => "plan_required",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [
            Self::ParallelRunsExceeded,
            Self::MonthlyRunsExceeded,
            Self::MonthlyBudgetExceeded,
            Self::TrialExpired,
            Self::PlanRequired,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }
}

/// Whether a trial ending at `trial_ends_at` (`None`: not on trial) is over at `now`.
pub fn trial_over(
    trial_ends_at: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    trial_ends_at.is_some_and(|end| end <= now)
}

/// The refusal an org's plan answers before any limit is looked at: none but for a plan
/// that admits no runs at all.
pub fn plan_refusal(plan: &str) -> Option<Refusal> {
    (plan == UNPAID).then_some(Refusal::PlanRequired)
}

/// The admission decision. The cap granted is the smaller of the requested and the plan's;
/// the reservation is that cap at the plan's rate, and must fit in what is left of the
/// monthly budget. Parallel runs are checked first (a retry later may succeed), then the
/// monthly counters.
pub fn decide(limits: &Limits, usage: &Usage, requested_cap_secs: i64) -> Result<Grant, Refusal> {
    if usage.parallel_now >= limits.parallel_runs {
        return Err(Refusal::ParallelRunsExceeded);
    }
    if usage.runs_this_month >= limits.runs_per_month {
        return Err(Refusal::MonthlyRunsExceeded);
    }
    let granted_cap_secs = requested_cap_secs.min(limits.wall_clock_cap_secs);
    let reserved_cents = cost_cents(granted_cap_secs, limits.cost_cents_per_hour);
    let committed = usage.spent_cents.saturating_add(usage.reserved_cents);
    if committed.saturating_add(reserved_cents) > limits.monthly_budget_cents {
        return Err(Refusal::MonthlyBudgetExceeded);
    }
    Ok(Grant {
        granted_cap_secs,
        reserved_cents,
    })
}

/// The cost a run settles at: its actual time, never more than its granted cap.
pub fn settled_cents(actual_secs: i64, granted_cap_secs: i64, cents_per_hour: i64) -> i64 {
    cost_cents(actual_secs.clamp(0, granted_cap_secs), cents_per_hour)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Limits = Limits {
        active_projects: 3,
        runs_per_month: 10,
        parallel_runs: 2,
        wall_clock_cap_secs: 900,
        monthly_budget_cents: 100,
        cost_cents_per_hour: 120,
        requests_per_minute: 60,
    };

    #[test]
    fn cost_rounds_up_to_the_cent() {
        assert_eq!(cost_cents(900, 120), 30);
        assert_eq!(cost_cents(1, 120), 1);
        assert_eq!(cost_cents(0, 120), 0);
        assert_eq!(cost_cents(-5, 120), 0);
        assert_eq!(cost_cents(i64::MAX, i64::MAX), i64::MAX);
    }

    #[test]
    fn grants_the_smaller_cap_and_reserves_its_worst_case() {
        let grant = decide(&BASE, &Usage::default(), 3_600).unwrap();
        assert_eq!(grant.granted_cap_secs, 900);
        assert_eq!(grant.reserved_cents, 30);
        let grant = decide(&BASE, &Usage::default(), 60).unwrap();
        assert_eq!((grant.granted_cap_secs, grant.reserved_cents), (60, 2));
    }

    #[test]
    fn refuses_at_each_limit() {
        let at = |u: Usage| decide(&BASE, &u, 900);
        assert_eq!(
            at(Usage {
                parallel_now: 2,
                ..Usage::default()
            }),
            Err(Refusal::ParallelRunsExceeded)
        );
        assert_eq!(
            at(Usage {
                runs_this_month: 10,
                ..Usage::default()
            }),
            Err(Refusal::MonthlyRunsExceeded)
        );
        // 100 budget: 40 spent + 30 reserved + 30 = 100 fits; one cent more does not.
        assert!(
            at(Usage {
                spent_cents: 40,
                reserved_cents: 30,
                ..Usage::default()
            })
            .is_ok()
        );
        assert_eq!(
            at(Usage {
                spent_cents: 41,
                reserved_cents: 30,
                ..Usage::default()
            }),
            Err(Refusal::MonthlyBudgetExceeded)
        );
    }

    #[test]
    fn a_trial_is_over_from_its_end_on_and_never_outside_trial() {
        let end = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert!(!trial_over(Some(end), end - chrono::Duration::seconds(1)));
        assert!(trial_over(Some(end), end));
        assert!(!trial_over(None, end + chrono::Duration::days(365)));
    }

    #[test]
    fn only_the_unpaid_plan_is_refused_before_its_limits() {
        assert_eq!(plan_refusal(UNPAID), Some(Refusal::PlanRequired));
        for plan in [TRIAL, "team", "enterprise"] {
            assert_eq!(plan_refusal(plan), None, "{plan}");
        }
    }

    #[test]
    fn settlement_is_capped_at_the_grant() {
        assert_eq!(settled_cents(10_000, 900, 120), 30);
        assert_eq!(settled_cents(30, 900, 120), 1);
        assert_eq!(settled_cents(-1, 900, 120), 0);
    }

    #[test]
    fn refusal_codes_round_trip_and_invalid_overrides_are_named() {
        for r in [
            Refusal::ParallelRunsExceeded,
            Refusal::MonthlyRunsExceeded,
            Refusal::MonthlyBudgetExceeded,
            Refusal::TrialExpired,
            Refusal::PlanRequired,
        ] {
            assert_eq!(Refusal::from_code(r.code()), Some(r));
        }
        assert_eq!(Refusal::from_code("other"), None);
        let bad = Overrides {
            wall_clock_cap_secs: Some(0),
            ..Overrides::default()
        };
        assert_eq!(bad.invalid_field(), Some("wall_clock_cap_secs"));
        assert_eq!(Overrides::default().invalid_field(), None);
    }
}
