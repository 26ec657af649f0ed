-- Whether the user's last stored presence is online: a starting server
-- sets offline (with a larger seq) only the users left online at the last
-- stop. Rows from before this column count as online, so the first start
-- after the upgrade ends them all, as every start used to.
ALTER TABLE presence ADD COLUMN online BOOLEAN NOT NULL DEFAULT TRUE;
