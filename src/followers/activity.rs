//! What followers did, per hour: messages, follows, unfollows and menu taps, counted from the
//! message log behind the webhook so the console's charts read a few hundred rows, never the
//! log itself.
//!
//! The reader works like the directory's ([`super::read_log`]): a window of log ids at a time,
//! one `GROUP BY` over it (the log's primary key bounds the scan) or the same counts from the
//! rows the writer handed over, and the counts added in the
//! transaction that moves its position — guarded by the position it started from — so a window
//! is counted exactly once, whichever instance reads it and whenever a process dies.

use super::{log_window, memory_span, move_cursor, off_the_runtime};
use crate::store::Store;
use crate::store::committed::Logged;
use crate::wechat::message::MsgType;
use crate::{with_pool, with_tx};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

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
    read_log(store, &Arc::default()).await
}

/// [`catch_up`], given `rows` this process's writer committed since the last call (as
/// [`super::read_log`]): the log is read only up to the first of them, and they are counted
/// from memory.
pub async fn read_log(store: &Store, rows: &Arc<Vec<Logged>>) -> Result<i64, sqlx::Error> {
    let mut total = 0;
    let before = rows.first().map(|r| r.id - 1);
    while let Some((position, upto)) = log_window(store, CURSOR, before).await? {
        let counts: Vec<(i64, String, String, i64)> = with_pool!(store, pool => sqlx::query_as(
            "SELECT received_at / 3600000, \
                    CASE WHEN msg_type <> 'event' THEN 'message' ELSE SUBSTR(LOWER(COALESCE(event, '')), 1, 32) END, \
                    CASE WHEN msg_type = 'event' AND LOWER(COALESCE(event, '')) IN ('click', 'view') \
                         THEN SUBSTR(COALESCE(event_key, ''), 1, 200) ELSE '' END, \
                    COUNT(*) \
             FROM inbound_messages WHERE id > $1 AND id <= $2 GROUP BY 1, 2, 3")
            .bind(position).bind(upto).fetch_all(pool).await)?;
        add(store, position, upto, &counts).await?;
        metrics::counter!("wxoa_log_reader_rows_total", "reader" => CURSOR, "from" => "log")
            .increment((upto - position) as u64);
        total += upto - position;
    }
    let Some((position, last)) = memory_span(store, CURSOR, rows).await? else { return Ok(total) };
    let counts = off_the_runtime(rows, move |rows| count(rows.iter().filter(|r| r.id > position))).await?;
    add(store, position, last, &counts).await?;
    metrics::counter!("wxoa_log_reader_rows_total", "reader" => CURSOR, "from" => "memory")
        .increment((last - position) as u64);
    Ok(total + last - position)
}

/// The query's counts, from rows in memory (with SQLite's LOWER and SUBSTR: ASCII letters,
/// characters).
fn count<'a>(rows: impl Iterator<Item = &'a Logged>) -> Vec<(i64, String, String, i64)> {
    fn prefix(s: &str, chars: usize) -> &str {
        s.char_indices().nth(chars).map_or(s, |(end, _)| &s[..end])
    }
    let mut counts: HashMap<(i64, Cow<str>, &str), i64> = HashMap::new();
    for r in rows {
        let hour = r.received_at.div_euclid(3_600_000);
        let (kind, key) = if r.msg_type != MsgType::Event.as_str() {
            (Cow::Borrowed("message"), "")
        } else {
            let event = prefix(r.event.as_deref().unwrap_or(""), 32);
            let tap = event.eq_ignore_ascii_case("click") || event.eq_ignore_ascii_case("view");
            let key = if tap { prefix(r.event_key.as_deref().unwrap_or(""), 200) } else { "" };
            let kind = match event.bytes().any(|b| b.is_ascii_uppercase()) {
                true => Cow::Owned(event.to_ascii_lowercase()),
                false => Cow::Borrowed(event),
            };
            (kind, key)
        };
        *counts.entry((hour, kind, key)).or_default() += 1;
    }
    counts.into_iter().map(|((hour, kind, key), n)| (hour, kind.into_owned(), key.to_owned(), n)).collect()
}

/// Adds the counts of the log's ids `position + 1 ..= upto` and moves the position to `upto`,
/// in one transaction (nothing when another instance moved it first).
async fn add(
    store: &Store,
    position: i64,
    upto: i64,
    counts: &[(i64, String, String, i64)],
) -> Result<(), sqlx::Error> {
    let mut tx = store.begin().await?;
    if move_cursor(&mut tx, CURSOR, position, upto).await? {
        for chunk in counts.chunks(CHUNK) {
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
    tx.commit().await
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
