-- Presence survives restarts only as its sequence number and last-seen
-- time: at startup everyone is offline, with a larger seq.
CREATE TABLE presence (
    user_id   TEXT PRIMARY KEY REFERENCES users (id),
    seq       BIGINT NOT NULL,
    last_seen BIGINT
);
