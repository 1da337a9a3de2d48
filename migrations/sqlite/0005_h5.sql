-- Browser sessions of the H5 pages: the cookie holds the signed id; openid is set by OAuth.
CREATE TABLE h5_sessions (
    id          TEXT    PRIMARY KEY,
    openid      TEXT,
    nickname    TEXT,               -- from snsapi_userinfo, to prefill the enrolment form
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

-- OAuth states: single use, expiring, bound to the session that started the flow.
CREATE TABLE oauth_states (
    state       TEXT    PRIMARY KEY,
    session_id  TEXT    NOT NULL,
    next        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    used        INTEGER NOT NULL
);

-- Failed card-binding attempts per follower, for the lockout.
CREATE TABLE bind_attempts (
    openid        TEXT    PRIMARY KEY,
    failures      INTEGER NOT NULL,
    locked_until  INTEGER NOT NULL
);
