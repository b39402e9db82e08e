-- One runtime role per function. Roles are cluster-wide, so creation tolerates a role that
-- already exists (another database of the same cluster, or a concurrent test migration).
-- In production the Cloud SQL IAM user of each function's service account is granted its
-- role; locally the roles log in directly over trust auth.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['runwarden_auth', 'runwarden_runs', 'runwarden_quotas', 'runwarden_audit'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS', r);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO runwarden_auth, runwarden_runs, runwarden_quotas, runwarden_audit', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO runwarden_auth, runwarden_runs, runwarden_quotas, runwarden_audit;

-- The tenant settings that row-level security policies read. They are set per transaction
-- (set_config(..., true)); unset or empty means "no tenant", which matches no row.
CREATE FUNCTION app_org_id() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('app.org_id', true), '')::uuid $$;

CREATE FUNCTION app_user_id() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('app.user_id', true), '')::uuid $$;
