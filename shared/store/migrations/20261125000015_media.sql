-- Media (owned by runs): the artifacts a run's runner uploads (screenshots, videos). The
-- bytes live in Cloud Storage at runs/{org}/{run}/{name}; this row is what runs hands out
-- media URLs for. The runner asks for an upload URL per artifact, so a retry of the same
-- name replaces its content type and size.

CREATE TABLE run_artifacts (
    run_id       uuid        NOT NULL,
    org_id       uuid        NOT NULL,
    name         text        NOT NULL,
    content_type text        NOT NULL,
    size         bigint      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT run_artifacts_pkey PRIMARY KEY (run_id, name),
    CONSTRAINT run_artifacts_run_fkey FOREIGN KEY (run_id) REFERENCES runs (id) ON DELETE CASCADE,
    -- One path segment of an object name: no separators, no dot-only names.
    CONSTRAINT run_artifacts_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$'),
    CONSTRAINT run_artifacts_content_type_length CHECK (char_length(content_type) BETWEEN 3 AND 100),
    CONSTRAINT run_artifacts_size_check CHECK (size >= 0)
);

ALTER TABLE run_artifacts ENABLE ROW LEVEL SECURITY;
CREATE POLICY run_artifacts_tenant ON run_artifacts
    USING (org_id = app_org_id()) WITH CHECK (org_id = app_org_id());

GRANT SELECT, INSERT, UPDATE ON run_artifacts TO runwarden_runs;
