-- Projects (owned by runs), the active-project quota and the trial's end (DESIGN.md
-- section 5).

-- A trial ends: after this instant a trial org's runs are refused (402 trial_expired).
ALTER TABLE orgs ADD COLUMN trial_ends_at timestamptz NOT NULL DEFAULT now() + interval '14 days';

-- The limits an org runs under: its plan's, overridden field by field outside trial (trial
-- caps are hard: overrides are ignored, whatever is stored). The one place this rule lives:
-- quotas' admission, the request rate limiter and the project quota all read it. SECURITY
-- DEFINER because plans, orgs and overrides sit behind row-level security and the rate
-- limiter runs before a handler sets the tenant; no row for a terminated or unknown org.
-- trial_ends_at is null outside trial.
CREATE FUNCTION org_limits(p_org uuid)
    RETURNS TABLE (plan text, active_projects bigint, runs_per_month bigint,
                   parallel_runs bigint, wall_clock_cap_secs bigint,
                   monthly_budget_cents bigint, cost_cents_per_hour bigint,
                   requests_per_minute bigint, trial_ends_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$
    SELECT o.plan,
           CASE WHEN o.plan = 'trial' THEN p.active_projects
                ELSE coalesce(q.active_projects, p.active_projects) END,
           CASE WHEN o.plan = 'trial' THEN p.runs_per_month
                ELSE coalesce(q.runs_per_month, p.runs_per_month) END,
           CASE WHEN o.plan = 'trial' THEN p.parallel_runs
                ELSE coalesce(q.parallel_runs, p.parallel_runs) END,
           CASE WHEN o.plan = 'trial' THEN p.wall_clock_cap_secs
                ELSE coalesce(q.wall_clock_cap_secs, p.wall_clock_cap_secs) END,
           CASE WHEN o.plan = 'trial' THEN p.monthly_budget_cents
                ELSE coalesce(q.monthly_budget_cents, p.monthly_budget_cents) END,
           CASE WHEN o.plan = 'trial' THEN p.cost_cents_per_hour
                ELSE coalesce(q.cost_cents_per_hour, p.cost_cents_per_hour) END,
           CASE WHEN o.plan = 'trial' THEN p.requests_per_minute
                ELSE coalesce(q.requests_per_minute, p.requests_per_minute) END,
           CASE WHEN o.plan = 'trial' THEN o.trial_ends_at END
      FROM orgs o
      JOIN plans p ON p.name = o.plan
      LEFT JOIN quota_overrides q ON q.org_id = o.id
     WHERE o.id = p_org AND o.terminated_at IS NULL
$$;
REVOKE ALL ON FUNCTION org_limits(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION org_limits(uuid) TO runwarden_quotas, runwarden_runs;

CREATE OR REPLACE FUNCTION org_requests_per_minute(p_org uuid) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$ SELECT requests_per_minute FROM org_limits(p_org) $$;

CREATE TABLE projects (
    id          uuid        NOT NULL,
    org_id      uuid        NOT NULL,
    name        text        NOT NULL,
    created_by  uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    archived_at timestamptz,
    CONSTRAINT projects_pkey PRIMARY KEY (id),
    CONSTRAINT projects_org_fkey FOREIGN KEY (org_id) REFERENCES orgs (id) ON DELETE CASCADE,
    CONSTRAINT projects_name_length CHECK (char_length(name) BETWEEN 1 AND 100)
);
-- One name per org, case-insensitively (archived projects keep theirs).
CREATE UNIQUE INDEX projects_org_name_key ON projects (org_id, lower(name));
CREATE INDEX projects_org_active_idx ON projects (org_id) WHERE archived_at IS NULL;

ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
CREATE POLICY projects_tenant ON projects
    USING (org_id = app_org_id())
    WITH CHECK (org_id = app_org_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON projects TO runwarden_runs;

-- Room for one more active project, claimed inside the caller's transaction: it takes the
-- org's quota row lock (the one admissions take, held until the caller commits or rolls
-- back), so one org's creates and unarchives serialize and the limit holds exactly under
-- any concurrency. Returns the active projects now and the limit; the caller refuses when
-- active >= limit. Only for the org the transaction is scoped to.
CREATE FUNCTION quota_project_slot(p_org uuid)
    RETURNS TABLE (active bigint, active_limit bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$
BEGIN
    IF p_org IS DISTINCT FROM app_org_id() THEN
        RAISE EXCEPTION 'quota_project_slot: not the transaction''s org' USING ERRCODE = '42501';
    END IF;
    INSERT INTO quota_usage (org_id) VALUES (p_org) ON CONFLICT (org_id) DO NOTHING;
    PERFORM 1 FROM quota_usage WHERE org_id = p_org FOR UPDATE;
    RETURN QUERY
        SELECT (SELECT count(*) FROM projects p WHERE p.org_id = p_org AND p.archived_at IS NULL),
               l.active_projects
          FROM org_limits(p_org) l;
END
$$;
REVOKE ALL ON FUNCTION quota_project_slot(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_project_slot(uuid) TO runwarden_runs;

-- The usage route reports active projects.
GRANT SELECT ON projects TO runwarden_quotas;

-- runs resolves its callers like every function (tenancy::access).
GRANT SELECT ON sessions, memberships, orgs TO runwarden_runs;
GRANT EXECUTE ON FUNCTION auth_enter(uuid, uuid, uuid) TO runwarden_runs;
