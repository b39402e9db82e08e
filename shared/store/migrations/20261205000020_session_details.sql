-- Sessions remember how and from where they were started, and when their user last proved
-- who they are in them (issue 10: the session list, recent re-authentication).
--   authenticated_at: the sign-in, or the last POST /v1/auth/reauthenticate in this
--     session; sensitive changes need it within the last 5 minutes.
--   auth_method: 'password' or 'google'.
--   ip, user_agent: the client address and User-Agent (at most 256 characters) of the
--     sign-in, shown to the user in their session list. Personal data: kept as long as the
--     session row (deleted by the retention purge 30 days after it expires or is revoked).
-- Existing sessions keep NULL method/ip/user agent; their authenticated_at is the migration
-- time at most, so they must re-authenticate for a sensitive change after 5 minutes.
ALTER TABLE sessions
    ADD COLUMN authenticated_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN auth_method      text,
    ADD COLUMN ip               inet,
    ADD COLUMN user_agent       text,
    ADD CONSTRAINT sessions_auth_method_check CHECK (auth_method IN ('password', 'google')),
    ADD CONSTRAINT sessions_user_agent_check CHECK (char_length(user_agent) <= 256);

-- The session list: a user's live sessions, by id (UUIDv7: oldest first).
CREATE INDEX sessions_user_live_idx ON sessions (user_id, id) WHERE revoked_at IS NULL;
