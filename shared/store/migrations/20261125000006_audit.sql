-- The audit log: owned by audit, append-only, one hash chain per organization.
--
-- Each row is one AuditEvent (shared/events) as received from Pub/Sub, numbered per org in
-- arrival order (seq 1, 2, ...). hash = SHA-256(prev_hash || canonical encoding of the row);
-- the first row of an org has 32 zero bytes as prev_hash. The canonical encoding is defined
-- in functions/audit/src/chain.rs; `details` is stored as its canonical JSON text so the
-- stored bytes are exactly the hashed ones. Any edit, deletion or insertion is detectable by
-- walking the chain (GET .../audit-events/verify, or audit-verify on an export).
CREATE TABLE audit_log (
    org_id       uuid        NOT NULL,
    seq          bigint      NOT NULL,
    event_id     uuid        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    actor_kind   text        NOT NULL,
    actor_id     text,
    action       text        NOT NULL,
    target_type  text        NOT NULL,
    target_id    text        NOT NULL,
    outcome      text        NOT NULL,
    request_id   text,
    ip           text,
    user_agent   text,
    details      text        NOT NULL DEFAULT 'null',
    prev_hash    bytea       NOT NULL,
    hash         bytea       NOT NULL,
    created_at   timestamptz NOT NULL,
    CONSTRAINT audit_log_pkey PRIMARY KEY (org_id, seq),
    -- Idempotency: a redelivered event is recognized by its id, across all orgs.
    CONSTRAINT audit_log_event_id_key UNIQUE (event_id),
    CONSTRAINT audit_log_seq_positive CHECK (seq > 0),
    CONSTRAINT audit_log_prev_hash_length CHECK (octet_length(prev_hash) = 32),
    CONSTRAINT audit_log_hash_length CHECK (octet_length(hash) = 32),
    CONSTRAINT audit_log_actor_kind_check CHECK (actor_kind IN ('user', 'api_key', 'runner', 'system')),
    CONSTRAINT audit_log_outcome_check CHECK (outcome IN ('success', 'denied', 'failure'))
);

-- The list filters, newest first within an org.
CREATE INDEX audit_log_actor_idx ON audit_log (org_id, actor_id, seq);
CREATE INDEX audit_log_action_idx ON audit_log (org_id, action, seq);
CREATE INDEX audit_log_target_idx ON audit_log (org_id, target_type, target_id, seq);
CREATE INDEX audit_log_occurred_idx ON audit_log (org_id, occurred_at);

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_log_tenant ON audit_log
    USING (org_id = app_org_id())
    WITH CHECK (org_id = app_org_id());

-- The audit role appends and reads; it can never rewrite or remove a record.
GRANT SELECT, INSERT ON audit_log TO runwarden_audit;

-- Authorizing readers: the same one-round-trip session and role check auth uses
-- (auth_enter), which reads sessions, memberships and orgs as the invoking role.
GRANT SELECT ON sessions, memberships, orgs TO runwarden_audit;
GRANT EXECUTE ON FUNCTION auth_enter(uuid, uuid, uuid) TO runwarden_audit;
