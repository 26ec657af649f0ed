-- Calls decided in the database, so any node can take a call's next step:
-- the callee's devices' legs, the ring deadline that every node sweeps,
-- the count of changes (nodes keep the newest they hear of), and the node
-- that holds an accepted call (its media room and command deadlines), whose
-- stop ends it `failed`.
ALTER TABLE calls ADD COLUMN legs TEXT NOT NULL DEFAULT '{}';
ALTER TABLE calls ADD COLUMN ring_deadline BIGINT NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE calls ADD COLUMN node TEXT;
CREATE INDEX calls_live_caller ON calls (caller) WHERE state <> 'ended';
CREATE INDEX calls_live_callee ON calls (callee) WHERE state <> 'ended';
CREATE INDEX calls_ringing ON calls (ring_deadline) WHERE state IN ('inviting', 'ringing');
