-- Every accepted inbound message, claimed by its dedup key before it is handled.
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
    claimed_at   INTEGER NOT NULL  -- unix ms
);
CREATE INDEX inbound_messages_openid ON inbound_messages (openid, id);
CREATE INDEX inbound_messages_received ON inbound_messages (received_at);

-- What we answered (one row per handled message).
CREATE TABLE inbound_replies (
    message_id   INTEGER PRIMARY KEY REFERENCES inbound_messages (id),
    outcome      TEXT    NOT NULL, -- replied | nothing | deferred
    reply_xml    TEXT,             -- the plaintext reply document, before encryption
    rule         TEXT,
    handled_us   INTEGER NOT NULL,
    replied_at   INTEGER NOT NULL  -- unix ms
);
