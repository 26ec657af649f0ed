-- Pairing codes in the database, so a robot's code, a user's look-up and
-- claim, and the guess budgets are the same whichever node takes them.
CREATE TABLE pairing_codes (
    code       TEXT PRIMARY KEY,
    robot_id   TEXT NOT NULL REFERENCES users (id),
    expires_at BIGINT NOT NULL
);
CREATE INDEX pairing_codes_robot ON pairing_codes (robot_id);
CREATE INDEX pairing_codes_expiry ON pairing_codes (expires_at);

-- Who looked at a live code (may read its status and claim it).
CREATE TABLE pairing_looks (
    code    TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (code, user_id)
);

-- Look-ups that found no live code, within the budgets' window.
CREATE TABLE pairing_misses (
    user_id TEXT NOT NULL,
    network TEXT,
    code    TEXT NOT NULL,
    at      BIGINT NOT NULL
);
CREATE INDEX pairing_misses_user ON pairing_misses (user_id, at);
CREATE INDEX pairing_misses_network ON pairing_misses (network, at);
CREATE INDEX pairing_misses_at ON pairing_misses (at);

-- One row: until when the server is on guard against guessing. Every
-- look-up locks it, so the budgets are counted one look-up at a time.
CREATE TABLE pairing_guard (
    id    INTEGER PRIMARY KEY,
    until BIGINT NOT NULL
);
INSERT INTO pairing_guard (id, until) VALUES (1, 0);
