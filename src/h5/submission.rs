//! One-time submission keys: a form that changes something takes effect once, however often it
//! is posted (a double tap, a reload, a flaky network resending it).
//!
//! Each such form carries a fresh random key (`once`). Posting it claims the key in the **same
//! transaction** as the change: the key's row is inserted first, the change made, the result's
//! URL written, all committed together. A second post of the key finds the row and is sent to
//! the first post's result; one racing the first waits on the key's unique index (PostgreSQL)
//! or the write lock (SQLite) and then finds it. A change that is refused rolls back, key
//! included, so a repeat is judged afresh and refused the same way. Results are pages of their
//! own (POST, redirect, GET), so reloading one never posts again.

use crate::store::Tx;
use crate::with_tx;

/// How long a key's result is kept (a repeat after that finds nothing and is refused as stale).
pub const KEEP_MS: i64 = 24 * 3600 * 1000;

/// A fresh key for a form.
pub fn new_key() -> String {
    super::session::random_token(16)
}

/// Whether a posted key has the shape [`new_key`] gives.
pub fn well_formed(key: &str) -> bool {
    key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new: make the change, then [`complete`] before committing.
    Fresh,
    /// Posted before and done: the first post's result URL.
    Done(String),
    /// Posted before by another session: not this browser's form.
    Foreign,
}

/// Claims `key` for `session_id` inside `tx`.
pub async fn claim(tx: &mut Tx, key: &str, session_id: &str) -> Result<Claim, sqlx::Error> {
    let now = tx.now_ms();
    let inserted = with_tx!(tx, conn => sqlx::query(
        "INSERT INTO h5_submissions (key, session_id, result, created_at) VALUES ($1, $2, '', $3) ON CONFLICT (key) DO NOTHING")
        .bind(key).bind(session_id).bind(now).execute(conn).await.map(|r| r.rows_affected() == 1))?;
    if inserted {
        return Ok(Claim::Fresh);
    }
    let row: Option<(String, String)> = with_tx!(tx, conn => sqlx::query_as(
        "SELECT session_id, result FROM h5_submissions WHERE key = $1").bind(key).fetch_optional(conn).await)?;
    Ok(match row {
        Some((owner, result)) if owner == session_id && !result.is_empty() => Claim::Done(result),
        _ => Claim::Foreign,
    })
}

/// Records where the claimed `key`'s result is, in the same transaction as the change.
pub async fn complete(tx: &mut Tx, key: &str, result: &str) -> Result<(), sqlx::Error> {
    with_tx!(tx, conn => sqlx::query("UPDATE h5_submissions SET result = $2 WHERE key = $1")
        .bind(key).bind(result).execute(conn).await.map(|_| ()))
}

/// Deletes keys older than [`KEEP_MS`], at most `batch`; returns how many.
pub async fn purge(store: &crate::store::Store, now: i64, batch: i64) -> Result<u64, sqlx::Error> {
    crate::with_pool!(store, pool => sqlx::query(
        "DELETE FROM h5_submissions WHERE key IN (SELECT key FROM h5_submissions WHERE created_at <= $1 LIMIT $2)")
        .bind(now - KEEP_MS).bind(batch).execute(pool).await.map(|r| r.rows_affected()))
}
