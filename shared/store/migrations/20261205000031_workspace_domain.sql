-- An org may restrict its members to Google sign-in from one Workspace domain (issue 10,
-- "Linking without takeover"; SSO-04). Then a member reaches the org only through a session
-- that came from Google sign-in whose `hd` claim equals the domain: every function checks
-- it, because every function enters an org through auth_enter.

-- Lowercase DNS name: labels of letters, digits and inner hyphens, at least two labels.
ALTER TABLE orgs ADD COLUMN google_workspace_domain text;
ALTER TABLE orgs ADD CONSTRAINT orgs_google_workspace_domain_check CHECK (
    google_workspace_domain IS NULL
    OR (char_length(google_workspace_domain) <= 253
        AND google_workspace_domain ~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$'));

-- The Workspace domain (`hd`) of the Google identity a session was started with; NULL for
-- a password session or a Google account outside any Workspace. Refresh keeps the session,
-- so it keeps its `hd`.
ALTER TABLE sessions ADD COLUMN google_hd text;

-- auth_enter gains a third column, `sso_required`: the caller is a member of the org, but
-- the org requires a Google session from its Workspace domain and this session is not one.
-- Then `member_role` is NULL too, so a caller that reads only the first two columns still
-- refuses (as a non-member). A new column changes the return type: the function is dropped
-- and created again, and every role that could execute it keeps that right.
DO $do$
DECLARE
    grantees text[];
    grantee text;
BEGIN
    SELECT coalesce(array_agg(DISTINCT r.rolname), '{}') INTO grantees
      FROM pg_proc p
     CROSS JOIN LATERAL aclexplode(p.proacl) a
      JOIN pg_roles r ON r.oid = a.grantee
     WHERE p.oid = 'public.auth_enter(uuid, uuid, uuid)'::regprocedure
       AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner;

    DROP FUNCTION public.auth_enter(uuid, uuid, uuid);

    -- Inside the caller's transaction: sets the tenant settings that row-level security
    -- reads (for the rest of that transaction only) and answers whether the session is live,
    -- which role the user holds in the org (NULL: not a member, or refused by the org's
    -- Workspace domain) and whether that refusal is the domain's. SECURITY INVOKER: it sees
    -- only what the runtime role may see.
    CREATE FUNCTION public.auth_enter(p_session uuid, p_user uuid, p_org uuid)
        RETURNS TABLE (session_live boolean, member_role text, sso_required boolean)
        LANGUAGE plpgsql VOLATILE SECURITY INVOKER
        AS $fn$
    DECLARE
        v_live boolean;
        v_hd text;
    BEGIN
        PERFORM set_config('app.org_id', coalesce(p_org::text, ''), true),
                set_config('app.user_id', p_user::text, true);
        SELECT true, s.google_hd INTO v_live, v_hd
          FROM public.sessions s
         WHERE s.id = p_session AND s.user_id = p_user
           AND s.revoked_at IS NULL AND s.expires_at > now();
        RETURN QUERY
        SELECT coalesce(v_live, false),
               CASE WHEN NOT mo.refused THEN mo.role END,
               coalesce(mo.refused, false)
          FROM (SELECT 1) one
          LEFT JOIN LATERAL (
               SELECT m.role,
                      (o.google_workspace_domain IS NOT NULL
                       AND o.google_workspace_domain IS DISTINCT FROM v_hd) AS refused
                 FROM public.memberships m JOIN public.orgs o ON o.id = m.org_id
                WHERE m.org_id = p_org AND m.user_id = p_user AND o.terminated_at IS NULL
          ) mo ON true;
    END
    $fn$;

    REVOKE ALL ON FUNCTION public.auth_enter(uuid, uuid, uuid) FROM PUBLIC;
    FOREACH grantee IN ARRAY grantees LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION public.auth_enter(uuid, uuid, uuid) TO %I',
                       grantee);
    END LOOP;
END
$do$;
