-- Organizations and who belongs to them: owned by auth, tenant data under row-level
-- security. Policies read app_org_id() / app_user_id(); runtime roles are neither owners
-- nor superusers, so they cannot bypass them.
CREATE TABLE orgs (
    id            uuid        NOT NULL,
    name          text        NOT NULL,
    plan          text        NOT NULL DEFAULT 'trial',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    terminated_at timestamptz,
    CONSTRAINT orgs_pkey PRIMARY KEY (id),
    CONSTRAINT orgs_name_length CHECK (char_length(name) BETWEEN 1 AND 100)
);

CREATE TABLE memberships (
    org_id     uuid        NOT NULL,
    user_id    uuid        NOT NULL,
    role       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT memberships_pkey PRIMARY KEY (org_id, user_id),
    CONSTRAINT memberships_org_fkey FOREIGN KEY (org_id) REFERENCES orgs (id) ON DELETE CASCADE,
    CONSTRAINT memberships_user_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT memberships_role_check CHECK (role IN ('viewer', 'member', 'admin', 'owner'))
);
CREATE INDEX memberships_user_idx ON memberships (user_id);

CREATE TABLE invitations (
    id          uuid        NOT NULL,
    org_id      uuid        NOT NULL,
    email       text        NOT NULL,
    role        text        NOT NULL,
    token_hash  bytea       NOT NULL,
    invited_by  uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by uuid,
    CONSTRAINT invitations_pkey PRIMARY KEY (id),
    CONSTRAINT invitations_token_hash_key UNIQUE (token_hash),
    CONSTRAINT invitations_org_fkey FOREIGN KEY (org_id) REFERENCES orgs (id) ON DELETE CASCADE,
    CONSTRAINT invitations_invited_by_fkey FOREIGN KEY (invited_by) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT invitations_role_check CHECK (role IN ('viewer', 'member', 'admin', 'owner')),
    CONSTRAINT invitations_email_lowercase CHECK (email = lower(email))
);
CREATE INDEX invitations_org_idx ON invitations (org_id);

ALTER TABLE orgs ENABLE ROW LEVEL SECURITY;
ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;

-- An org is visible in its own context, and to its members when listing their orgs.
CREATE POLICY orgs_tenant ON orgs
    USING (id = app_org_id()
           OR id IN (SELECT m.org_id FROM memberships m WHERE m.user_id = app_user_id()))
    WITH CHECK (id = app_org_id());

-- Memberships are visible in their org's context, or to the member themself; they are
-- written only in their org's context.
CREATE POLICY memberships_tenant ON memberships
    USING (org_id = app_org_id() OR user_id = app_user_id())
    WITH CHECK (org_id = app_org_id());

CREATE POLICY invitations_tenant ON invitations
    USING (org_id = app_org_id())
    WITH CHECK (org_id = app_org_id());

-- Accepting an invitation starts from a token, before the org is known. This function
-- reveals only the org of a live invitation whose token hash the caller already holds.
CREATE FUNCTION invitation_org_id(p_token_hash bytea) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$ SELECT org_id FROM invitations WHERE token_hash = p_token_hash $$;
REVOKE ALL ON FUNCTION invitation_org_id(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invitation_org_id(bytea) TO runwarden_auth;

GRANT SELECT, INSERT, UPDATE, DELETE ON orgs, memberships, invitations TO runwarden_auth;
