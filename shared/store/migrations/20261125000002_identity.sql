-- Users, their sign-in identities and sessions: owned by auth. Not tenant data: a user
-- belongs to no single organization.
CREATE TABLE users (
    id            uuid        NOT NULL,
    email         text        NOT NULL,
    password_hash text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_email_lowercase CHECK (email = lower(email))
);

-- External identities (Google). The identity key is (issuer, subject), never the email.
CREATE TABLE user_identities (
    issuer     text        NOT NULL,
    subject    text        NOT NULL,
    user_id    uuid        NOT NULL,
    email      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_identities_pkey PRIMARY KEY (issuer, subject),
    CONSTRAINT user_identities_user_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX user_identities_user_idx ON user_identities (user_id);

-- A session is one sign-in: the family of all refresh tokens rotated from it. Access tokens
-- name their session, so revoking it kills them at the next request.
CREATE TABLE sessions (
    id             uuid        NOT NULL,
    user_id        uuid        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text,
    CONSTRAINT sessions_pkey PRIMARY KEY (id),
    CONSTRAINT sessions_user_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

-- Refresh tokens are stored only as SHA-256 hashes of 256-bit random values.
CREATE TABLE refresh_tokens (
    token_hash bytea       NOT NULL,
    session_id uuid        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz,
    CONSTRAINT refresh_tokens_pkey PRIMARY KEY (token_hash),
    CONSTRAINT refresh_tokens_session_fkey FOREIGN KEY (session_id) REFERENCES sessions (id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

-- Failed sign-in counters per account and per client IP.
CREATE TABLE auth_throttle (
    key               text        NOT NULL,
    failures          integer     NOT NULL DEFAULT 0,
    window_started_at timestamptz NOT NULL DEFAULT now(),
    blocked_until     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT auth_throttle_pkey PRIMARY KEY (key)
);

-- Google sign-in attempts between /google/start and /google/callback: single use.
CREATE TABLE oidc_login_flows (
    state_hash           bytea       NOT NULL,
    browser_binding_hash bytea       NOT NULL,
    nonce                text        NOT NULL,
    code_verifier        text        NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    expires_at           timestamptz NOT NULL,
    CONSTRAINT oidc_login_flows_pkey PRIMARY KEY (state_hash)
);

GRANT SELECT, INSERT, UPDATE, DELETE
    ON users, user_identities, sessions, refresh_tokens, auth_throttle, oidc_login_flows
    TO runwarden_auth;
