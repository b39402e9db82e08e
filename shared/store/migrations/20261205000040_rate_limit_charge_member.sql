-- rate_limit_charge_member: an org's request budget is charged only for a live member of
-- that org (issue 10, attack 3: anonymous requests used to spend a victim org's budget).
--
-- One statement, outside any transaction of the caller (its own implicit one, so the key's
-- row lock is held only for the decision, never for a handler's transaction): the session
-- check and membership read of auth_enter, then, only for a live member, rate_limit_check
-- on p_key. `member` false: nothing was charged (allowed and tat_offset_us are NULL).
CREATE FUNCTION rate_limit_charge_member(
    p_session uuid, p_user uuid, p_org uuid,
    p_key text, p_interval_us bigint, p_tolerance_us bigint)
    RETURNS TABLE (member boolean, allowed boolean, tat_offset_us bigint)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    AS $$
DECLARE
    v_live boolean;
    v_role text;
BEGIN
    SELECT e.session_live, e.member_role INTO v_live, v_role
      FROM public.auth_enter(p_session, p_user, p_org) e;
    IF NOT coalesce(v_live, false) OR v_role IS NULL THEN
        RETURN QUERY SELECT false, NULL::boolean, NULL::bigint;
        RETURN;
    END IF;
    RETURN QUERY SELECT true, c.allowed, c.tat_offset_us
      FROM public.rate_limit_check(p_key, p_interval_us, p_tolerance_us) c;
END
$$;

REVOKE ALL ON FUNCTION rate_limit_charge_member(uuid, uuid, uuid, text, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rate_limit_charge_member(uuid, uuid, uuid, text, bigint, bigint)
    TO runwarden_auth, runwarden_runs, runwarden_quotas, runwarden_audit;
