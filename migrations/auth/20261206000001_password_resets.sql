-- Password-reset tokens, like verification tokens: single use, stored as SHA-256 hashes
-- (the raw token exists only in the e-mailed link), short-lived, and a new one revokes
-- the user's earlier ones.
CREATE TABLE password_resets (
    token_hash  BYTEA PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX password_resets_user ON password_resets (user_id);
