-- Calls and the push tokens that wake callees up.
CREATE TABLE calls (
    sid           TEXT PRIMARY KEY,
    caller        TEXT NOT NULL REFERENCES users (id),
    caller_device TEXT,
    callee        TEXT NOT NULL REFERENCES users (id),
    kind          TEXT NOT NULL,
    state         TEXT NOT NULL,
    reason        TEXT,
    accepted_by   TEXT,
    created_at    BIGINT NOT NULL,
    accepted_at   BIGINT,
    ended_at      BIGINT
);
CREATE INDEX calls_caller ON calls (caller, created_at);
CREATE INDEX calls_callee ON calls (callee, created_at);

CREATE TABLE push_tokens (
    user_id    TEXT NOT NULL REFERENCES users (id),
    platform   TEXT NOT NULL,
    token      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, token)
);
