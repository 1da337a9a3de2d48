-- Beauty advisors per store, and their bookings. A confirmed booking owns its slot: the
-- partial unique index makes double booking impossible, however many requests race for it.
CREATE TABLE advisors (
    id         INTEGER PRIMARY KEY,
    store_id   INTEGER NOT NULL REFERENCES stores (id),
    name       TEXT    NOT NULL,
    active     INTEGER NOT NULL
);

CREATE TABLE bookings (
    id            INTEGER PRIMARY KEY,
    member_id     INTEGER NOT NULL REFERENCES members (id),
    advisor_id    INTEGER NOT NULL REFERENCES advisors (id),
    slot_start    INTEGER NOT NULL,  -- unix ms
    status        TEXT    NOT NULL,  -- confirmed | cancelled
    created_at    INTEGER NOT NULL,
    cancelled_at  INTEGER
);
CREATE UNIQUE INDEX bookings_one_per_slot ON bookings (advisor_id, slot_start) WHERE status = 'confirmed';
CREATE INDEX bookings_member ON bookings (member_id, slot_start);
