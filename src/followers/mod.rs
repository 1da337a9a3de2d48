//! The follower directory: who follows, since when, from which store, with which WeChat tags,
//! when they last wrote, and which member card they hold.
//!
//! Two sources keep it true. The message log is read behind the webhook ([`catch_up`], about
//! once a second in `serve`): every `subscribe` and `unsubscribe` since the last read position
//! becomes an upsert, and so does a message that moves a follower's last interaction on by five
//! minutes or more, so the webhook's hot path writes nothing more than its log row (a
//! per-message upsert there would cost the group commit a write per message). On SQLite the
//! serving process takes the rows its own log writer committed from memory
//! ([`Committed`](crate::store::committed::Committed)) and reads the log only for the rows it
//! does not hold (after a restart, or another process's). WeChat's own list, pulled by a
//! [`sync`], fills in who followed before wxoa was there, their remark and tags, and who left
//! while it was not listening.
//!
//! Rows are paged by their numeric `id` (keyset), so a page cursor never carries an openid.

pub mod activity;
pub mod api;
pub mod sync;

use crate::store::committed::{Committed, Logged};
use crate::store::{Pool, Store, Tx};
use crate::wechat::message::{MsgType, is_platform_report, sql_not_a_report};
use crate::{with_pool, with_tx};
use std::collections::HashMap;
use std::sync::Arc;

/// Followers per multi-row statement.
const CHUNK: usize = 100;
/// The log reader's name in `log_cursors`.
const CURSOR: &str = "followers";
/// On PostgreSQL a log id can become visible after a higher one (ids are drawn before commit):
/// rows younger than this are left for the next read. SQLite commits in id order.
const PG_SETTLE_MS: i64 = 2000;

/// What one follower did in the part of the log read, folded in log order.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// Follows (`Some(true)`) or left (`Some(false)`) by their last subscribe/unsubscribe.
    subscribed: Option<bool>,
    first_subscribed_at: Option<i64>,
    last_subscribed_at: Option<i64>,
    unsubscribed_at: Option<i64>,
    last_interaction_at: Option<i64>,
    /// The QR scene of their first scanned follow (`qrscene_…` stripped).
    scene: Option<String>,
}

/// Log ids read per pass.
const WINDOW: i64 = 50_000;
/// A follower's last interaction is rewritten only when it moved on by this much: the
/// directory keeps it to within five minutes, and a launch night's chatter is not a write
/// per message.
const INTERACTION_RESOLUTION_MS: i64 = 5 * 60 * 1000;
/// Followers whose last written interaction is remembered (then the memory starts over).
const REMEMBERED: usize = 200_000;

/// What the directory's reader remembers between passes: the last interaction it wrote for
/// each follower, so an unchanged one is not written again.
#[derive(Debug, Default)]
pub struct Reader {
    written: HashMap<String, i64>,
}

/// Reads the message log after the directory's position and applies it, a window of log ids
/// at a time, until it is caught up. Returns the log rows' id span read.
///
/// Two narrow reads a window: the follows and unfollows in log order (few), and each
/// follower's latest message (grouped in the database, so a busy follower is one row). Writes
/// go in small transactions, so the message log's writer never waits long behind them; the
/// position moves with the last, and only if it is still where this reader found it (another
/// instance reading the same window wrote the same values, and one of them moves it).
pub async fn catch_up(store: &Store, reader: &mut Reader) -> Result<i64, sqlx::Error> {
    read_log(store, reader, &Arc::default(), (0, 0)).await
}

