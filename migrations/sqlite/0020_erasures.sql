-- Who erased which member's (or follower's) personal data, and when: the member number (NULL
-- for a follower who was no member) and how many rows went from each table, as JSON. Nothing
-- of the erased data is kept here.
CREATE TABLE erasures (
    id         INTEGER PRIMARY KEY,
    member_id  BIGINT,
    erased_by  TEXT   NOT NULL,
    erased_at  BIGINT NOT NULL,
    removed    TEXT   NOT NULL
);
