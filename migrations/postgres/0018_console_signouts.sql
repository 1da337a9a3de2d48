-- Console sessions that were signed out before their expiry. The session itself is a signed
-- cookie (nothing stored at sign-in); signing out records its signature here so a copy of the
-- cookie is refused afterwards. A row is useless once expires_at passes: the hourly sweep
-- deletes it.
CREATE TABLE console_signouts (
    sig        TEXT   PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
