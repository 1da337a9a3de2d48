-- What a campaign's article link led to, per minute and per push (0: a link naming no push):
-- opens of /buy/{id}, followers opening it for the first time, checkout links issued, and the
-- orders credited to it by their checkout token. Counted as they happen, so the funnel and its
-- per-minute series read at most a row a minute, however many opens there were.
CREATE TABLE funnel_minutes (
    campaign_id   BIGINT  NOT NULL,
    push_id       BIGINT  NOT NULL,
    minute        BIGINT  NOT NULL,  -- unix ms / 60,000
    opens         BIGINT  NOT NULL DEFAULT 0,
    openers       BIGINT  NOT NULL DEFAULT 0,
    checkouts     BIGINT  NOT NULL DEFAULT 0,
    orders        BIGINT  NOT NULL DEFAULT 0,
    paid          BIGINT  NOT NULL DEFAULT 0,
    revenue_fen   BIGINT  NOT NULL DEFAULT 0,
    refunds       BIGINT  NOT NULL DEFAULT 0,
    refunded_fen  BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, push_id, minute)
);

-- Who opened a campaign's link signed in, once each (the unique count).
CREATE TABLE link_openers (
    campaign_id  BIGINT  NOT NULL,
    openid       TEXT    NOT NULL,
    push_id      BIGINT  NOT NULL,
    first_at     BIGINT  NOT NULL,
    PRIMARY KEY (campaign_id, openid)
);

-- Checkout links issued, by the SHA-256 of their token: an order naming its token is credited
-- to that campaign and push (a token we did not issue credits nothing).
CREATE TABLE checkouts (
    token_sha256  TEXT    PRIMARY KEY,
    campaign_id   BIGINT  NOT NULL,
    push_id       BIGINT  NOT NULL,
    openid        TEXT    NOT NULL,
    issued_at     BIGINT  NOT NULL
);
CREATE INDEX checkouts_issued ON checkouts (issued_at);

-- Orders credited to a campaign (one row an order: its statuses are counted as they arrive).
CREATE TABLE order_credits (
    order_id     TEXT    PRIMARY KEY,
    campaign_id  BIGINT  NOT NULL,
    push_id      BIGINT  NOT NULL,
    credited_at  BIGINT  NOT NULL
);

-- When the product's stock last reached zero (NULL while there is some).
ALTER TABLE products ADD COLUMN sold_out_at BIGINT;
