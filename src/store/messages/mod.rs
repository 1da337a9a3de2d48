//! The inbound message log, written with group commit.
//!
//! Every accepted message is inserted under its unique dedup key, and the row is committed before
//! the response leaves. A pure reply (a template, an inline reply) goes in with its message in one
//! insert; a handler's message, which may have side effects, is *claimed* first (no outcome yet)
//! and its outcome recorded when the handler is done, so a retry here or at another instance sees
//! the claim and waits instead of running the handler twice.
//!
//! One commit per request would cap the webhook at the disk's commit rate, so requests hand their
//! rows to one writer that commits everything queued in one transaction and wakes them all: under
//! load a batch is whatever arrived during the last commit, at rest one row. On SQLite the writer
//! is a dedicated thread with its own connection and prepared statements: sqlx's driver hands
//! every statement and row to a worker thread and back, and on one core those hand-offs cost more
//! than the inserts (`scripts/bench.sh`: over twice the throughput without them).
//! On PostgreSQL it is an async task over the sqlx pool, with multi-row statements.

mod postgres;
mod sqlite;

use super::committed::{Committed, Logged};
use super::{Pool, Store};
use crate::clock::Clock;
use crate::with_pool;
use postgres::pg_batch;
use sqlite::{checkpoints, open_sqlite, restart_wal, sqlite_batch};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::oneshot;

/// Rows per transaction.
const MAX_BATCH: usize = 1024;

/// An inbound message as logged.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub dedup_key: String,
    pub openid: String,
    pub msg_type: String,
    pub event: Option<String>,
    pub event_key: Option<String>,
    pub msg_id: Option<String>,
    pub create_time: i64,
    pub encrypted: bool,
    pub raw_xml: String,
    pub received_at: i64,
    pub claimed_by: String,
    /// Known already for pure replies; `None` for a claim.
    pub outcome: Option<Answered>,
}

/// What a message was answered with, as the log's `outcome` column says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A reply document.
    Replied,
    /// `success`: nothing to say.
    Nothing,
    /// `success` at the reply deadline; the handler's reply goes out later (customer service).
    Deferred,
    /// `success`, because the reply could not be made (logged).
    Failed,
    /// Never stored: the answer to a retry whose first call is still running elsewhere.
    Pending,
}

crate::stored_as!(Outcome {
    Replied => "replied",
    Nothing => "nothing",
    Deferred => "deferred",
    Failed => "failed",
    Pending => "pending",
});

/// What we answered, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub outcome: Outcome,
    pub reply_xml: Option<String>,
    /// The routing rule that answered.
    pub rule: Option<String>,
    pub handled_us: i64,
}

/// An outbox job to commit with an outcome (the late reply of a deferred handler), as the
/// `jobs` table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub kind: &'static str,
    pub payload: String,
    pub dedupe_key: String,
    pub run_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The row is ours; its id.
    Claimed(i64),
    /// Another call inserted this key first.
    Duplicate,
}

/// A logged message, with its outcome if there is one yet.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: i64,
    pub claimed_by: String,
    pub claimed_at: i64,
    pub outcome: Option<Answered>,
}

enum Op {
    Insert(Box<Inbound>, oneshot::Sender<Result<Claim, LogError>>),
    Complete(i64, Answered, Option<JobRow>, oneshot::Sender<Result<(), LogError>>),
}

/// Handle to the group-commit writer. Cloning is cheap; the writer stops when the last handle
/// is dropped, after committing what was queued.
#[derive(Clone)]
pub struct MessageLog {
    tx: tokio::sync::mpsc::UnboundedSender<Op>,
    store: Store,
    /// When the batch in flight was handed to the database (unix ms), 0 when idle.
    busy_since: Arc<AtomicI64>,
    /// The rows committed, for the log's readers (SQLite only: on PostgreSQL other instances
    /// write between our rows).
    committed: Option<Arc<Committed>>,
}

/// Why the message log did not take a row: the writer stopped, or its batch failed (the reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogError(pub String);

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "message log: {}", self.0)
    }
}

impl std::error::Error for LogError {}

fn stopped<T>(_: T) -> LogError {
    LogError("writer stopped".into())
}

