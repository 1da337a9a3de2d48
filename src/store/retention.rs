//! Retention of the message log: the oldest rows lose their XML bodies (`raw_xml`,
//! `reply_xml`; the row's metadata stays for the figures), later the rows themselves.
//!
//! The log has no index but its keys — every webhook call writes it, and an index on
//! `received_at` would cost each one — so the cut-off is found by id instead: ids grow with
//! arrival, so the old rows are the first ones by id. A batch reads the next `batch` rows by
//! primary key and takes the leading run of those older than the cut-off; it stops at the first
//! younger row, so a row out of order is never skipped, only waited for. Where stripping has got
//! to is kept in `retention_marks`, so no batch re-reads what an earlier one stripped.
//!
//! Each batch is its own short transaction: the webhook's group commit waits at most one small
//! batch for the write lock, never a whole purge.

use super::Store;
use crate::{with_pool, with_tx};

/// The mark of the body-stripping step.
const RAW_XML: &str = "raw_xml";

/// Drops the XML bodies of up to `batch` of the oldest messages received before `before_ms`
/// that still have them; how many it stripped (fewer than `batch`: there are no more).
pub async fn strip_bodies(store: &Store, before_ms: i64, batch: i64) -> Result<u64, sqlx::Error> {
    let mut tx = store.begin().await?;
    let n = with_tx!(&mut tx, conn => {
        let mark: i64 = sqlx::query_scalar("SELECT upto_id FROM retention_marks WHERE name = $1")
            .bind(RAW_XML).fetch_optional(&mut *conn).await?.unwrap_or(0);
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT id, received_at FROM inbound_messages WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(mark).bind(batch).fetch_all(&mut *conn).await?;
        let old: Vec<i64> = rows.iter().take_while(|r| r.1 < before_ms).map(|r| r.0).collect();
        if let Some(&upto) = old.last() {
            sqlx::query("UPDATE inbound_messages SET raw_xml = '', reply_xml = NULL WHERE id > $1 AND id <= $2")
                .bind(mark).bind(upto).execute(&mut *conn).await?;
            sqlx::query("INSERT INTO retention_marks (name, upto_id) VALUES ($1, $2) \
                         ON CONFLICT (name) DO UPDATE SET upto_id = excluded.upto_id")
                .bind(RAW_XML).bind(upto).execute(&mut *conn).await?;
        }
        old.len() as u64
    });
    tx.commit().await?;
    Ok(n)
}

/// Deletes up to `batch` of the oldest messages received before `before_ms`; how many.
pub async fn delete_messages(store: &Store, before_ms: i64, batch: i64) -> Result<u64, sqlx::Error> {
    let mut tx = store.begin().await?;
    let n = with_tx!(&mut tx, conn => {
        let rows: Vec<(i64, i64)> =
            sqlx::query_as("SELECT id, received_at FROM inbound_messages ORDER BY id LIMIT $1")
                .bind(batch).fetch_all(&mut *conn).await?;
        let old = rows.iter().take_while(|r| r.1 < before_ms).count();
        if old > 0 {
            sqlx::query("DELETE FROM inbound_messages WHERE id <= $1").bind(rows[old - 1].0).execute(&mut *conn).await?;
        }
        old as u64
    });
    tx.commit().await?;
    Ok(n)
}

/// What a purge would do now: messages whose bodies would be stripped, messages that would be
/// deleted (each counted once: a message to delete is not counted as stripped).
pub async fn preview(store: &Store, strip_before_ms: i64, delete_before_ms: i64) -> Result<(u64, u64), sqlx::Error> {
    let (strip, delete): (i64, i64) = with_pool!(store, pool => sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN received_at >= $2 AND raw_xml <> '' THEN 1 ELSE 0 END), 0), \
                COALESCE(SUM(CASE WHEN received_at < $2 THEN 1 ELSE 0 END), 0) \
         FROM inbound_messages WHERE received_at < $1")
        .bind(strip_before_ms.max(delete_before_ms)).bind(delete_before_ms).fetch_one(pool).await)?;
    Ok((strip as u64, delete as u64))
}
