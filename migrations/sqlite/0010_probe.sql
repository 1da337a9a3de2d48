-- One row `/readyz` updates to prove the database takes a write (and is the one migrated).
CREATE TABLE wxoa_probe (
    id  INTEGER PRIMARY KEY,
    at  INTEGER NOT NULL
);
INSERT INTO wxoa_probe (id, at) VALUES (1, 0);
