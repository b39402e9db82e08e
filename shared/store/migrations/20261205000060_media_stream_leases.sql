-- Media (owned by runs): one row per open event stream (`GET /v1/media/runs/{run}/events`),
-- so the caps on concurrent streams hold across every instance of runs: at most N per media
-- token (`jti`) and M per run (the numbers are runs' configuration, see docs/security.md).
-- A row is inserted when a stream opens, deleted when it closes, and its `beat_at` is
-- refreshed every ~2 s by the instance that serves it; a row not refreshed for 30 s (its
-- instance died) no longer counts. The row names the session and member behind the token,
-- so the same heartbeat closes a stream whose session was logged out or revoked, or whose
-- holder left the org.

CREATE TABLE media_stream_leases (
    id         uuid        NOT NULL,
    org_id     uuid        NOT NULL,
    run_id     uuid        NOT NULL,
    jti        uuid        NOT NULL,
    session_id uuid        NOT NULL,
    user_id    uuid        NOT NULL,
    opened_at  timestamptz NOT NULL DEFAULT now(),
    beat_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT media_stream_leases_pkey PRIMARY KEY (id),
    CONSTRAINT media_stream_leases_run_fkey FOREIGN KEY (run_id) REFERENCES runs (id) ON DELETE CASCADE
);
CREATE INDEX media_stream_leases_run_idx ON media_stream_leases (run_id);
CREATE INDEX media_stream_leases_beat_idx ON media_stream_leases (beat_at);

ALTER TABLE media_stream_leases ENABLE ROW LEVEL SECURITY;
CREATE POLICY media_stream_leases_tenant ON media_stream_leases
    USING (org_id = app_org_id()) WITH CHECK (org_id = app_org_id());

GRANT SELECT, INSERT, DELETE ON media_stream_leases TO runwarden_runs;

-- Opening a stream, inside the caller's transaction scoped to the run's org: under a lock on
-- the run (so concurrent opens on any instance count one after the other), drops the run's
-- stale leases, counts the live ones of this token and of the run, and takes a lease if both
-- are under their caps. SECURITY INVOKER: row-level security applies.
CREATE FUNCTION media_stream_open(
    p_lease uuid, p_org uuid, p_run uuid, p_jti uuid, p_session uuid, p_user uuid,
    p_per_token integer, p_per_run integer)
    RETURNS TABLE (opened boolean, token_streams integer, run_streams integer)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    AS $$
DECLARE
    n_token integer;
    n_run integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('media_stream_leases:' || p_run::text, 0));
    DELETE FROM public.media_stream_leases
     WHERE run_id = p_run AND beat_at < now() - interval '30 seconds';
    SELECT count(*) FILTER (WHERE l.jti = p_jti), count(*)
      INTO n_token, n_run
      FROM public.media_stream_leases l WHERE l.run_id = p_run;
    IF n_token >= p_per_token OR n_run >= p_per_run THEN
        RETURN QUERY SELECT false, n_token, n_run;
        RETURN;
    END IF;
    INSERT INTO public.media_stream_leases (id, org_id, run_id, jti, session_id, user_id)
    VALUES (p_lease, p_org, p_run, p_jti, p_session, p_user);
    RETURN QUERY SELECT true, n_token + 1, n_run + 1;
END
$$;

-- The heartbeat of one instance's open streams, across orgs, in one statement: refreshes
-- their leases and answers those that must close now: the lease is gone (stale, dropped),
-- its session is no longer live (logout, revocation, expiry), or its holder is no longer a
-- member of the (live) org. Also forgets leases nobody has refreshed for 10 minutes. This
-- reveals only the fate of lease ids the caller already holds.
CREATE FUNCTION media_streams_beat(p_leases uuid[])
    RETURNS TABLE (lease_id uuid)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$
        WITH forgotten AS (
            DELETE FROM media_stream_leases
             WHERE beat_at < now() - interval '10 minutes' AND NOT (id = ANY (p_leases))
        ), beat AS (
            UPDATE media_stream_leases SET beat_at = now()
             WHERE id = ANY (p_leases)
            RETURNING id, org_id, session_id, user_id
        )
        SELECT l.id FROM unnest(p_leases) AS l(id)
         WHERE NOT EXISTS (
            SELECT 1 FROM beat b
              JOIN sessions s ON s.id = b.session_id AND s.user_id = b.user_id
             WHERE b.id = l.id
               AND s.revoked_at IS NULL AND s.expires_at > now()
               AND EXISTS (SELECT 1 FROM memberships m JOIN orgs o ON o.id = m.org_id
                            WHERE m.org_id = b.org_id AND m.user_id = b.user_id
                              AND o.terminated_at IS NULL))
    $$;

-- Closing a stream: its lease no longer counts.
CREATE FUNCTION media_stream_close(p_lease uuid) RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$ DELETE FROM media_stream_leases WHERE id = p_lease $$;

REVOKE ALL ON FUNCTION media_stream_open(uuid, uuid, uuid, uuid, uuid, uuid, integer, integer),
                       media_streams_beat(uuid[]), media_stream_close(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION media_stream_open(uuid, uuid, uuid, uuid, uuid, uuid, integer, integer),
                          media_streams_beat(uuid[]), media_stream_close(uuid) TO runwarden_runs;