/// [`catch_up`], given `rows` this process's writer committed since the last call (ids
/// consecutive, see [`Committed`]): the log is read only up to the first of them, and they are
/// applied from memory — unless an erasure committed after `erasures_then` (read before the
/// previous call's rows were taken, so before any of these was committed).
pub async fn read_log(
    store: &Store,
    reader: &mut Reader,
    rows: &Arc<Vec<Logged>>,
    erasures_then: Erasures,
) -> Result<i64, sqlx::Error> {
    let before = rows.first().map(|r| r.id - 1);
    let mut total = 0;
    loop {
        let n = catch_up_once(store, reader, before).await?;
        total += n;
        if n < WINDOW {
            break;
        }
    }
    let Some((position, last)) = memory_span(store, CURSOR, rows).await? else { return Ok(total) };
    let (events, latest) = off_the_runtime(rows, move |rows| {
        let rows = rows.iter().filter(|r| r.id > position);
        let events: Vec<EventRow> = rows
            .clone()
            .filter(|r| r.msg_type == MsgType::Event.as_str())
            .filter_map(|r| {
                let event = r.event.as_deref()?.to_ascii_lowercase();
                matches!(event.as_str(), "subscribe" | "unsubscribe")
                    .then(|| (r.openid.clone(), Some(event), r.event_key.clone(), r.received_at))
            })
            .collect();
        let mut latest: HashMap<&str, i64> = HashMap::new();
        // Leaving is no interaction, and WeChat's own reports are no one's.
        let not_activity = |r: &Logged| {
            r.msg_type == MsgType::Event.as_str()
                && r.event.as_deref().is_some_and(|e| e.eq_ignore_ascii_case("unsubscribe") || is_platform_report(e))
        };
        for r in rows.filter(|r| !not_activity(r)) {
            let at = latest.entry(&r.openid).or_insert(r.received_at);
            *at = (*at).max(r.received_at);
        }
        let latest: Vec<(String, i64)> = latest.into_iter().map(|(o, at)| (o.to_owned(), at)).collect();
        (events, latest)
    })
    .await?;
    if !write(store, reader, (position, last), &events, latest, erasures_then).await? {
        // An erasure since they were committed: the log (next time) has them without its rows.
        return Ok(total);
    }
    metrics::counter!("wxoa_log_reader_rows_total", "reader" => CURSOR, "from" => "memory")
        .increment((last - position) as u64);
    Ok(total + last - position)
}

/// What reader `cursor` applies of `rows` from memory: those after its position, up to the last
/// — (its position, the last row's id) — or None when it has not read up to the first of them
/// (the log has them, next time) or has read past them already.
pub(crate) async fn memory_span(
    store: &Store,
    cursor: &str,
    rows: &[Logged],
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else { return Ok(None) };
    let position = position(store, cursor).await?;
    Ok((position >= first.id - 1 && position < last.id).then_some((position, last.id)))
}

/// Runs `f` over `rows` on a blocking thread. Summing a second's tens of thousands of rows on
/// the runtime's one worker held every request up meanwhile (`scripts/bench-wrk.sh`: p99
/// 8.4–9.7 ms against 6.6–7.0 with the log read by sqlx's own threads).
pub(crate) async fn off_the_runtime<T: Send + 'static>(
    rows: &Arc<Vec<Logged>>,
    f: impl FnOnce(&[Logged]) -> T + Send + 'static,
) -> Result<T, sqlx::Error> {
    let rows = rows.clone();
    tokio::task::spawn_blocking(move || f(&rows))
        .await
        .map_err(|e| sqlx::Error::Io(std::io::Error::other(e.to_string())))
}

/// The part of the message log a reader named `cursor` reads next: (its position, the last id
/// of the window), or None when it is caught up. On PostgreSQL only rows older than
/// [`PG_SETTLE_MS`] count, so no id still to commit is skipped; `before`, if given, is the last
/// id to read (the rows after it are in memory).
pub(crate) async fn log_window(
    store: &Store,
    cursor: &str,
    before: Option<i64>,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let position = position(store, cursor).await?;
    let newest: Option<i64> = match &store.pool {
        Pool::Sqlite(pool, ..) => sqlx::query_scalar("SELECT MAX(id) FROM inbound_messages").fetch_one(pool).await?,
        Pool::Postgres(pool) => {
            sqlx::query_scalar("SELECT MAX(id) FROM inbound_messages WHERE received_at <= $1")
                .bind(store.now_ms() - PG_SETTLE_MS)
                .fetch_one(pool)
                .await?
        }
    };
    let newest = newest.map(|n| before.map_or(n, |b| n.min(b)));
    Ok(newest.filter(|n| *n > position).map(|newest| (position, newest.min(position + WINDOW))))
}

