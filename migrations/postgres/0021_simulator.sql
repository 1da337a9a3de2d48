-- `wxoa dev`'s follower simulator: its simulated followers and their chats, so that a restart
-- of `dev` keeps them as it keeps memberships. Only `dev` writes here; a `serve` database
-- leaves both tables empty.
CREATE TABLE simulator_followers (
    openid     TEXT   PRIMARY KEY,
    name       TEXT   NOT NULL,
    tags       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE simulator_bubbles (
    id         BIGINT PRIMARY KEY,
    openid     TEXT   NOT NULL,
    sender     TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
