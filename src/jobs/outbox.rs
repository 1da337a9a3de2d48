//! The outbox: one `jobs` table for everything sent to WeChat later — deferred replies,
//! template messages, broadcasts, reminders.
//!
//! A job is enqueued in the same transaction as the change that causes it ([`enqueue_tx`]), so
//! either both happen or neither. Its `dedupe_key` is unique: enqueueing the same thing twice is
//! a no-op. Workers claim due jobs with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so two
//! instances never claim the same job; SQLite has one writer at a time anyway). A job whose
//! worker died is claimable again when its lease runs out: nothing is lost, and what may be sent
//! twice after a `kill -9` is bounded by the jobs that worker had in flight.
//!
//! A job may name a `queue_key` (a member's CRM events do): jobs of one key run one at a time
//! in id order — a later one is not claimed while an earlier one is queued or running (retries
//! included), so a receiver sees them in the order they happened. A dead job no longer holds
//! its queue back: it waits in `wxoa jobs list` for `wxoa jobs retry`.

use super::Kind;
use crate::store::{Store, Tx};
use crate::stored::Named;
use crate::{with_pool, with_tx};
use serde::Serialize;

/// Where a job stands, stored as [`State::as_str`] (the SQL here names them literally too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for its time (or its queue).
    Queued,
    /// Leased by a worker.
    Running,
    /// Sent, or nothing to do.
    Done,
    /// Failed for good; `wxoa jobs retry` queues it again.
    Dead,
}

crate::stored_as!(State { Queued => "queued", Running => "running", Done => "done", Dead => "dead" });

#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: Kind,
    pub payload: serde_json::Value,
    pub dedupe_key: String,
    /// When it may run (unix ms); `None`: as it is enqueued.
    pub run_at: Option<i64>,
    /// Jobs with the same key run one at a time, in the order they were enqueued.
    pub queue_key: Option<String>,
}

impl NewJob {
    pub fn new(kind: Kind, payload: impl Serialize, dedupe_key: impl Into<String>) -> NewJob {
        NewJob {
            kind,
            payload: serde_json::to_value(payload).expect("serializable payload"),
            dedupe_key: dedupe_key.into(),
            run_at: None,
            queue_key: None,
        }
    }

    /// Runs after the earlier jobs of `key`, one at a time.
    pub fn in_queue(mut self, key: impl Into<String>) -> NewJob {
        self.queue_key = Some(key.into());
        self
    }

