-- Portable SQL: the same file runs on SQLite and PostgreSQL (see
-- docs/configuration.md, "Database"). Times are milliseconds since the epoch.
CREATE TABLE users (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('user', 'robot')),
    created_at BIGINT NOT NULL
);
