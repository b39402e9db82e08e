-- Quotas and cost (DESIGN.md section 5): plans, per-org overrides, and one admission row per
-- run. Owned by quotas. A run's admission reserves its worst-case cost (cap x rate);
-- settlement replaces the reservation with the actual cost.

-- Plans are product data, not tenant data: every org reads its own plan's row.
CREATE TABLE plans (
    name                 text   NOT NULL,
    active_projects      bigint NOT NULL,
    runs_per_month       bigint NOT NULL,
    parallel_runs        bigint NOT NULL,
    wall_clock_cap_secs  bigint NOT NULL,
    monthly_budget_cents bigint NOT NULL,
    -- The plan's rate: a run's worst-case cost is its cap times this rate.
    cost_cents_per_hour  bigint NOT NULL,
    requests_per_minute  bigint NOT NULL,
    CONSTRAINT plans_pkey PRIMARY KEY (name),
    CONSTRAINT plans_nonnegative CHECK (
        active_projects >= 0 AND runs_per_month >= 0 AND parallel_runs >= 0
        AND wall_clock_cap_secs > 0 AND monthly_budget_cents >= 0
        AND cost_cents_per_hour >= 0 AND requests_per_minute >= 0)
);

INSERT INTO plans (name, active_projects, runs_per_month, parallel_runs, wall_clock_cap_secs,
                   monthly_budget_cents, cost_cents_per_hour, requests_per_minute)
VALUES ('trial',      3,    100,  2,   900,    2000,  120,   60),
       ('team',       50,   5000, 10,  3600,   200000, 120,  600),
       ('enterprise', 1000, 100000, 100, 14400, 5000000, 100, 6000);

-- An org's plan is one of these.
ALTER TABLE orgs ADD CONSTRAINT orgs_plan_fkey FOREIGN KEY (plan) REFERENCES plans (name);

-- Per-org overrides, field by field (NULL: the plan's value). Ignored entirely while the
-- org is on trial: trial caps are hard.
CREATE TABLE quota_overrides (
    org_id               uuid        NOT NULL,
    active_projects      bigint,
    runs_per_month       bigint,
    parallel_runs        bigint,
    wall_clock_cap_secs  bigint,
    monthly_budget_cents bigint,
    cost_cents_per_hour  bigint,
    requests_per_minute  bigint,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT quota_overrides_pkey PRIMARY KEY (org_id),
    CONSTRAINT quota_overrides_org_fkey FOREIGN KEY (org_id) REFERENCES orgs (id) ON DELETE CASCADE,
    CONSTRAINT quota_overrides_nonnegative CHECK (
        coalesce(active_projects, 0) >= 0 AND coalesce(runs_per_month, 0) >= 0
        AND coalesce(parallel_runs, 0) >= 0 AND coalesce(wall_clock_cap_secs, 1) > 0
        AND coalesce(monthly_budget_cents, 0) >= 0 AND coalesce(cost_cents_per_hour, 0) >= 0
        AND coalesce(requests_per_minute, 0) >= 0)
);

-- One row per org, locked (SELECT ... FOR UPDATE) by every admission so that admissions of
-- one org serialize and the limits hold exactly under any concurrency.
CREATE TABLE quota_usage (
    org_id     uuid        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT quota_usage_pkey PRIMARY KEY (org_id),
    CONSTRAINT quota_usage_org_fkey FOREIGN KEY (org_id) REFERENCES orgs (id) ON DELETE CASCADE
);

-- One decision per run (idempotency by run id): admitted (reserved, then settled or
-- timed_out) or refused (with its problem code).
CREATE TABLE quota_admissions (
    run_id              uuid        NOT NULL,
    org_id              uuid        NOT NULL,
    status              text        NOT NULL,
    refusal_code        text,
    requested_cap_secs  bigint      NOT NULL,
    granted_cap_secs    bigint      NOT NULL DEFAULT 0,
    cost_cents_per_hour bigint      NOT NULL DEFAULT 0,
    reserved_cents      bigint      NOT NULL DEFAULT 0,
    actual_secs         bigint,
    actual_cents        bigint,
    admitted_at         timestamptz NOT NULL DEFAULT now(),
    settled_at          timestamptz,
    CONSTRAINT quota_admissions_pkey PRIMARY KEY (run_id),
    CONSTRAINT quota_admissions_org_fkey FOREIGN KEY (org_id) REFERENCES orgs (id) ON DELETE CASCADE,
    CONSTRAINT quota_admissions_status_check
        CHECK (status IN ('reserved', 'settled', 'timed_out', 'refused')),
    CONSTRAINT quota_admissions_refusal_check
        CHECK ((status = 'refused') = (refusal_code IS NOT NULL)),
    CONSTRAINT quota_admissions_settled_check
        CHECK ((status IN ('settled', 'timed_out')) = (actual_cents IS NOT NULL))
);
CREATE INDEX quota_admissions_month_idx ON quota_admissions (org_id, admitted_at)
    WHERE status <> 'refused';
CREATE INDEX quota_admissions_reserved_idx ON quota_admissions (org_id)
    WHERE status = 'reserved';

ALTER TABLE quota_overrides ENABLE ROW LEVEL SECURITY;
ALTER TABLE quota_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE quota_admissions ENABLE ROW LEVEL SECURITY;

CREATE POLICY quota_overrides_tenant ON quota_overrides
    USING (org_id = app_org_id())
    WITH CHECK (org_id = app_org_id());
CREATE POLICY quota_usage_tenant ON quota_usage
    USING (org_id = app_org_id())
    WITH CHECK (org_id = app_org_id());
CREATE POLICY quota_admissions_tenant ON quota_admissions
    USING (org_id = app_org_id())
    WITH CHECK (org_id = app_org_id());

-- Settlement starts from a run id, before the org is known. This reveals only the org of a
-- run whose id the caller already holds.
CREATE FUNCTION quota_run_org(p_run uuid) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$ SELECT org_id FROM quota_admissions WHERE run_id = p_run $$;

-- The reaper: reservations past their cap plus a grace, across orgs (each is then settled
-- in its own org's context).
CREATE FUNCTION quota_expired_reservations(p_grace_secs bigint)
    RETURNS TABLE (run_id uuid, org_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$
        SELECT a.run_id, a.org_id FROM quota_admissions a
        WHERE a.status = 'reserved'
          AND a.admitted_at + make_interval(secs => a.granted_cap_secs + p_grace_secs) < now()
        ORDER BY a.admitted_at
        LIMIT 1000
    $$;

REVOKE ALL ON FUNCTION quota_run_org(uuid), quota_expired_reservations(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_run_org(uuid), quota_expired_reservations(bigint)
    TO runwarden_quotas;

GRANT SELECT ON plans TO runwarden_quotas;
GRANT SELECT, INSERT, UPDATE ON quota_overrides, quota_admissions TO runwarden_quotas;
-- UPDATE only so that SELECT ... FOR UPDATE may lock the row.
GRANT SELECT, INSERT, UPDATE ON quota_usage TO runwarden_quotas;
-- The plan is quotas' to change; the rest of the org is auth's.
GRANT SELECT ON orgs TO runwarden_quotas;
GRANT UPDATE (plan, updated_at) ON orgs TO runwarden_quotas;
-- Authorizing readers of the usage route: the same check auth and audit use.
GRANT SELECT ON sessions, memberships TO runwarden_quotas;
GRANT EXECUTE ON FUNCTION auth_enter(uuid, uuid, uuid) TO runwarden_quotas;
