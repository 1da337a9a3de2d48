-- The account's JS-SDK ticket, shared by every instance as the access token is: the current
-- ticket, when it expires, and the lease of the one process fetching a new one.
CREATE TABLE jsapi_tickets (
    app_id      TEXT   PRIMARY KEY,
    ticket      TEXT,
    expires_at  BIGINT NOT NULL,
    lease_by    TEXT,
    lease_until BIGINT NOT NULL
);
