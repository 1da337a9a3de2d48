-- Console sessions, server-side: the browser holds a random id, this table its SHA-256 (a copy
-- of the table signs no one in), the admin token it was opened with (removing the token from
-- config ends its sessions) and when it ends. Signing out deletes the row; the hourly sweep
-- deletes expired ones. Replaces the signed cookie and its list of sign-outs: everyone signs
-- in again once.
CREATE TABLE console_sessions (
    id_hash      TEXT   PRIMARY KEY,
    token_sha256 TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
DROP TABLE console_signouts;
