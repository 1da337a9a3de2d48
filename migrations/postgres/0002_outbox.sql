-- The account's access token, shared by every instance; the lease says who is refreshing it.
CREATE TABLE access_tokens (
    app_id        TEXT    PRIMARY KEY,
    token         TEXT,
    expires_at    BIGINT  NOT NULL,  -- unix ms
    lease_by      TEXT,
    lease_until   BIGINT  NOT NULL,  -- unix ms
    force_refresh BOOLEAN NOT NULL   -- WeChat said the token is invalid: ask for a new one
);

-- The outbox: everything sent to WeChat later (deferred replies, template messages,
-- broadcasts, reminders). A job is claimed with a lease; an expired lease makes it claimable
-- again, so a worker that dies loses nothing.
CREATE TABLE jobs (
    id           BIGSERIAL PRIMARY KEY,
    kind         TEXT    NOT NULL,
    payload      TEXT    NOT NULL,   -- JSON
    dedupe_key   TEXT    NOT NULL UNIQUE,
    state        TEXT    NOT NULL,   -- queued | running | done | dead
    attempts     BIGINT  NOT NULL,
    run_at       BIGINT  NOT NULL,   -- unix ms
    lease_until  BIGINT  NOT NULL,   -- unix ms
    leased_by    TEXT,
    last_error   TEXT,
    result       TEXT,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
-- Claiming reads due jobs in run_at order, and (separately) running jobs whose lease ran out.
CREATE INDEX jobs_due ON jobs (state, run_at, id);
CREATE INDEX jobs_lease ON jobs (state, lease_until);