/// Where reader `cursor` is in the log (0 before it first read).
pub(crate) async fn position(store: &Store, cursor: &str) -> Result<i64, sqlx::Error> {
    Ok(with_pool!(store, pool => sqlx::query_scalar("SELECT position FROM log_cursors WHERE name = $1")
        .bind(cursor).fetch_optional(pool).await)?
    .unwrap_or(0))
}

/// Moves reader `cursor` from `from` to `to` in `tx`; false when another instance moved it
/// first (it read the same window, and what depends on the move must not be written twice).
pub(crate) async fn move_cursor(tx: &mut Tx, cursor: &str, from: i64, to: i64) -> Result<bool, sqlx::Error> {
    let moved = with_tx!(tx, conn => sqlx::query(
        "INSERT INTO log_cursors (name, position) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position WHERE log_cursors.position = $3")
        .bind(cursor).bind(to).bind(from).execute(conn).await.map(|r| r.rows_affected()))?;
    Ok(moved > 0)
}

async fn catch_up_once(store: &Store, reader: &mut Reader, before: Option<i64>) -> Result<i64, sqlx::Error> {
    let erasures_then = erasures(store).await?;
    let Some((position, upto)) = log_window(store, CURSOR, before).await? else { return Ok(0) };
    let events: Vec<EventRow> = with_pool!(store, pool => sqlx::query_as(
        "SELECT openid, LOWER(event), event_key, received_at FROM inbound_messages \
         WHERE id > $1 AND id <= $2 AND msg_type = 'event' AND LOWER(event) IN ('subscribe', 'unsubscribe') ORDER BY id")
        .bind(position).bind(upto).fetch_all(pool).await)?;
    let sql = format!(
        "SELECT openid, MAX(received_at) FROM inbound_messages WHERE id > $1 AND id <= $2 \
         AND NOT (msg_type = 'event' AND LOWER(COALESCE(event, '')) = 'unsubscribe') AND {} GROUP BY openid",
        sql_not_a_report()
    );
    let latest: Vec<(String, i64)> = with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(position).bind(upto).fetch_all(pool).await)?;
    if !write(store, reader, (position, upto), &events, latest, erasures_then).await? {
        return Ok(0);
    }
    metrics::counter!("wxoa_log_reader_rows_total", "reader" => CURSOR, "from" => "log")
        .increment((upto - position) as u64);
    Ok(upto - position)
}

/// Applies what the log's ids `position + 1 ..= upto` say, and moves the position to `upto`.
///
/// Nothing more is written once an erasure has committed since `erasures_then` (what
/// [`erasures`] said before the rows were read): the rows may hold the erased openid, whose
/// messages and directory row are gone, and must not bring them back. Returns false then (the
/// position stays, and the window is read again from the log, without them).
async fn write(
    store: &Store,
    reader: &mut Reader,
    (position, upto): (i64, i64),
    events: &[EventRow],
    latest: Vec<(String, i64)>,
    erasures_then: Erasures,
) -> Result<bool, sqlx::Error> {
    let seen = fold(events, latest, reader);
    let now = store.now_ms();
    let chunks: Vec<&[(String, Seen)]> = seen.chunks(CHUNK * 5).collect();
    let last = chunks.len().saturating_sub(1);
    for chunk in &chunks[..last] {
        let mut tx = store.begin().await?;
        if erasures_in(&mut tx).await? != erasures_then {
            return Ok(false);
        }
        apply(&mut tx, chunk, now).await?;
        tx.commit().await?;
    }
    let mut tx = store.begin().await?;
    if erasures_in(&mut tx).await? != erasures_then {
        return Ok(false);
    }
    if !move_cursor(&mut tx, CURSOR, position, upto).await? {
        // Another instance read this window first (and wrote what is written here).
        return Ok(true);
    }
    if let Some(chunk) = chunks.get(last) {
        apply(&mut tx, chunk, now).await?;
    }
    tx.commit().await?;
    if reader.written.len() > REMEMBERED {
        reader.written.clear();
    }
    for (openid, s) in &seen {
        if let Some(at) = s.last_interaction_at {
            reader.written.insert(openid.clone(), at);
        }
    }
    Ok(true)
}

