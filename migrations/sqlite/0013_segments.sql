-- Segments: audiences marketing defines by rules over the directory, pushed to WeChat as tags.
CREATE TABLE segments (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,  -- also the WeChat tag's name (1 to 30 bytes)
    rules        TEXT    NOT NULL,         -- JSON, as accepted (audiences::Rules)
    tag_id       INTEGER,                  -- the WeChat tag it is synced to, once created
    created_by   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- Who the segment's WeChat tag holds, as far as wxoa put them there.
CREATE TABLE segment_members (
    segment_id   INTEGER NOT NULL REFERENCES segments (id),
    follower_id  INTEGER NOT NULL REFERENCES followers (id),
    PRIMARY KEY (segment_id, follower_id)
);

-- Syncs of a segment to its tag: planning (the difference, by follower id ranges from
-- plan_after), tagging and untagging (50 a call, the planned rows deleted as they are done),
-- done or failed. `running` holds the segment id while unfinished: one sync a segment at a time.
CREATE TABLE segment_syncs (
    id           INTEGER PRIMARY KEY,
    segment_id   INTEGER NOT NULL REFERENCES segments (id),
    state        TEXT    NOT NULL,         -- planning | tagging | untagging | done | failed
    step         INTEGER NOT NULL,
    running      INTEGER UNIQUE,
    plan_after   INTEGER NOT NULL DEFAULT 0,
    planned_add  INTEGER NOT NULL DEFAULT 0,
    planned_remove INTEGER NOT NULL DEFAULT 0,
    added        INTEGER NOT NULL DEFAULT 0,
    removed      INTEGER NOT NULL DEFAULT 0,
    skipped      INTEGER NOT NULL DEFAULT 0,  -- followers who hold 20 tags already
    error        TEXT,
    requested_by TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX segment_syncs_segment ON segment_syncs (segment_id, id);

-- A sync's planned changes not yet made (op: 1 tag, -1 untag).
CREATE TABLE segment_ops (
    sync_id      INTEGER NOT NULL REFERENCES segment_syncs (id),
    op           INTEGER NOT NULL,
    follower_id  INTEGER NOT NULL,
    PRIMARY KEY (sync_id, op, follower_id)
);
