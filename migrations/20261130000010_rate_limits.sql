-- Per-user rate limits counted in the database, so a user's budget is the
-- same however many nodes it talks to: one GCRA cell per key, its
-- theoretical arrival time in ms. A key whose time has passed is full
-- again, and may go.
CREATE TABLE rate_limits (
    key TEXT PRIMARY KEY,
    tat BIGINT NOT NULL
);
CREATE INDEX rate_limits_tat ON rate_limits (tat);
