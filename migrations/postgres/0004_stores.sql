-- The brand's stores (ids as the brand numbers them), for "nearest store" and QR attribution.
CREATE TABLE stores (
    id             BIGINT PRIMARY KEY,
    name           TEXT    NOT NULL,
    city           TEXT,
    address        TEXT,
    latitude       DOUBLE PRECISION NOT NULL,
    longitude      DOUBLE PRECISION NOT NULL,
    opening_hours  TEXT,
    phone          TEXT,
    active         BOOLEAN NOT NULL
);

-- Followers as we know them: which store's QR code brought them, whether they still follow.
CREATE TABLE followers (
    openid         TEXT    PRIMARY KEY,
    store_id       BIGINT REFERENCES stores (id),
    subscribed     BOOLEAN NOT NULL,
    scene          TEXT,
    updated_at     BIGINT  NOT NULL
);