/// How many erasures there have been, and the last one's id: a change means one committed.
pub type Erasures = (i64, i64);

const ERASURES: &str = "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM erasures";

/// [`Erasures`] now.
pub async fn erasures(store: &Store) -> Result<Erasures, sqlx::Error> {
    with_pool!(store, pool => sqlx::query_as(ERASURES).fetch_one(pool).await)
}

async fn erasures_in(tx: &mut Tx) -> Result<Erasures, sqlx::Error> {
    with_tx!(tx, conn => sqlx::query_as(ERASURES).fetch_one(&mut *conn).await)
}

type EventRow = (String, Option<String>, Option<String>, i64);

/// The window's follows and unfollows in log order, then each follower's latest message where
/// it moved their last interaction on enough to write.
fn fold(events: &[EventRow], latest: Vec<(String, i64)>, reader: &Reader) -> Vec<(String, Seen)> {
    let mut by: HashMap<String, Seen> = HashMap::new();
    for (openid, event, event_key, at) in events {
        let s = by.entry(openid.clone()).or_default();
        if event.as_deref() == Some("subscribe") {
            s.subscribed = Some(true);
            s.first_subscribed_at.get_or_insert(*at);
            s.last_subscribed_at = Some(*at);
            if s.scene.is_none() {
                s.scene = event_key
                    .as_deref()
                    .map(|k| k.strip_prefix("qrscene_").unwrap_or(k))
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned);
            }
        } else {
            s.subscribed = Some(false);
            s.unsubscribed_at = Some(*at);
        }
    }
    for (openid, at) in latest {
        match by.get_mut(&openid) {
            Some(s) => s.last_interaction_at = Some(at),
            None => {
                let fresh = reader.written.get(&openid).is_some_and(|w| at - w < INTERACTION_RESOLUTION_MS);
                if !fresh {
                    by.insert(openid, Seen { last_interaction_at: Some(at), ..Seen::default() });
                }
            }
        }
    }
    let mut out: Vec<(String, Seen)> = by.into_iter().collect();
    // One lock order for every writer of these rows.
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out
}

