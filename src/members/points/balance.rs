//! Balances, read from the lots. Credits lapse at the end of a day (China time), so a member
//! has at most one lot per day of validity however long their history, and a balance is a
//! short range read of their live lots (the card page's p99 with 10,000 entries: see the
//! README).

use crate::members::ledger::{Balance, NEVER};
use crate::store::{Store, Tx};
use crate::{with_pool, with_tx};

/// A member's live balance, from their lots.
pub async fn balance(store: &Store, member_id: i64, now: i64) -> Result<Balance, sqlx::Error> {
    let rows: Vec<(i64, i64)> = with_pool!(store, pool => sqlx::query_as(LIVE_LOTS)
        .bind(member_id).bind(now).fetch_all(pool).await)?;
    Ok(balance_of(rows))
}

/// A member's balance and only the `soonest` lots of their schedule, in one single-row-ish
/// query: what the card page and the balance card show. (A result's rows cross from SQLite's
/// thread one by one; a long schedule read row by row cost the card page most of its time.)
pub async fn summary(store: &Store, member_id: i64, now: i64, soonest: i64) -> Result<Balance, sqlx::Error> {
    // `soonest` is written into the SQL: a bound LIMIT makes SQLite prepare the statement again
    // at every execution (see `ledger::history`).
    let sql = SUMMARY.replace("LIMIT $4", &format!("LIMIT {}", soonest.clamp(0, 100)));
    let rows: Vec<(i64, Option<i64>, Option<i64>)> = with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(member_id).bind(now).bind(NEVER).fetch_all(pool).await)?;
    let points = rows.first().map(|r| r.0).unwrap_or(0);
    let expiring = rows.iter().filter_map(|(_, until, left)| Some(((*left)?, (*until)?))).collect();
    Ok(Balance { points, expiring })
}

const SUMMARY: &str = "SELECT t.total, l.valid_until, l.remaining FROM     (SELECT CAST(COALESCE(SUM(remaining), 0) AS BIGINT) AS total FROM points_lots      WHERE member_id = $1 AND valid_until > $2 AND remaining > 0) t     LEFT JOIN (SELECT valid_until, remaining FROM points_lots      WHERE member_id = $1 AND valid_until > $2 AND remaining > 0 AND valid_until <> $3      ORDER BY valid_until LIMIT $4) l ON 1 = 1 ORDER BY l.valid_until";

/// A member's live points inside a transaction (what a redemption checks).
pub async fn points_in(tx: &mut Tx, member_id: i64, now: i64) -> Result<i64, sqlx::Error> {
    with_tx!(tx, conn => sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(remaining), 0) AS BIGINT) FROM points_lots WHERE member_id = $1 AND valid_until > $2 AND remaining > 0")
        .bind(member_id).bind(now).fetch_one(conn).await)
}

const LIVE_LOTS: &str = "SELECT valid_until, remaining FROM points_lots \
                         WHERE member_id = $1 AND valid_until > $2 AND remaining > 0 ORDER BY valid_until";

fn balance_of(lots: Vec<(i64, i64)>) -> Balance {
    Balance {
        points: lots.iter().map(|(_, p)| p).sum(),
        expiring: lots.iter().filter(|(until, _)| *until != NEVER).map(|(until, p)| (*p, *until)).collect(),
    }
}
