-- Segments: audiences marketing defines by rules over the directory, pushed to WeChat as tags.
CREATE TABLE segments (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,  -- also the WeChat tag's name (1 to 30 bytes)
    rules        TEXT    NOT NULL,         -- JSON, as accepted (audiences::Rules)
    tag_id       BIGINT,                  -- the WeChat tag it is synced to, once created
    created_by   TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);

-- Who the segment's WeChat tag holds, as far as wxoa put them there.
CREATE TABLE segment_members (
    segment_id   BIGINT  NOT NULL REFERENCES segments (id),
    follower_id  BIGINT  NOT NULL REFERENCES followers (id),
    PRIMARY KEY (segment_id, follower_id)
);

-- Syncs of a segment to its tag: planning (the difference, by follower id ranges from
-- plan_after), tagging and untagging (50 a call, the planned rows deleted as they are done),
-- done or failed. `running` holds the segment id while unfinished: one sync a segment at a time.
CREATE TABLE segment_syncs (
    id           BIGSERIAL PRIMARY KEY,
    segment_id   BIGINT  NOT NULL REFERENCES segments (id),
    state        TEXT    NOT NULL,         -- planning | tagging | untagging | done | failed
    step         BIGINT  NOT NULL,
    running      BIGINT  UNIQUE,
    plan_after   BIGINT  NOT NULL DEFAULT 0,
    planned_add  BIGINT  NOT NULL DEFAULT 0,
    planned_remove BIGINT  NOT NULL DEFAULT 0,
    added        BIGINT  NOT NULL DEFAULT 0,
    removed      BIGINT  NOT NULL DEFAULT 0,
    skipped      BIGINT  NOT NULL DEFAULT 0,  -- followers who hold 20 tags already
    error        TEXT,
    requested_by TEXT    NOT NULL,
    started_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX segment_syncs_segment ON segment_syncs (segment_id, id);

-- A sync's planned changes not yet made (op: 1 tag, -1 untag).
CREATE TABLE segment_ops (
    sync_id      BIGINT  NOT NULL REFERENCES segment_syncs (id),
    op           BIGINT  NOT NULL,
    follower_id  BIGINT  NOT NULL,
    PRIMARY KEY (sync_id, op, follower_id)
);
