-- The per-org request rate every public function enforces (requests per minute of the
-- org's plan, or its override outside trial). SECURITY DEFINER because plans, orgs and
-- overrides sit behind row-level security and the rate limiter runs before a handler sets
-- the tenant; it reveals one number for an org id and nothing else.
CREATE FUNCTION org_requests_per_minute(p_org uuid) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$
    SELECT CASE WHEN o.plan = 'trial' THEN p.requests_per_minute
                ELSE coalesce(q.requests_per_minute, p.requests_per_minute) END
      FROM orgs o
      JOIN plans p ON p.name = o.plan
      LEFT JOIN quota_overrides q ON q.org_id = o.id
     WHERE o.id = p_org
$$;
REVOKE ALL ON FUNCTION org_requests_per_minute(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION org_requests_per_minute(uuid)
    TO runwarden_auth, runwarden_runs, runwarden_quotas, runwarden_audit;
