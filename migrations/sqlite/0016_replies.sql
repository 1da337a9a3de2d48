-- Replies edited in the console: keyword and menu-click replies routed among routes.toml's
-- rules by priority. `spec` is the reply as accepted (JSON: match, reply); every change writes
-- a version row (the audit trail: who, what, when, and so the previous version) and moves the
-- generation on, which every instance polls to apply the change without a restart.
CREATE TABLE replies (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    priority     INTEGER NOT NULL,
    enabled      INTEGER NOT NULL,
    spec         TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    created_by   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_by   TEXT    NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE reply_versions (
    reply_id     INTEGER NOT NULL REFERENCES replies (id),
    version      INTEGER NOT NULL,
    action       TEXT    NOT NULL,   -- created | updated | disabled | enabled
    priority     INTEGER NOT NULL,
    enabled      INTEGER NOT NULL,
    spec         TEXT    NOT NULL,
    changed_by   TEXT    NOT NULL,
    changed_at   INTEGER NOT NULL,
    PRIMARY KEY (reply_id, version)
);

CREATE TABLE reply_generation (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    generation   INTEGER NOT NULL
);
INSERT INTO reply_generation (id, generation) VALUES (1, 0);
