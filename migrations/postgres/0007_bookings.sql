-- Beauty advisors per store, and their bookings. A confirmed booking owns its slot: the
-- partial unique index makes double booking impossible, however many requests race for it.
CREATE TABLE advisors (
    id         BIGINT PRIMARY KEY,
    store_id   BIGINT  NOT NULL REFERENCES stores (id),
    name       TEXT    NOT NULL,
    active     BOOLEAN NOT NULL
);

CREATE TABLE bookings (
    id            BIGSERIAL PRIMARY KEY,
    member_id     BIGINT  NOT NULL REFERENCES members (id),
    advisor_id    BIGINT  NOT NULL REFERENCES advisors (id),
    slot_start    BIGINT  NOT NULL,  -- unix ms
    status        TEXT    NOT NULL,  -- confirmed | cancelled
    created_at    BIGINT  NOT NULL,
    cancelled_at  BIGINT
);
CREATE UNIQUE INDEX bookings_one_per_slot ON bookings (advisor_id, slot_start) WHERE status = 'confirmed';
CREATE INDEX bookings_member ON bookings (member_id, slot_start);
