-- Which users own which robots (a robot may have several owners).
CREATE TABLE ownership (
    robot_id  TEXT NOT NULL REFERENCES users (id),
    user_id   TEXT NOT NULL REFERENCES users (id),
    paired_at BIGINT NOT NULL,
    PRIMARY KEY (robot_id, user_id)
);
CREATE INDEX ownership_user ON ownership (user_id);
