-- Transactional outbox: every mutation inserts its events here in the same transaction,
-- so a committed change always has its event and a rolled-back one never does. The relay
-- (events crate) publishes pending rows and marks them sent.
CREATE TABLE outbox_events (
    id           uuid        NOT NULL,
    org_id       uuid        NOT NULL,
    topic        text        NOT NULL,
    kind         text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    CONSTRAINT outbox_events_pkey PRIMARY KEY (id)
);
CREATE INDEX outbox_events_pending_idx ON outbox_events (created_at) WHERE published_at IS NULL;

ALTER TABLE outbox_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY outbox_events_tenant ON outbox_events
    USING (org_id = app_org_id())
    WITH CHECK (org_id = app_org_id());

-- Functions only append; they never read or rewrite events.
GRANT INSERT ON outbox_events TO runwarden_auth, runwarden_runs, runwarden_quotas;
