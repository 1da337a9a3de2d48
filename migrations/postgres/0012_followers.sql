-- The follower directory. `followers` gains a numeric id (keyset paging and tag rows refer to
-- it, so an openid need not leave the database to page), the subscribe history, WeChat's remark
-- and tags as the last sync saw them, and the last interaction as the message log says it.
CREATE TABLE followers_v2 (
    id                   BIGSERIAL PRIMARY KEY,
    openid               TEXT    NOT NULL UNIQUE,
    store_id             BIGINT  REFERENCES stores (id),
    subscribed           BOOLEAN NOT NULL,
    scene                TEXT,
    updated_at           BIGINT  NOT NULL,  -- unix ms
    first_subscribed_at  BIGINT,           -- unix ms: the earliest follow we know of
    last_subscribed_at   BIGINT,           -- unix ms: the latest follow (WeChat's subscribe_time)
    unsubscribed_at      BIGINT,           -- unix ms: the latest unfollow, kept after a re-follow
    remark               TEXT,
    last_interaction_at  BIGINT,           -- unix ms: the latest message or event but unfollow
    sync_id              BIGINT             -- the last follower sync whose list named them
);
INSERT INTO followers_v2 (openid, store_id, subscribed, scene, updated_at)
    SELECT openid, store_id, subscribed, scene, updated_at FROM followers;
DROP TABLE followers;
ALTER TABLE followers_v2 RENAME TO followers;
CREATE INDEX followers_store ON followers (store_id) WHERE store_id IS NOT NULL;
CREATE INDEX followers_sync ON followers (sync_id, id);

-- WeChat's tags on each follower (at most 20), as the last sync or segment sync left them.
CREATE TABLE follower_tags (
    follower_id  BIGINT  NOT NULL REFERENCES followers (id),
    tag_id       BIGINT  NOT NULL,
    PRIMARY KEY (follower_id, tag_id)
);
CREATE INDEX follower_tags_tag ON follower_tags (tag_id, follower_id);

-- Pulls of WeChat's follower list, one step at a time so a crash resumes where it stopped:
-- listing (user/get pages from next_openid), details (user/info/batchget for the followers the
-- list named, by id after detail_after), finishing (who was not listed no longer follows).
-- `running` is 1 while a sync is unfinished and NULL after: at most one runs.
CREATE TABLE follower_syncs (
    id            BIGSERIAL PRIMARY KEY,
    state         TEXT    NOT NULL,         -- listing | details | finishing | done | failed
    step          BIGINT  NOT NULL,         -- the step the next job runs; an older job is stale
    running       BIGINT  UNIQUE,
    next_openid   TEXT    NOT NULL DEFAULT '',
    detail_after  BIGINT  NOT NULL DEFAULT 0,
    total         BIGINT,                  -- followers, as WeChat's first page said
    listed        BIGINT  NOT NULL DEFAULT 0,
    detailed      BIGINT  NOT NULL DEFAULT 0,
    unfollowed    BIGINT  NOT NULL DEFAULT 0,
    error         TEXT,
    requested_by  TEXT    NOT NULL,
    started_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    finished_at   BIGINT
);

-- How far a reader of the message log has read (by inbound_messages.id).
CREATE TABLE log_cursors (
    name      TEXT    PRIMARY KEY,
    position  BIGINT  NOT NULL
);
