-- One row `/readyz` updates to prove the database takes a write (and is the one migrated).
CREATE TABLE wxoa_probe (
    id  BIGINT  PRIMARY KEY,
    at  BIGINT  NOT NULL
);
INSERT INTO wxoa_probe (id, at) VALUES (1, 0);
