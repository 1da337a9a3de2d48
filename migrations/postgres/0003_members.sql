-- Loyalty members. A member is found by card number or by phone; openid is set once bound.
CREATE TABLE members (
    id          BIGSERIAL PRIMARY KEY,
    card_no     TEXT UNIQUE,
    phone       TEXT,              -- 11-digit mainland mobile number
    name        TEXT,
    birthday    TEXT,              -- YYYY-MM-DD
    tier        TEXT    NOT NULL,
    openid      TEXT UNIQUE,
    store_id    BIGINT,
    source      TEXT    NOT NULL,  -- import | enrol
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX members_phone ON members (phone);

-- Every change to a member's points; the balance is the sum, never a field edited in place.
CREATE TABLE points_ledger (
    id           BIGSERIAL PRIMARY KEY,
    member_id    BIGINT  NOT NULL REFERENCES members (id),
    kind         TEXT    NOT NULL,   -- earn | redeem | expire | adjust
    points       BIGINT  NOT NULL,   -- signed
    valid_until  BIGINT,             -- unix ms; earned points expire then
    reference    TEXT    NOT NULL UNIQUE,
    note         TEXT,
    created_at   BIGINT  NOT NULL
);
CREATE INDEX points_ledger_member ON points_ledger (member_id, created_at);
