-- The account's pace of WeChat calls per API family, shared by every instance: the next free
-- slot (unix microseconds) of a GCRA bucket, reserved with one atomic upsert per paced call.
CREATE TABLE wechat_pace (
    app_id  TEXT   NOT NULL,
    family  TEXT   NOT NULL,
    next_us BIGINT NOT NULL,
    PRIMARY KEY (app_id, family)
);
