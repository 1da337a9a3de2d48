-- A push may go to a segment: synced to its WeChat tag when the push fires, then sent to it.
ALTER TABLE pushes ADD COLUMN segment_id BIGINT REFERENCES segments (id);
