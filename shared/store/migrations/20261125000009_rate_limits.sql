-- Request rate limits shared by every instance of every function: one row per limited key
-- (e.g. `org:<uuid>:api`), holding the GCRA "theoretical arrival time" (tat). Keys are not
-- tenant rows (no row-level security); only the runtime roles may read or change them.
CREATE TABLE rate_limits (
    key        text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 200),
    tat        timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limits
    TO runwarden_auth, runwarden_runs, runwarden_quotas, runwarden_audit;

-- rate_limit_check: one GCRA decision for one key, as one statement (one round trip, its own
-- implicit transaction unless the caller has one).
--
--   T   = p_interval_us  (emission interval: period / requests per period)
--   tau = p_tolerance_us (burst capacity: T * burst)
--   tat' = max(tat, now) + T; allowed iff tat' - tau <= now; only an allowed request
--   stores tat' (a refused one consumes nothing).
--
-- The row is created if missing and then locked FOR UPDATE, so concurrent checks of one key
-- serialize on it; "now" is read after the lock is held (clock_timestamp), so a check that
-- waited for the lock is judged at the time it actually decides.
-- Returns whether the request is allowed and the tat after the decision minus now, in
-- microseconds (never negative); the caller derives remaining / reset / retry from it.
CREATE FUNCTION rate_limit_check(p_key text, p_interval_us bigint, p_tolerance_us bigint)
    RETURNS TABLE (allowed boolean, tat_offset_us bigint)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    AS $$
DECLARE
    v_now timestamptz;
    v_tat timestamptz;
    v_new timestamptz;
    v_interval interval := p_interval_us * interval '1 microsecond';
    v_tolerance interval := p_tolerance_us * interval '1 microsecond';
BEGIN
    IF p_interval_us <= 0 OR p_tolerance_us < p_interval_us THEN
        RAISE EXCEPTION 'rate_limit_check: invalid quota' USING ERRCODE = '22023';
    END IF;
    INSERT INTO public.rate_limits (key, tat) VALUES (p_key, '-infinity')
        ON CONFLICT (key) DO NOTHING;
    SELECT r.tat INTO v_tat FROM public.rate_limits r WHERE r.key = p_key FOR UPDATE;
    v_now := clock_timestamp();
    v_tat := greatest(v_tat, v_now);
    v_new := v_tat + v_interval;
    IF v_new - v_tolerance <= v_now THEN
        UPDATE public.rate_limits SET tat = v_new, updated_at = v_now WHERE key = p_key;
        RETURN QUERY SELECT true, (extract(epoch FROM v_new - v_now) * 1000000)::bigint;
    ELSE
        RETURN QUERY SELECT false, (extract(epoch FROM v_tat - v_now) * 1000000)::bigint;
    END IF;
END
$$;

REVOKE ALL ON FUNCTION rate_limit_check(text, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rate_limit_check(text, bigint, bigint)
    TO runwarden_auth, runwarden_runs, runwarden_quotas, runwarden_audit;
