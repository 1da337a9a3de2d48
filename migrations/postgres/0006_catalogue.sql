-- Products members can redeem with points, with their stock.
CREATE TABLE catalogue (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT    NOT NULL,
    points_cost  BIGINT  NOT NULL,
    stock        BIGINT  NOT NULL,
    active       BOOLEAN NOT NULL
);

CREATE TABLE redemptions (
    id          BIGSERIAL PRIMARY KEY,
    member_id   BIGINT  NOT NULL REFERENCES members (id),
    item_id     BIGINT  NOT NULL REFERENCES catalogue (id),
    points      BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL
);
