//! Bounded retention: what followers sent, and what was queued for them, is kept no longer than
//! `[retention]` says (China's PIPL asks for no longer than needed; a launch night's log must
//! not fill the disk either).
//!
//! One purge: the XML bodies of messages older than `raw_xml_days` are dropped, messages older
//! than `messages_days` are deleted, finished outbox jobs older than `jobs_days` are deleted —
//! each in batches of [`BATCH`] rows, one short transaction each, with a pause between them so
//! the webhook's writer is never kept from the database for long (`store::retention` says how
//! a batch finds the old rows without an index). `serve` runs it hourly; `wxoa messages purge`
//! runs it (or, with `--dry-run`, counts what it would do).

use crate::config::RetentionConfig;
use crate::store::Store;
use std::time::Duration;

/// Rows per batch.
pub const BATCH: i64 = 500;
/// The pause between two batches: the webhook's writer takes the lock in between.
const PAUSE: Duration = Duration::from_millis(5);
const DAY_MS: i64 = 86_400_000;

/// What a purge did (or, as a preview, would do).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Messages whose XML bodies were dropped.
    pub stripped: u64,
    /// Messages deleted.
    pub deleted: u64,
    /// Finished outbox jobs deleted.
    pub jobs: u64,
}

/// The cut-off of an age in days (`None`: kept for ever).
fn before(now_ms: i64, days: u32) -> Option<i64> {
    (days > 0).then(|| now_ms - days as i64 * DAY_MS)
}

/// Applies `config` as of `now_ms`.
pub async fn purge(store: &Store, config: &RetentionConfig, now_ms: i64) -> Result<Report, sqlx::Error> {
    use crate::store::retention::{delete_messages, strip_bodies};
    let mut report = Report::default();
    // Deleting first: what is deleted need not be stripped.
    if let Some(t) = before(now_ms, config.messages_days) {
        report.deleted = drain(|| delete_messages(store, t, BATCH)).await?;
    }
    if let Some(t) = before(now_ms, config.raw_xml_days) {
        report.stripped = drain(|| strip_bodies(store, t, BATCH)).await?;
    }
    if let Some(t) = before(now_ms, config.jobs_days) {
        report.jobs = drain(|| crate::jobs::outbox::purge_finished(store, t, BATCH)).await?;
    }
    Ok(report)
}

/// What [`purge`] would do as of `now_ms`, changing nothing.
pub async fn preview(store: &Store, config: &RetentionConfig, now_ms: i64) -> Result<Report, sqlx::Error> {
    let strip = before(now_ms, config.raw_xml_days).unwrap_or(i64::MIN);
    let delete = before(now_ms, config.messages_days).unwrap_or(i64::MIN);
    let (stripped, deleted) = crate::store::retention::preview(store, strip, delete).await?;
    let jobs = match before(now_ms, config.jobs_days) {
        Some(t) => crate::jobs::outbox::count_finished(store, t).await?,
        None => 0,
    };
    Ok(Report { stripped, deleted, jobs })
}

/// Runs `batch` until it does fewer than [`BATCH`] rows; the total.
async fn drain<F: Future<Output = Result<u64, sqlx::Error>>>(mut batch: impl FnMut() -> F) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let n = batch().await?;
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE).await;
    }
}
