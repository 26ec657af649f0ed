-- Whether a ring was pushed for a call (1), and then its stop (2): a node
-- marks the call before it pushes the ring, only while the call still
-- rings, and whichever node ends the ringing pushes the stop once.
ALTER TABLE calls ADD COLUMN pushed BIGINT NOT NULL DEFAULT 0;
