-- Runs (owned by runs): one row per run, its events (the SSE stream and the run's log), and
-- the credentials of the one runner execution a run gets.

CREATE TABLE runs (
    id                 uuid        NOT NULL,
    org_id             uuid        NOT NULL,
    project_id         uuid        NOT NULL,
    agent              text        NOT NULL,
    input              jsonb       NOT NULL DEFAULT '{}',
    requested_cap_secs bigint      NOT NULL,
    granted_cap_secs   bigint,
    -- admitting: asking quotas; refused: quotas said no (refusal holds its problem);
    -- queued: admitted, dispatch pending; running: the runner has exchanged its ticket.
    status             text        NOT NULL DEFAULT 'admitting',
    refusal            jsonb,
    idempotency_key    text,
    created_by         uuid,
    created_at         timestamptz NOT NULL DEFAULT now(),
    dispatched_at      timestamptz,
    -- Where the execution runs: a Cloud Run execution name, or a local process id.
    execution          text,
    started_at         timestamptz,
    finished_at        timestamptz,
    exit_code          integer,
    actual_secs        bigint,
    CONSTRAINT runs_pkey PRIMARY KEY (id),
    CONSTRAINT runs_org_fkey FOREIGN KEY (org_id) REFERENCES orgs (id) ON DELETE CASCADE,
    CONSTRAINT runs_project_fkey FOREIGN KEY (project_id) REFERENCES projects (id) ON DELETE CASCADE,
    CONSTRAINT runs_status_check CHECK (status IN ('admitting', 'refused', 'queued', 'running',
        'succeeded', 'failed', 'timed_out', 'cancelled')),
    CONSTRAINT runs_idempotency_key_length CHECK (char_length(idempotency_key) BETWEEN 1 AND 200)
);
-- POST .../runs with the same Idempotency-Key in one org is one run.
CREATE UNIQUE INDEX runs_org_idempotency_key ON runs (org_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_org_id_idx ON runs (org_id, id DESC);
CREATE INDEX runs_live_idx ON runs (created_at) WHERE status IN ('admitting', 'queued', 'running');

CREATE TABLE run_events (
    id         bigint GENERATED ALWAYS AS IDENTITY,
    run_id     uuid        NOT NULL,
    org_id     uuid        NOT NULL,
    kind       text        NOT NULL,
    stream     text,
    message    text        NOT NULL DEFAULT '',
    percent    smallint,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT run_events_pkey PRIMARY KEY (id),
    CONSTRAINT run_events_run_fkey FOREIGN KEY (run_id) REFERENCES runs (id) ON DELETE CASCADE,
    CONSTRAINT run_events_kind_check CHECK (kind IN ('log', 'status', 'progress')),
    CONSTRAINT run_events_message_length CHECK (octet_length(message) <= 8192)
);
CREATE INDEX run_events_run_idx ON run_events (run_id, id);

-- The runner's credentials: a single-use ticket (what travels in the job's overrides, which
-- anyone who can read the execution sees) exchanged once for the runner token. Both stored
-- as SHA-256; the token dies when the run ends or its cap plus grace passes.
CREATE TABLE runner_credentials (
    run_id          uuid        NOT NULL,
    org_id          uuid        NOT NULL,
    ticket_hash     bytea       NOT NULL,
    ticket_used_at  timestamptz,
    token_hash      bytea,
    token_expires_at timestamptz,
    CONSTRAINT runner_credentials_pkey PRIMARY KEY (run_id),
    CONSTRAINT runner_credentials_run_fkey FOREIGN KEY (run_id) REFERENCES runs (id) ON DELETE CASCADE
);

ALTER TABLE runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE run_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE runner_credentials ENABLE ROW LEVEL SECURITY;
CREATE POLICY runs_tenant ON runs USING (org_id = app_org_id()) WITH CHECK (org_id = app_org_id());
CREATE POLICY run_events_tenant ON run_events
    USING (org_id = app_org_id()) WITH CHECK (org_id = app_org_id());
CREATE POLICY runner_credentials_tenant ON runner_credentials
    USING (org_id = app_org_id()) WITH CHECK (org_id = app_org_id());

GRANT SELECT, INSERT, UPDATE, DELETE ON runs, runner_credentials TO runwarden_runs;
GRANT SELECT, INSERT ON run_events TO runwarden_runs;

-- The runner API and the dispatch push start from a run id, before the org is known. This
-- reveals only the org of a run whose id the caller already holds.
CREATE FUNCTION run_org(p_run uuid) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$ SELECT org_id FROM runs WHERE id = p_run $$;

-- The reaper: live runs past their cap plus a grace (or never dispatched), across orgs; each
-- is then ended in its own org's context.
CREATE FUNCTION runs_overdue(p_grace_secs bigint)
    RETURNS TABLE (run_id uuid, org_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$
        SELECT r.id, r.org_id FROM runs r
        WHERE r.status IN ('admitting', 'queued', 'running')
          AND coalesce(r.started_at, r.created_at)
              + make_interval(secs => coalesce(r.granted_cap_secs, 0) + p_grace_secs) < now()
        ORDER BY r.created_at
        LIMIT 500
    $$;

REVOKE ALL ON FUNCTION run_org(uuid), runs_overdue(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION run_org(uuid), runs_overdue(bigint) TO runwarden_runs;
