-- Login throttling moves onto the shared GCRA rate limits (`rate_limits`): auth keeps one
-- key per account (`login:account:<sha256 of the email>`) and one per client IP
-- (`login:ip:<ip>`). A failed login consumes a cell with rate_limit_check; before checking a
-- password, login asks rate_limit_peek whether one more failure would still be allowed.

-- rate_limit_peek: the decision rate_limit_check would make for one key right now, without
-- making it. Read-only: it creates no row, changes no tat and takes no lock (STABLE, so
-- PostgreSQL itself refuses any write from it). For the same key, quota and instant it is
-- refused exactly when rate_limit_check would be refused.
--
-- Returns whether one more cell would be allowed and the key's current tat minus now, in
-- microseconds (never negative; 0 for a key never seen or idle). Unlike rate_limit_check's
-- this is the tat *before* any consumption, so the caller's "remaining" counts the cell it
-- asked about; on refusal both functions return the same tat, hence the same retry time.
CREATE FUNCTION rate_limit_peek(p_key text, p_interval_us bigint, p_tolerance_us bigint)
    RETURNS TABLE (allowed boolean, tat_offset_us bigint)
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_tat timestamptz;
    v_interval interval := p_interval_us * interval '1 microsecond';
    v_tolerance interval := p_tolerance_us * interval '1 microsecond';
BEGIN
    IF p_interval_us <= 0 OR p_tolerance_us < p_interval_us THEN
        RAISE EXCEPTION 'rate_limit_peek: invalid quota' USING ERRCODE = '22023';
    END IF;
    SELECT r.tat INTO v_tat FROM public.rate_limits r WHERE r.key = p_key;
    v_tat := greatest(coalesce(v_tat, '-infinity'), v_now);
    RETURN QUERY SELECT v_tat + v_interval - v_tolerance <= v_now,
                        (extract(epoch FROM v_tat - v_now) * 1000000)::bigint;
END
$$;

REVOKE ALL ON FUNCTION rate_limit_peek(text, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rate_limit_peek(text, bigint, bigint)
    TO runwarden_auth, runwarden_runs, runwarden_quotas, runwarden_audit;

-- The old failure counters (exponential delays, migration 20261125000002_identity) are
-- replaced by the keys above; nothing else reads them. Their grants go with the table.
DROP TABLE auth_throttle;
