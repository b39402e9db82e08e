-- Email ownership (issue 10): a password sign-up is unverified until the link mailed to its
-- address is followed; the mail goes out through a transactional outbox.

-- When the user proved they receive mail at `email` (NULL: not yet). Users who signed in
-- with Google (a row in user_identities) were proven by Google at their creation; users
-- who only ever signed up with a password were never proven and must verify (their next
-- login answers 403 email_unverified; a sign-up or a resend mails them a link).
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;
UPDATE users u SET email_verified_at = u.created_at
 WHERE EXISTS (SELECT 1 FROM user_identities i WHERE i.user_id = u.id);

-- Single-use tokens mailed to a user: email verification now, password reset and email
-- change later. Stored only as the SHA-256 of the token (the token itself is only in the
-- mail). A verification token carries what its sign-up asked for: the password hash
-- (Argon2 PHC string, never the password) and the personal org's name, applied only when
-- the link is followed, so the password that ends up set is that of the sign-up whose
-- mail was opened.
CREATE TABLE email_tokens (
    token_hash    bytea       NOT NULL,
    user_id       uuid        NOT NULL,
    purpose       text        NOT NULL,
    password_hash text,
    org_name      text,
    new_email     text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    CONSTRAINT email_tokens_pkey PRIMARY KEY (token_hash),
    CONSTRAINT email_tokens_user_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT email_tokens_purpose CHECK (purpose IN ('verify_email', 'password_reset', 'email_change')),
    CONSTRAINT email_tokens_new_email_lowercase CHECK (new_email = lower(new_email))
);
CREATE INDEX email_tokens_user_idx ON email_tokens (user_id, purpose);

-- Mail to send, written in the transaction of what caused it (nothing is lost when the SMTP
-- relay is down, and no request waits on SMTP). auth's mail sender claims due rows with
-- FOR UPDATE SKIP LOCKED, sends them and retries with backoff. The body holds a live
-- token: it is cleared (NULL) as soon as the mail is sent.
CREATE TABLE mail_outbox (
    id              uuid        NOT NULL,
    to_address      text        NOT NULL,
    subject         text        NOT NULL,
    body_text       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    CONSTRAINT mail_outbox_pkey PRIMARY KEY (id)
);
CREATE INDEX mail_outbox_due_idx ON mail_outbox (next_attempt_at) WHERE sent_at IS NULL;

GRANT SELECT, INSERT, UPDATE, DELETE ON email_tokens, mail_outbox TO runwarden_auth;
