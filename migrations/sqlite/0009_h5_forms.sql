-- One-time submission keys of the H5 forms: a key's row commits with the change it made, and
-- `result` is where a repeat of the same post is sent (see h5::submission).
CREATE TABLE h5_submissions (
    key         TEXT    PRIMARY KEY,
    session_id  TEXT    NOT NULL,
    result      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX h5_submissions_created ON h5_submissions (created_at);

-- Failed card-binding attempts, counted per follower (`openid:<openid>`) and per card
-- (`card:<card_no>`), so neither a new follower nor a new card gets fresh tries.
CREATE TABLE bind_failures (
    subject       TEXT    PRIMARY KEY,
    failures      INTEGER NOT NULL,
    locked_until  INTEGER NOT NULL
);
DROP TABLE bind_attempts;

-- OAuth states now live in a signed cookie until the sign-in completes (h5::session): an
-- anonymous visitor writes nothing.
DROP TABLE oauth_states;
CREATE INDEX h5_sessions_expires ON h5_sessions (expires_at);
