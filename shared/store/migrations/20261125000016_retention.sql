-- Retention purge (the scheduler's daily `retention-purge` task on auth): what has outlived
-- any use. SECURITY DEFINER because invitations and the outbox sit behind row-level
-- security across orgs; it deletes by age only and returns counts, never rows.
--   sessions: expired or revoked more than 30 days ago (their refresh tokens go with them);
--   OIDC sign-in flows: expired more than a day ago;
--   invitations: never accepted, expired more than 30 days ago;
--   outbox events: published more than 7 days ago (audit keeps its own chained copy).
-- (Idle rate-limit keys are purged by quotas' reaper, every 30 s and on its `reap` task.)
CREATE FUNCTION retention_purge() RETURNS TABLE (what text, removed bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM sessions
     WHERE expires_at < now() - interval '30 days' OR revoked_at < now() - interval '30 days';
    GET DIAGNOSTICS n = ROW_COUNT;
    what := 'sessions'; removed := n; RETURN NEXT;

    DELETE FROM oidc_login_flows WHERE expires_at < now() - interval '1 day';
    GET DIAGNOSTICS n = ROW_COUNT;
    what := 'oidc_login_flows'; removed := n; RETURN NEXT;

    DELETE FROM invitations
     WHERE accepted_at IS NULL AND expires_at < now() - interval '30 days';
    GET DIAGNOSTICS n = ROW_COUNT;
    what := 'invitations'; removed := n; RETURN NEXT;

    DELETE FROM outbox_events WHERE published_at < now() - interval '7 days';
    GET DIAGNOSTICS n = ROW_COUNT;
    what := 'outbox_events'; removed := n; RETURN NEXT;

END
$$;
REVOKE ALL ON FUNCTION retention_purge() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION retention_purge() TO runwarden_auth;