impl MessageLog {
    /// Starts the writer; the returned handle finishes once every `MessageLog` is dropped and
    /// the queue is flushed.
    pub fn start(store: Store) -> Result<(MessageLog, tokio::task::JoinHandle<()>), LogError> {
        let committed = matches!(store.pool, Pool::Sqlite(..)).then(|| Arc::new(Committed::default()));
        let backend = match &store.pool {
            Pool::Sqlite(pool, file) => {
                let file = file.clone();
                let clock = store.clock.clone();
                let path = pool.connect_options().get_filename().to_path_buf();
                let conn = open_sqlite(&path).map_err(|e| LogError(format!("{}: {e}", path.display())))?;
                let checkpointer = open_sqlite(&path).map_err(|e| LogError(format!("{}: {e}", path.display())))?;
                let (tx, rx) = std::sync::mpsc::channel::<SqliteJob>();
                let (alive, stopped) = std::sync::mpsc::channel::<()>();
                let reset_wanted = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let wanted = reset_wanted.clone();
                std::thread::Builder::new()
                    .name("wxoa-ckpt".into())
                    .spawn(move || checkpoints(checkpointer, stopped, &wanted))
                    .map_err(|e| LogError(e.to_string()))?;
                std::thread::Builder::new()
                    .name("wxoa-log".into())
                    .spawn(move || {
                        let _alive = alive;
                        while let Ok((batch, done)) = rx.recv() {
                            let result = sqlite_batch(&conn, &batch, clock.now_ms()).map_err(|e| {
                                let _ = conn.execute_batch("ROLLBACK");
                                LogError(e.to_string())
                            });
                            // Committed to the file we opened? If it was deleted or replaced,
                            // the commit went nowhere: nothing of this batch is acknowledged.
                            let result = result
                                .and_then(|claims| file.check().map(|()| claims).map_err(|e| LogError(e.to_string())));
                            let _ = done.send((batch, result));
                            // Between batches, after the last one's callers are answered.
                            if reset_wanted.swap(false, Ordering::Relaxed) {
                                restart_wal(&conn);
                            }
                        }
                    })
                    .map_err(|e| LogError(e.to_string()))?;
                Backend::Sqlite(tx)
            }
            Pool::Postgres(pool) => Backend::Postgres(pool.clone()),
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let busy_since = Arc::new(AtomicI64::new(0));
        let joined = tokio::spawn(batcher(backend, rx, busy_since.clone(), committed.clone(), store.clock.clone()));
        Ok((MessageLog { tx, store, busy_since, committed }, joined))
    }

    /// How long the batch being written has been at it (0 when the writer is idle): a writer
    /// stuck on a locked database shows here long before requests time out.
    pub fn stuck_for_ms(&self) -> i64 {
        match self.busy_since.load(Ordering::Relaxed) {
            0 => 0,
            since => self.store.now_ms() - since,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The rows this writer commits, for the log's readers; `None` on PostgreSQL.
    pub fn committed(&self) -> Option<Arc<Committed>> {
        self.committed.clone()
    }

    fn send(&self, op: Op) -> Result<(), LogError> {
        self.tx.send(op).map_err(stopped)
    }

    /// Inserts the message under its dedup key (with its outcome, if known), committed before
    /// this returns.
    pub async fn insert(&self, inbound: Inbound) -> Result<Claim, LogError> {
        let (done, wait) = oneshot::channel();
        self.send(Op::Insert(Box::new(inbound), done))?;
        wait.await.map_err(stopped)?
    }

    /// Records the outcome of a claimed message — and `job`, if given, in the same
    /// transaction — committed before this returns.
    pub async fn complete(&self, id: i64, outcome: Answered, job: Option<JobRow>) -> Result<(), LogError> {
        let (done, wait) = oneshot::channel();
        self.send(Op::Complete(id, outcome, job, done))?;
        wait.await.map_err(stopped)?
    }

    /// The logged message and outcome for a dedup key.
    pub async fn find(&self, dedup_key: &str) -> Result<Option<Stored>, LogError> {
        find(&self.store, dedup_key).await.map_err(|e| LogError(e.to_string()))
    }

    /// Takes over a claim whose owner went quiet (it died mid-handling): succeeds only if the
    /// claim is still the one we saw and no outcome was recorded meanwhile.
    pub async fn take_over(&self, stored: &Stored, instance: &str) -> Result<bool, LogError> {
        let sql = "UPDATE inbound_messages SET claimed_by = $1, claimed_at = $2 \
                   WHERE id = $3 AND claimed_at = $4 AND outcome IS NULL";
        let done = with_pool!(&self.store, pool => sqlx::query(sql)
            .bind(instance)
            .bind(self.store.now_ms())
            .bind(stored.id)
            .bind(stored.claimed_at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| LogError(e.to_string()))?;
        Ok(done == 1)
    }
}

pub async fn find(store: &Store, dedup_key: &str) -> Result<Option<Stored>, sqlx::Error> {
    let sql = "SELECT id, claimed_by, claimed_at, outcome, reply_xml, rule, handled_us \
               FROM inbound_messages WHERE dedup_key = $1";
    type Row = (i64, String, i64, Option<String>, Option<String>, Option<String>, Option<i64>);
    let row: Option<Row> = with_pool!(store, pool => sqlx::query_as(sql).bind(dedup_key).fetch_optional(pool).await)?;
    Ok(row.map(|(id, claimed_by, claimed_at, outcome, reply_xml, rule, handled_us)| Stored {
        id,
        claimed_by,
        claimed_at,
        // A stored value this build does not know reads as failed: answered `success`, which
        // is what any outcome but a reply was answered with.
        outcome: outcome.map(|o| Answered {
            outcome: Outcome::parse(&o).unwrap_or(Outcome::Failed),
            reply_xml,
            rule,
            handled_us: handled_us.unwrap_or(0),
        }),
    }))
}

/// Queues a job with a message's outcome (a late reply), if its key is new; both writers use it.
const JOB_INSERT: &str = "INSERT INTO jobs (kind, payload, dedupe_key, state, attempts, run_at, lease_until, created_at, updated_at) \
    VALUES ($1, $2, $3, 'queued', 0, $4, 0, $5, $5) ON CONFLICT (dedupe_key) DO NOTHING";

/// A batch on its way to the SQLite thread, and where to send it back with the results.
type SqliteJob = (Vec<Op>, oneshot::Sender<(Vec<Op>, Result<Vec<Claim>, LogError>)>);

enum Backend {
    Sqlite(std::sync::mpsc::Sender<SqliteJob>),
    Postgres(sqlx::PgPool),
}

/// Collects queued rows into batches, one transaction each. Exactly one batch is in flight at a
/// time, so rows pile up while it commits and the next batch takes them all. The SQLite thread
/// is woken once per batch and answers once per batch: waking it (or the runtime) per row
/// would, on one core, turn each row into a context switch and each batch into one row.
async fn batcher(
    backend: Backend,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Op>,
    busy_since: Arc<AtomicI64>,
    committed: Option<Arc<Committed>>,
    clock: Clock,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Let the requests that are ready to run add their rows first.
        tokio::task::yield_now().await;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        metrics::histogram!("wxoa_message_log_batch_rows").record(batch.len() as f64);
        busy_since.store(clock.now_ms(), Ordering::Relaxed);
        let result = match &backend {
            Backend::Sqlite(thread) => {
                let (done, back) = oneshot::channel();
                if thread.send((std::mem::take(&mut batch), done)).is_err() {
                    break;
                }
                match back.await {
                    Ok((returned, result)) => {
                        batch = returned;
                        result
                    }
                    Err(_) => break,
                }
            }
            Backend::Postgres(pool) => {
                pg_batch(pool, &batch, clock.now_ms()).await.map_err(|e| LogError(e.to_string()))
            }
        };
        busy_since.store(0, Ordering::Relaxed);
        match result {
            Ok(claims) => {
                let mut claims = claims.into_iter();
                let mut logged = Vec::new();
                for op in batch.drain(..) {
                    match op {
                        Op::Insert(m, done) => {
                            let claim = claims.next().expect("one result per insert");
                            let _ = done.send(Ok(claim));
                            if let (Claim::Claimed(id), Some(_)) = (claim, &committed) {
                                let Inbound { openid, msg_type, event, event_key, received_at, .. } = *m;
                                logged.push(Logged { id, openid, msg_type, event, event_key, received_at });
                            }
                        }
                        Op::Complete(_, _, _, done) => {
                            let _ = done.send(Ok(()));
                        }
                    }
                }
                if let Some(committed) = &committed {
                    committed.extend(logged);
                }
            }
            Err(e) => {
                tracing::error!(error = %e.0, "message log batch failed");
                fail_all(&mut batch, &e);
            }
        }
    }
}

fn fail_all(batch: &mut Vec<Op>, e: &LogError) {
    for op in batch.drain(..) {
        match op {
            Op::Insert(_, done) => {
                let _ = done.send(Err(e.clone()));
            }
            Op::Complete(_, _, _, done) => {
                let _ = done.send(Err(e.clone()));
            }
        }
    }
}
