-- Presence over several nodes: each node's devices online per user, and
-- when each node last said it is alive. A user's devices are those of its
-- rows; a node silent too long has its rows removed by another node. A
-- device row always names a listed node: a node removed as silent cannot
-- add rows until it lists itself again.
CREATE TABLE nodes (
    id      TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);

CREATE TABLE presence_devices (
    user_id TEXT NOT NULL REFERENCES users (id),
    node_id TEXT NOT NULL REFERENCES nodes (id),
    device  TEXT NOT NULL,
    PRIMARY KEY (user_id, node_id, device)
);
CREATE INDEX presence_devices_node ON presence_devices (node_id);
