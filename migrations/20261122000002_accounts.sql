-- Accounts, tokens, profiles, contacts and robots. Portable SQL (SQLite and
-- PostgreSQL). No phone number is stored: one-time codes are keyed by an
-- HMAC of the number, users by their id.
ALTER TABLE users ADD COLUMN visibility TEXT NOT NULL DEFAULT 'contacts'
    CHECK (visibility IN ('everyone', 'contacts'));

CREATE TABLE otp_codes (
    phone_hash   TEXT PRIMARY KEY,
    code_hash    TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    attempts     BIGINT NOT NULL,
    -- Codes sent in the current rate-limit window, and when it began.
    sends        BIGINT NOT NULL,
    window_start BIGINT NOT NULL
);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    -- Every rotation of one sign-in shares a family; reuse revokes it whole.
    family     TEXT NOT NULL,
    subject    TEXT NOT NULL REFERENCES users (id),
    kind       TEXT NOT NULL,
    device     TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);

CREATE TABLE profiles (
    user_id    TEXT PRIMARY KEY REFERENCES users (id),
    nickname   TEXT,
    photo_url  TEXT,
    email      TEXT,
    alt_phone  TEXT,
    updated_at BIGINT NOT NULL
);

CREATE TABLE contacts (
    owner   TEXT NOT NULL REFERENCES users (id),
    contact TEXT NOT NULL REFERENCES users (id),
    PRIMARY KEY (owner, contact)
);

CREATE TABLE blocks (
    owner   TEXT NOT NULL REFERENCES users (id),
    blocked TEXT NOT NULL REFERENCES users (id),
    PRIMARY KEY (owner, blocked)
);

CREATE TABLE robots (
    id          TEXT PRIMARY KEY REFERENCES users (id),
    secret_hash TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE discovery_usage (
    user_id TEXT NOT NULL REFERENCES users (id),
    day     BIGINT NOT NULL,
    lookups BIGINT NOT NULL,
    PRIMARY KEY (user_id, day)
);
