-- Every accepted inbound message, claimed under its dedup key, with what we answered.
-- outcome is NULL while the message is being handled by the instance in claimed_by.
-- Written on every webhook call, so it carries no index beyond its keys: lookups go by
-- dedup_key, and `wxoa fixtures export` reads newest-first by id.
CREATE TABLE inbound_messages (
    id           INTEGER PRIMARY KEY,
    dedup_key    TEXT    NOT NULL UNIQUE,
    openid       TEXT    NOT NULL,
    msg_type     TEXT    NOT NULL,
    event        TEXT,
    event_key    TEXT,
    msg_id       TEXT,
    create_time  INTEGER NOT NULL,
    encrypted    INTEGER NOT NULL,
    raw_xml      TEXT    NOT NULL,
    received_at  INTEGER NOT NULL, -- unix ms
    claimed_by   TEXT    NOT NULL, -- instance id
    claimed_at   INTEGER NOT NULL, -- unix ms
    outcome      TEXT,             -- replied | nothing | deferred | failed
    reply_xml    TEXT,             -- the plaintext reply document, before encryption
    rule         TEXT,
    handled_us   INTEGER,
    replied_at   INTEGER           -- unix ms
);
