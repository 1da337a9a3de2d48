-- Launch campaigns: articles and a product, pushed on a schedule.
--
-- A push is a schedule (one time, or a cron pattern in a time zone); `next_at` is when it is
-- next due. Firing claims the push by moving `next_at` on with a compare-and-set, and records a
-- run in the same transaction: whoever wins the update is the only one to send, however many
-- instances look at once. The run's `clientmsgid` makes WeChat refuse a repeat too.
CREATE TABLE campaigns (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    product_sku  TEXT,                   -- what the articles sell (products.sku), if anything
    articles     TEXT    NOT NULL,       -- JSON array of 1 to 8 articles
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);

CREATE TABLE pushes (
    id           BIGSERIAL PRIMARY KEY,
    campaign_id  BIGINT NOT NULL REFERENCES campaigns (id),
    name         TEXT    NOT NULL,       -- "teaser", "launch", …
    msg_type     TEXT    NOT NULL,       -- mpnews | text | news
    text         TEXT,                   -- the text of a text push
    audience     TEXT    NOT NULL,       -- all | tag | list
    tag_id       BIGINT,
    openids      TEXT,                   -- JSON array for a list
    at_ms        BIGINT,                -- a one-time push: when (unix ms)
    cron         TEXT,                   -- a repeating push: its pattern
    time_zone    TEXT    NOT NULL,
    next_at      BIGINT,                -- next due (unix ms); NULL once nothing is left to send
    status       TEXT    NOT NULL,       -- scheduled | fired | cancelled | missed
    created_by   TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL
);
CREATE INDEX pushes_due ON pushes (next_at) WHERE next_at IS NOT NULL;
CREATE INDEX pushes_campaign ON pushes (campaign_id);

CREATE TABLE push_runs (
    id            BIGSERIAL PRIMARY KEY,
    push_id       BIGINT NOT NULL REFERENCES pushes (id),
    due_at        BIGINT  NOT NULL,
    status        TEXT    NOT NULL,      -- sending | submitted | finished | failed | missed
    claimed_by    TEXT,
    claimed_at    BIGINT,
    clientmsgid   TEXT    NOT NULL,
    attempts      BIGINT  NOT NULL DEFAULT 0,
    media_id      TEXT,                  -- the draft an mpnews push sent
    msg_id        BIGINT,               -- WeChat's, echoed by MASSSENDJOBFINISH
    finish_status TEXT,                  -- MASSSENDJOBFINISH's Status
    total_count   BIGINT,
    filter_count  BIGINT,
    sent_count    BIGINT,
    error_count   BIGINT,
    error         TEXT,
    fired_at      BIGINT,
    finished_at   BIGINT,
    UNIQUE (push_id, due_at)
);
CREATE INDEX push_runs_msg ON push_runs (msg_id);
CREATE INDEX push_runs_sending ON push_runs (status) WHERE status = 'sending';

-- WeChat's MASSSENDJOBFINISH reports by msg_id, kept as they arrive: the report can come
-- before the run has recorded its msg_id (WeChat's answer and its event race), and is applied
-- to the run by whichever of the two writes second.
CREATE TABLE mass_send_results (
    msg_id        BIGINT  PRIMARY KEY,
    finish_status TEXT    NOT NULL,
    total_count   BIGINT  NOT NULL,
    filter_count  BIGINT  NOT NULL,
    sent_count    BIGINT  NOT NULL,
    error_count   BIGINT  NOT NULL,
    received_at   BIGINT  NOT NULL
);

-- What the shop sells through its checkout; the stock is what the shop last told us.
CREATE TABLE products (
    sku         TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    stock       BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    reported_at BIGINT                  -- the shop's X-Wxoa-Timestamp of the stock figure: an older report never overwrites a newer one
);

-- Order notifications from the shop, one row per order and status: the primary key makes a
-- repeated notification a no-op.
CREATE TABLE orders (
    order_id     TEXT    NOT NULL,
    status       TEXT    NOT NULL,       -- created | paid | shipped | refunded
    openid       TEXT    NOT NULL,
    body         TEXT    NOT NULL,       -- the notification as received
    received_at  BIGINT  NOT NULL,
    PRIMARY KEY (order_id, status)
);
