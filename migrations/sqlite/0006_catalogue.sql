-- Products members can redeem with points, with their stock.
CREATE TABLE catalogue (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL,
    points_cost  INTEGER NOT NULL,
    stock        INTEGER NOT NULL,
    active       INTEGER NOT NULL
);

CREATE TABLE redemptions (
    id          INTEGER PRIMARY KEY,
    member_id   INTEGER NOT NULL REFERENCES members (id),
    item_id     INTEGER NOT NULL REFERENCES catalogue (id),
    points      INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