    pub fn at(mut self, run_at: i64) -> NewJob {
        self.run_at = Some(run_at);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    pub id: i64,
    /// Its kind; one a newer build enqueued is kept as stored.
    pub kind: Named<Kind>,
    pub payload: String,
    pub dedupe_key: String,
    pub state: Named<State>,
    pub attempts: i64,
    pub run_at: i64,
    pub last_error: Option<String>,
    pub result: Option<String>,
}

const INSERT: &str = "INSERT INTO jobs (kind, payload, dedupe_key, state, attempts, run_at, lease_until, created_at, updated_at, queue_key) \
                      VALUES ($1, $2, $3, 'queued', 0, $4, 0, $5, $5, $6) ON CONFLICT (dedupe_key) DO NOTHING";

/// Enqueues `job` inside `tx`; `false` if a job with its dedupe key exists.
pub async fn enqueue_tx(tx: &mut Tx, job: &NewJob) -> Result<bool, sqlx::Error> {
    let payload = job.payload.to_string();
    let now = tx.now_ms();
    let n = with_tx!(tx, conn => sqlx::query(INSERT)
        .bind(job.kind.as_str()).bind(&payload).bind(&job.dedupe_key).bind(job.run_at.unwrap_or(now)).bind(now).bind(&job.queue_key)
        .execute(conn).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Rows of one multi-row insert: 7 values each, well under both databases' bound-parameter limits.
const MANY_CHUNK: usize = 500;

/// Enqueues `jobs` inside `tx` in a few multi-row statements (in their order, so a queue's
/// jobs keep it); returns how many were new.
pub async fn enqueue_many_tx(tx: &mut Tx, jobs: &[NewJob]) -> Result<u64, sqlx::Error> {
    let now = tx.now_ms();
    let mut added = 0;
    for chunk in jobs.chunks(MANY_CHUNK) {
        added += with_tx!(tx, conn => {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO jobs (kind, payload, dedupe_key, state, attempts, run_at, lease_until, created_at, updated_at, queue_key) ",
            );
            q.push_values(chunk, |mut row, job| {
                row.push_bind(job.kind.as_str())
                    .push_bind(job.payload.to_string())
                    .push_bind(job.dedupe_key.clone())
                    .push("'queued', 0")
                    .push_bind(job.run_at.unwrap_or(now))
                    .push("0")
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(job.queue_key.clone());
            });
            q.push(" ON CONFLICT (dedupe_key) DO NOTHING");
            q.build().execute(conn).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(added)
}

/// Enqueues `job` on its own; `false` if a job with its dedupe key exists.
pub async fn enqueue(store: &Store, job: &NewJob) -> Result<bool, sqlx::Error> {
    let payload = job.payload.to_string();
    let now = store.now_ms();
    let n = with_pool!(store, pool => sqlx::query(INSERT)
        .bind(job.kind.as_str()).bind(&payload).bind(&job.dedupe_key).bind(job.run_at.unwrap_or(now)).bind(now).bind(&job.queue_key)
        .execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

const COLUMNS: &str = "id, kind, payload, dedupe_key, state, attempts, run_at, last_error, result";

type JobRow = (i64, String, String, String, String, i64, i64, Option<String>, Option<String>);

fn job((id, kind, payload, dedupe_key, state, attempts, run_at, last_error, result): JobRow) -> Job {
    let (kind, state) = (Named::read(kind), Named::read(state));
    Job { id, kind, payload, dedupe_key, state, attempts, run_at, last_error, result }
}

/// Jobs, newest first, optionally in one state.
pub async fn list(store: &Store, state: Option<State>, limit: i64) -> Result<Vec<Job>, sqlx::Error> {
    with_pool!(store, pool => {
        let mut q = sqlx::QueryBuilder::new(format!("SELECT {COLUMNS} FROM jobs"));
        if let Some(state) = state {
            q.push(" WHERE state = ").push_bind(state.as_str());
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        q.build_query_as::<JobRow>().fetch_all(pool).await
    })
    .map(|rows| rows.into_iter().map(job).collect())
}

pub async fn get(store: &Store, id: i64) -> Result<Option<Job>, sqlx::Error> {
    let sql =
        "SELECT id, kind, payload, dedupe_key, state, attempts, run_at, last_error, result FROM jobs WHERE id = $1";
    with_pool!(store, pool => sqlx::query_as::<_, JobRow>(sql).bind(id).fetch_optional(pool).await).map(|r| r.map(job))
}

/// Counts per state.
pub async fn counts(store: &Store) -> Result<Vec<(Named<State>, i64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> = with_pool!(store, pool =>
        sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state").fetch_all(pool).await)?;
    Ok(rows.into_iter().map(|(state, n)| (Named::read(state), n)).collect())
}

/// Makes the queued job `dedupe_key` a `kind` job with `payload`, due now; `false` if it is not
/// queued any more (a worker took it).
pub async fn become_due(store: &Store, dedupe_key: &str, kind: Kind, payload: &str) -> Result<bool, sqlx::Error> {
    let now = store.now_ms();
    let n = with_pool!(store, pool => sqlx::query(
        "UPDATE jobs SET kind = $2, payload = $3, run_at = $4, updated_at = $4 WHERE dedupe_key = $1 AND state = 'queued'")
        .bind(dedupe_key).bind(kind.as_str()).bind(payload).bind(now).execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Marks the queued job `dedupe_key` done with `result` (there is nothing for it to do); `false`
/// if it is not queued any more.
pub async fn finish_queued(store: &Store, dedupe_key: &str, result: &str) -> Result<bool, sqlx::Error> {
    let now = store.now_ms();
    let n = with_pool!(store, pool => sqlx::query(
        "UPDATE jobs SET state = 'done', result = $2, updated_at = $3 WHERE dedupe_key = $1 AND state = 'queued'")
        .bind(dedupe_key).bind(result).bind(now).execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Puts a dead (or done) job back in the queue, due now, with fresh attempts. `false` if there is
/// no such job or it is queued or running.
pub async fn retry(store: &Store, id: i64) -> Result<bool, sqlx::Error> {
    let now = store.now_ms();
    let n = with_pool!(store, pool => sqlx::query(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $2, lease_until = 0, updated_at = $2 \
         WHERE id = $1 AND state IN ('dead', 'done')")
        .bind(id).bind(now).execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Deletes up to `batch` finished jobs (done or dead) last touched before `before_ms`; how many.
/// Their payloads name followers, so they are not kept for ever (`retention.jobs_days`); a
/// job's `dedupe_key` goes with it, which is why that age is months, not days.
pub async fn purge_finished(store: &Store, before_ms: i64, batch: i64) -> Result<u64, sqlx::Error> {
    with_pool!(store, pool => sqlx::query(
        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
         WHERE state IN ('done', 'dead') AND run_at < $1 AND updated_at < $1 LIMIT $2)")
        .bind(before_ms).bind(batch).execute(pool).await.map(|r| r.rows_affected()))
}

/// How many finished jobs [`purge_finished`] would delete.
pub async fn count_finished(store: &Store, before_ms: i64) -> Result<u64, sqlx::Error> {
    let n: i64 = with_pool!(store, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE state IN ('done', 'dead') AND run_at < $1 AND updated_at < $1")
        .bind(before_ms).fetch_one(pool).await)?;
    Ok(n as u64)
}
