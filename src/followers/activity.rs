//! What followers did, per hour: messages, follows, unfollows and menu taps, counted from the
//! message log behind the webhook so the console's charts read a few hundred rows, never the
//! log itself.
//!
//! The reader works like the directory's ([`super::catch_up`]): a window of log ids at a time,
//! one `GROUP BY` over it (the log's primary key bounds the scan), and the counts added in the
//! transaction that moves its position — guarded by the position it started from — so a window
//! is counted exactly once, whichever instance reads it and whenever a process dies.

use super::{log_window, move_cursor};
use crate::store::Store;
use crate::{with_pool, with_tx};

/// The reader's name in `log_cursors`.
const CURSOR: &str = "activity";
/// Rows per multi-row statement.
const CHUNK: usize = 200;

/// One hour's count of one kind of activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hour {
    /// The hour's start, unix ms.
    pub at: i64,
    /// `message` (any non-event message) or the event's name in lower case.
    pub kind: String,
    /// The menu button's key (`click`) or URL (`view`); empty for every other kind.
    pub event_key: String,
    pub count: i64,
}

/// Counts the log after the reader's position until it is caught up; returns the log rows'
/// id span read.
pub async fn catch_up(store: &Store) -> Result<i64, sqlx::Error> {
    let mut total = 0;
    while let Some((position, upto)) = log_window(store, CURSOR).await? {
        let rows: Vec<(i64, String, String, i64)> = with_pool!(store, pool => sqlx::query_as(
            "SELECT received_at / 3600000, \
                    CASE WHEN msg_type <> 'event' THEN 'message' ELSE SUBSTR(LOWER(COALESCE(event, '')), 1, 32) END, \
                    CASE WHEN msg_type = 'event' AND LOWER(COALESCE(event, '')) IN ('click', 'view') \
                         THEN SUBSTR(COALESCE(event_key, ''), 1, 200) ELSE '' END, \
                    COUNT(*) \
             FROM inbound_messages WHERE id > $1 AND id <= $2 GROUP BY 1, 2, 3")
            .bind(position).bind(upto).fetch_all(pool).await)?;
        let mut tx = store.begin().await?;
        if move_cursor(&mut tx, CURSOR, position, upto).await? {
            for chunk in rows.chunks(CHUNK) {
                with_tx!(&mut tx, conn => {
                    let mut q = sqlx::QueryBuilder::new("INSERT INTO activity_hours (hour, kind, event_key, count) ");
                    q.push_values(chunk, |mut b, (hour, kind, key, n)| {
                        b.push_bind(*hour).push_bind(kind.clone()).push_bind(key.clone()).push_bind(*n);
                    });
                    q.push(" ON CONFLICT (hour, kind, event_key) DO UPDATE SET count = activity_hours.count + excluded.count");
                    q.build().execute(&mut *conn).await.map(|_| ())
                })?;
            }
        }
        tx.commit().await?;
        total += upto - position;
    }
    Ok(total)
}

/// The counts of the hours from `from` up to `to` (unix ms), of the given kinds, in hour order.
pub async fn hours(store: &Store, from: i64, to: i64, kinds: &[&str]) -> Result<Vec<Hour>, sqlx::Error> {
    let rows: Vec<(i64, String, String, i64)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT hour, kind, event_key, count FROM activity_hours WHERE hour >= $1 AND hour < $2 ORDER BY hour")
        .bind(from.div_euclid(3_600_000)).bind((to + 3_599_999).div_euclid(3_600_000)).fetch_all(pool).await)?;
    Ok(rows
        .into_iter()
        .filter(|r| kinds.contains(&r.1.as_str()))
        .map(|(hour, kind, event_key, count)| Hour { at: hour * 3_600_000, kind, event_key, count })
        .collect())
}
