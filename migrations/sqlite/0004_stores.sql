-- The brand's stores (ids as the brand numbers them), for "nearest store" and QR attribution.
CREATE TABLE stores (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL,
    city           TEXT,
    address        TEXT,
    latitude       REAL    NOT NULL,
    longitude      REAL    NOT NULL,
    opening_hours  TEXT,
    phone          TEXT,
    active         INTEGER NOT NULL
);

-- Followers as we know them: which store's QR code brought them, whether they still follow.
CREATE TABLE followers (
    openid         TEXT    PRIMARY KEY,
    store_id       INTEGER REFERENCES stores (id),
    subscribed     INTEGER NOT NULL,
    scene          TEXT,
    updated_at     INTEGER NOT NULL
);
