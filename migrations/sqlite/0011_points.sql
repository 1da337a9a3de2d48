-- Points that move: the CRM's and the tills' transactions, shop orders, tiers, CRM events.
--
-- A ledger entry now says when it happened (`occurred_at`; `created_at` stays when it was
-- recorded), what counts towards the tier (`earned`), which entry it reverses (`voids`, at most
-- once), and where and for how much (`store_code`, `amount_fen`). Kinds: earn | redeem | expire
-- | adjust | void | tier (a tier change in the history, 0 points).
ALTER TABLE points_ledger ADD COLUMN occurred_at INTEGER;
ALTER TABLE points_ledger ADD COLUMN earned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE points_ledger ADD COLUMN voids TEXT;
ALTER TABLE points_ledger ADD COLUMN store_code TEXT;
ALTER TABLE points_ledger ADD COLUMN amount_fen INTEGER;
UPDATE points_ledger SET occurred_at = created_at;
CREATE UNIQUE INDEX points_ledger_voids ON points_ledger (voids) WHERE voids IS NOT NULL;
CREATE INDEX points_ledger_earned ON points_ledger (member_id, occurred_at) WHERE earned <> 0;

-- What is left of a member's points, by the moment they lapse (9223372036854775807: never),
-- kept in the same transaction as every entry: a balance reads the live lots only, however
-- long the history (members::points).
CREATE TABLE points_lots (
    member_id    INTEGER NOT NULL REFERENCES members (id),
    valid_until  INTEGER NOT NULL,
    remaining    INTEGER NOT NULL,
    PRIMARY KEY (member_id, valid_until)
) WITHOUT ROWID;
CREATE INDEX points_lots_lapsing ON points_lots (valid_until) WHERE remaining > 0;

-- A tier given from outside (an import) holds until then, whatever the window's points say.
ALTER TABLE members ADD COLUMN tier_held_until INTEGER;

-- The brand's own code for a store ("SH01"), as tills send it.
ALTER TABLE stores ADD COLUMN code TEXT;
CREATE UNIQUE INDEX stores_code ON stores (code) WHERE code IS NOT NULL;

-- Jobs with a queue key run one at a time, in id order: a member's CRM events are delivered
-- in the order they happened (a later one waits while an earlier one is queued or running).
ALTER TABLE jobs ADD COLUMN queue_key TEXT;
CREATE INDEX jobs_queue ON jobs (queue_key, state, id) WHERE queue_key IS NOT NULL;
-- Only running jobs have a lease worth looking up: queued and finished ones stay out of it
-- (every job enqueued used to write this index too).
DROP INDEX jobs_lease;
CREATE INDEX jobs_lease ON jobs (lease_until) WHERE state = 'running';

-- One-off data upgrades the code runs after the migrations (the lots of existing ledgers).
CREATE TABLE wxoa_upgrades (
    name     TEXT PRIMARY KEY,
    done_at  INTEGER
);
INSERT INTO wxoa_upgrades (name, done_at) VALUES ('points_lots', NULL);
