-- How far retention has got through the message log, per step ('raw_xml': rows up to this id
-- have had their XML bodies dropped), so each purge batch starts where the last one stopped
-- instead of re-reading what it already did (the log has no index but its id).
CREATE TABLE retention_marks (
    name    TEXT   PRIMARY KEY,
    upto_id BIGINT NOT NULL
);
