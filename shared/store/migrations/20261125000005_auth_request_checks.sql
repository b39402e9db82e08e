-- The checks every authenticated auth request makes, in one round trip each.
--
-- auth_enter: inside the caller's transaction, sets the tenant settings that row-level
-- security reads (for the rest of that transaction only) and answers whether the session
-- is live and which role the user holds in the org. SECURITY INVOKER: it sees only what the
-- runtime role may see.
CREATE FUNCTION auth_enter(p_session uuid, p_user uuid, p_org uuid)
    RETURNS TABLE (session_live boolean, member_role text)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    AS $$
BEGIN
    PERFORM set_config('app.org_id', coalesce(p_org::text, ''), true),
            set_config('app.user_id', p_user::text, true);
    RETURN QUERY SELECT
        EXISTS (SELECT 1 FROM public.sessions s
                 WHERE s.id = p_session AND s.user_id = p_user
                   AND s.revoked_at IS NULL AND s.expires_at > now()),
        (SELECT m.role FROM public.memberships m JOIN public.orgs o ON o.id = m.org_id
          WHERE m.org_id = p_org AND m.user_id = p_user AND o.terminated_at IS NULL);
END
$$;

-- auth_me: GET /v1/me as one statement (its implicit transaction scopes the settings):
-- nothing unless the session is live, else the user's email and live memberships.
CREATE FUNCTION auth_me(p_session uuid, p_user uuid)
    RETURNS TABLE (email text, orgs json)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    AS $$
BEGIN
    PERFORM set_config('app.org_id', '', true), set_config('app.user_id', p_user::text, true);
    RETURN QUERY
    SELECT u.email,
           coalesce(json_agg(json_build_object('org_id', o.id, 'name', o.name, 'role', m.role)
                             ORDER BY m.created_at, m.org_id) FILTER (WHERE o.id IS NOT NULL),
                    '[]'::json)
      FROM public.sessions s
      JOIN public.users u ON u.id = s.user_id
      LEFT JOIN public.memberships m ON m.user_id = u.id
      LEFT JOIN public.orgs o ON o.id = m.org_id AND o.terminated_at IS NULL
     WHERE s.id = p_session AND s.user_id = p_user
       AND s.revoked_at IS NULL AND s.expires_at > now()
     GROUP BY u.id;
END
$$;

REVOKE ALL ON FUNCTION auth_enter(uuid, uuid, uuid), auth_me(uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_enter(uuid, uuid, uuid), auth_me(uuid, uuid) TO runwarden_auth;
