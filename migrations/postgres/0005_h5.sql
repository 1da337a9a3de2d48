-- Browser sessions of the H5 pages: the cookie holds the signed id; openid is set by OAuth.
CREATE TABLE h5_sessions (
    id          TEXT    PRIMARY KEY,
    openid      TEXT,
    nickname    TEXT,               -- from snsapi_userinfo, to prefill the enrolment form
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);

-- OAuth states: single use, expiring, bound to the session that started the flow.
CREATE TABLE oauth_states (
    state       TEXT    PRIMARY KEY,
    session_id  TEXT    NOT NULL,
    next        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    used        BOOLEAN NOT NULL
);

-- Failed card-binding attempts per follower, for the lockout.
CREATE TABLE bind_attempts (
    openid        TEXT    PRIMARY KEY,
    failures      BIGINT  NOT NULL,
    locked_until  BIGINT  NOT NULL
);
