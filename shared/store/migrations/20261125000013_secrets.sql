-- Project secrets (owned by runs), encrypted before they reach this database (DESIGN.md
-- section 2, "Secrets"; shared/vault). Nothing here is plaintext: each org has one data key,
-- stored only wrapped by a key-encryption key (KEK) that lives in runs' configuration, and
-- every secret version is AES-256-GCM ciphertext bound to its org, project, name, kind and
-- version. Only runs' role may touch these tables.

-- One live data key per org, created on first use. Destroying an org's row makes every copy
-- of its secrets (a backup included) unreadable (DESIGN.md section 7).
CREATE TABLE org_data_keys (
    org_id      uuid        NOT NULL,
    -- The KEK version that wrapped this key (VAULT_KEKS); a rotation re-wraps under the
    -- active one and stamps rotated_at.
    kek_version text        NOT NULL,
    -- 0x01 || nonce || encrypted 32-byte key || tag.
    wrapped_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    rotated_at  timestamptz,
    CONSTRAINT org_data_keys_pkey PRIMARY KEY (org_id),
    CONSTRAINT org_data_keys_org_fkey FOREIGN KEY (org_id) REFERENCES orgs (id) ON DELETE CASCADE,
    CONSTRAINT org_data_keys_kek_version_format CHECK (kek_version ~ '^[A-Za-z0-9_-]{1,32}$'),
    CONSTRAINT org_data_keys_wrapped_key_length CHECK (octet_length(wrapped_key) = 61)
);

-- A secret's row carries its project's org, and this pair makes the database hold that: a
-- secret can only name a project of its own org.
ALTER TABLE projects ADD CONSTRAINT projects_org_id_key UNIQUE (org_id, id);

-- One row per secret name in a project: its kind and its latest version. created_at is the
-- first version's time, updated_at the latest's.
CREATE TABLE project_secrets (
    org_id         uuid        NOT NULL,
    project_id     uuid        NOT NULL,
    -- Becomes an environment variable name in the runner.
    name           text        NOT NULL,
    kind           text        NOT NULL,
    current_version integer    NOT NULL DEFAULT 1,
    created_by     uuid,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT project_secrets_pkey PRIMARY KEY (org_id, project_id, name),
    CONSTRAINT project_secrets_project_fkey FOREIGN KEY (org_id, project_id)
        REFERENCES projects (org_id, id) ON DELETE CASCADE,
    CONSTRAINT project_secrets_name_format CHECK (name ~ '^[A-Z_][A-Z0-9_]{0,63}$'),
    CONSTRAINT project_secrets_kind_check CHECK (kind IN ('client_credential', 'secret_variable',
        'auth_cookie', 'api_key')),
    CONSTRAINT project_secrets_version_positive CHECK (current_version > 0)
);

-- Every version's ciphertext, immutable: runs may insert and read them, never update them.
-- Deleting a secret deletes its versions (the cascade); deleting a project, its secrets.
CREATE TABLE project_secret_versions (
    org_id     uuid        NOT NULL,
    project_id uuid        NOT NULL,
    name       text        NOT NULL,
    version    integer     NOT NULL,
    -- 0x01 || nonce || ciphertext || tag, under the org's data key; values are at most
    -- 64 KiB, so at most 65,536 + 29 bytes.
    ciphertext bytea       NOT NULL,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT project_secret_versions_pkey PRIMARY KEY (org_id, project_id, name, version),
    CONSTRAINT project_secret_versions_secret_fkey FOREIGN KEY (org_id, project_id, name)
        REFERENCES project_secrets (org_id, project_id, name) ON DELETE CASCADE,
    CONSTRAINT project_secret_versions_version_positive CHECK (version > 0),
    CONSTRAINT project_secret_versions_ciphertext_length
        CHECK (octet_length(ciphertext) BETWEEN 29 AND 65565)
);

ALTER TABLE org_data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE project_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE project_secret_versions ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_data_keys_tenant ON org_data_keys
    USING (org_id = app_org_id()) WITH CHECK (org_id = app_org_id());
CREATE POLICY project_secrets_tenant ON project_secrets
    USING (org_id = app_org_id()) WITH CHECK (org_id = app_org_id());
CREATE POLICY project_secret_versions_tenant ON project_secret_versions
    USING (org_id = app_org_id()) WITH CHECK (org_id = app_org_id());

-- Least privilege: a data key is created and re-wrapped, never deleted by the app (org
-- deletion cascades); only its wrapping columns change.
GRANT SELECT, INSERT ON org_data_keys TO runwarden_runs;
GRANT UPDATE (kek_version, wrapped_key, rotated_at) ON org_data_keys TO runwarden_runs;
GRANT SELECT, INSERT, UPDATE, DELETE ON project_secrets TO runwarden_runs;
GRANT SELECT, INSERT ON project_secret_versions TO runwarden_runs;

-- Key rotation re-wraps every org's data key, across orgs. This names only the orgs whose
-- key is not yet under the active KEK version (no key material); each is then re-wrapped in
-- its own transaction scoped to that org, under row-level security like any other write.
CREATE FUNCTION vault_data_keys_to_rewrap(p_active text)
    RETURNS TABLE (org_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$
        SELECT k.org_id FROM org_data_keys k WHERE k.kek_version <> p_active ORDER BY k.org_id
    $$;
REVOKE ALL ON FUNCTION vault_data_keys_to_rewrap(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_data_keys_to_rewrap(text) TO runwarden_runs;
