-- What followers did, counted per hour from the message log by a reader behind the webhook
-- (its position in log_cursors moves in the transaction that adds the counts, so a window is
-- counted once however many instances read it). The console's charts read these few rows,
-- never the log: kind is `message` for every non-event message, else the event's name in
-- lower case; event_key is kept for menu taps (`click`, `view`) only.
CREATE TABLE activity_hours (
    hour       INTEGER NOT NULL,  -- unix ms / 3,600,000
    kind       TEXT    NOT NULL,
    event_key  TEXT    NOT NULL DEFAULT '',
    count      INTEGER NOT NULL,
    PRIMARY KEY (hour, kind, event_key)
);