async fn apply(tx: &mut Tx, seen: &[(String, Seen)], now: i64) -> Result<(), sqlx::Error> {
    // Whether the state is known splits the rows: a message alone says nothing about an
    // existing row's state (a new row follows: WeChat delivers only followers' messages).
    let (known, unknown): (Vec<_>, Vec<_>) = seen.iter().partition(|(_, s)| s.subscribed.is_some());
    for (rows, state_known) in [(known, true), (unknown, false)] {
        for chunk in rows.chunks(CHUNK) {
            with_tx!(tx, conn => {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO followers (openid, subscribed, store_id, scene, updated_at, first_subscribed_at, \
                     last_subscribed_at, unsubscribed_at, last_interaction_at) ",
                );
                q.push_values(chunk.iter(), |mut b, (openid, s)| {
                    let store_id = s.scene.as_deref().and_then(crate::stores::scene_store_id);
                    // A scene naming no store leaves no dangling reference (the foreign key).
                    b.push_bind(openid.clone())
                        .push_bind(s.subscribed.unwrap_or(true))
                        .push("(SELECT id FROM stores WHERE id = ")
                        .push_bind_unseparated(store_id)
                        .push_unseparated(")")
                        .push_bind(s.scene.clone())
                        .push_bind(now)
                        .push_bind(s.first_subscribed_at)
                        .push_bind(s.last_subscribed_at)
                        .push_bind(s.unsubscribed_at)
                        .push_bind(s.last_interaction_at);
                });
                q.push(if state_known {
                    " ON CONFLICT (openid) DO UPDATE SET subscribed = excluded.subscribed,"
                } else {
                    " ON CONFLICT (openid) DO UPDATE SET"
                });
                q.push(
                    " store_id = COALESCE(followers.store_id, excluded.store_id), \
                     scene = COALESCE(followers.scene, excluded.scene), updated_at = excluded.updated_at, \
                     first_subscribed_at = COALESCE(followers.first_subscribed_at, excluded.first_subscribed_at), \
                     last_subscribed_at = COALESCE(excluded.last_subscribed_at, followers.last_subscribed_at), \
                     unsubscribed_at = COALESCE(excluded.unsubscribed_at, followers.unsubscribed_at), \
                     last_interaction_at = COALESCE(excluded.last_interaction_at, followers.last_interaction_at)",
                );
                q.build().execute(&mut *conn).await.map(|_| ())
            })?;
        }
    }
    Ok(())
}

/// Runs [`read_log`] and [`activity::read_log`] every `every` until `stop` turns true (then
/// once more).
///
/// `committed` is what this process's log writer commits (SQLite): the rows it holds are
/// applied from memory, and only what is not there is read from the log.
pub async fn follow_the_log(
    store: Store,
    committed: Option<Arc<Committed>>,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut reader = Reader::default();
    // Read before the last take: every row taken since was committed after it.
    let mut erasures_then = erasures(&store).await.ok();
    loop {
        let erasures_now = erasures(&store).await.ok();
        let taken = committed.as_ref().map(|c| c.take()).unwrap_or_default();
        // Not known whether an erasure came since: the rows are read from the log instead.
        let (rows, since) = match erasures_then {
            Some(since) => (Arc::new(taken), since),
            None => (Arc::default(), (0, 0)),
        };
        if let Err(e) = read_log(&store, &mut reader, &rows, since).await {
            tracing::warn!(error = %e, "follower directory: reading the message log failed");
        }
        if let Err(e) = activity::read_log(&store, &rows).await {
            tracing::warn!(error = %e, "activity counts: reading the message log failed");
        }
        erasures_then = erasures_now;
        // Freeing them is work too: not on the runtime's worker either.
        if !rows.is_empty() {
            tokio::task::spawn_blocking(move || drop(rows));
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One follower as the directory knows them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Follower {
    /// The directory's id (what pages and cursors use).
    pub id: i64,
    pub openid: String,
    pub subscribed: bool,
    /// The store whose QR code brought them.
    pub store_id: Option<i64>,
    /// The QR scene of their first scanned follow.
    pub scene: Option<String>,
    pub first_subscribed_at: Option<i64>,
    pub last_subscribed_at: Option<i64>,
    pub unsubscribed_at: Option<i64>,
    /// WeChat's remark on them, as the last sync saw it.
    pub remark: Option<String>,
    pub last_interaction_at: Option<i64>,
    /// WeChat tag ids, as the last sync (or segment sync) left them.
    pub tag_ids: Vec<i64>,
    /// Their bound member card, if any.
    pub card_no: Option<String>,
    pub tier: Option<String>,
}

/// What a directory listing is filtered by (every field optional, ANDed).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub tag: Option<i64>,
    pub store: Option<i64>,
    pub tier: Option<String>,
    pub subscribed: Option<bool>,
}

type FollowerRow = (
    i64,
    String,
    bool,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

const COLUMNS: &str = "f.id, f.openid, f.subscribed, f.store_id, f.scene, f.first_subscribed_at, \
     f.last_subscribed_at, f.unsubscribed_at, f.remark, f.last_interaction_at, m.card_no, m.tier";

/// Up to `limit` followers after id `after`, in id order, and whether more follow.
pub async fn list(
    store: &Store,
    filter: &Filter,
    after: i64,
    limit: i64,
) -> Result<(Vec<Follower>, bool), sqlx::Error> {
    let limit = limit.clamp(1, 500);
    let mut sql =
        format!("SELECT {COLUMNS} FROM followers f LEFT JOIN members m ON m.openid = f.openid WHERE f.id > $1");
    let mut n = 1;
    let mut next = || {
        n += 1;
        n
    };
    if filter.tag.is_some() {
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM follower_tags t WHERE t.follower_id = f.id AND t.tag_id = ${})",
            next()
        ));
    }
    if filter.store.is_some() {
        sql.push_str(&format!(" AND f.store_id = ${}", next()));
    }
    if filter.tier.is_some() {
        sql.push_str(&format!(" AND m.tier = ${}", next()));
    }
    if filter.subscribed.is_some() {
        sql.push_str(&format!(" AND f.subscribed = ${}", next()));
    }
    sql.push_str(&format!(" ORDER BY f.id LIMIT {}", limit + 1));
    let mut rows: Vec<FollowerRow> = with_pool!(store, pool => {
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(after);
        if let Some(t) = filter.tag { q = q.bind(t); }
        if let Some(s) = filter.store { q = q.bind(s); }
        if let Some(t) = &filter.tier { q = q.bind(t.clone()); }
        if let Some(s) = filter.subscribed { q = q.bind(s); }
        q.fetch_all(pool).await
    })?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let followers = with_tags(store, rows).await?;
    Ok((followers, more))
}

/// One follower by directory id.
pub async fn get(store: &Store, id: i64) -> Result<Option<Follower>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM followers f LEFT JOIN members m ON m.openid = f.openid WHERE f.id = $1");
    let rows: Vec<FollowerRow> =
        with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_all(pool).await)?;
    Ok(with_tags(store, rows).await?.pop())
}

async fn with_tags(store: &Store, rows: Vec<FollowerRow>) -> Result<Vec<Follower>, sqlx::Error> {
    let mut tags: HashMap<i64, Vec<i64>> = HashMap::new();
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        // The page's ids are a contiguous range of the keyset: one range read for their tags.
        let found: Vec<(i64, i64)> = with_pool!(store, pool => sqlx::query_as(
            "SELECT follower_id, tag_id FROM follower_tags WHERE follower_id BETWEEN $1 AND $2 ORDER BY follower_id, tag_id")
            .bind(first.0).bind(last.0).fetch_all(pool).await)?;
        for (f, t) in found {
            tags.entry(f).or_default().push(t);
        }
    }
    Ok(rows
        .into_iter()
        .map(|r| Follower {
            id: r.0,
            tag_ids: tags.remove(&r.0).unwrap_or_default(),
            openid: r.1,
            subscribed: r.2,
            store_id: r.3,
            scene: r.4,
            first_subscribed_at: r.5,
            last_subscribed_at: r.6,
            unsubscribed_at: r.7,
            remark: r.8,
            last_interaction_at: r.9,
            card_no: r.10,
            tier: r.11,
        })
        .collect())
}

/// Followers by subscribe state: (following, left).
pub async fn counts(store: &Store) -> Result<(i64, i64), sqlx::Error> {
    let rows: Vec<(bool, i64)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT subscribed, COUNT(*) FROM followers GROUP BY subscribed").fetch_all(pool).await)?;
    let get = |s: bool| rows.iter().find(|r| r.0 == s).map(|r| r.1).unwrap_or(0);
    Ok((get(true), get(false)))
}
