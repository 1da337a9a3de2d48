//! The inbound message log, written with group commit.
//!
//! Every accepted message is inserted under its unique dedup key. A message whose reply is a
//! pure function of the message (a template, an inline reply) is inserted once, reply
//! included. A message routed to a handler — which may have side effects — is *claimed* first
//! (inserted without an outcome) and its outcome recorded when the handler is done, so a retry
//! arriving meanwhile, here or on another instance, sees the claim and waits instead of running
//! the handler twice. Either way the row is committed before the response leaves.
//!
//! One commit per request would cap the webhook at the disk's commit rate, so requests hand
//! their rows to one writer that puts everything queued into a single transaction and wakes
//! all of them when it commits. Under load a batch grows to whatever arrived during the
//! previous commit; at rest it is one row and no added latency.
//!
//! The writer differs per backend for a measured reason. On SQLite it is a dedicated thread
//! with its own connection and prepared statements: sqlx's SQLite driver hands every statement
//! and every row to a worker thread and back, and on one core those hand-offs cost more than
//! the inserts themselves (`scripts/bench.sh`: ~8,300 round trips a second with two sqlx
//! group commits per request; 18,000 to 21,600 in different runs with this writer and one
//! insert per pure reply).
//! On PostgreSQL it is an async task over the sqlx pool, with multi-row statements.

use super::committed::{Committed, Logged};
use super::{Pool, Store};
use crate::clock::Clock;
use crate::with_pool;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::oneshot;

/// Rows per transaction.
const MAX_BATCH: usize = 1024;
/// Rows per multi-row statement on PostgreSQL (powers of two up to this, so only a handful of
/// distinct statements are ever prepared).
const MAX_CHUNK: usize = 128;

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

impl Outcome {
    pub const ALL: [Outcome; 5] =
        [Outcome::Replied, Outcome::Nothing, Outcome::Deferred, Outcome::Failed, Outcome::Pending];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Replied => "replied",
            Outcome::Nothing => "nothing",
            Outcome::Deferred => "deferred",
            Outcome::Failed => "failed",
            Outcome::Pending => "pending",
        }
    }

    /// The outcome a stored string names; a value this build does not know is `None`.
    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

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
    Insert(Box<Inbound>, oneshot::Sender<Result<Claim, String>>),
    Complete(i64, Answered, Option<JobRow>, oneshot::Sender<Result<(), String>>),
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
                                e.to_string()
                            });
                            // Committed to the file we opened? If it was deleted or replaced,
                            // the commit went nowhere: nothing of this batch is acknowledged.
                            let result =
                                result.and_then(|claims| file.check().map(|()| claims).map_err(|e| e.to_string()));
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
        wait.await.map_err(stopped)?.map_err(LogError)
    }

    /// Records the outcome of a claimed message — and `job`, if given, in the same
    /// transaction — committed before this returns.
    pub async fn complete(&self, id: i64, outcome: Answered, job: Option<JobRow>) -> Result<(), LogError> {
        let (done, wait) = oneshot::channel();
        self.send(Op::Complete(id, outcome, job, done))?;
        wait.await.map_err(stopped)?.map_err(LogError)
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

// ---- SQLite: a writer thread ----

fn open_sqlite(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    // Never creates the file: the store opened it already, and one gone since is lost, not new.
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Same durability as the pool: WAL survives a process crash with synchronous=NORMAL.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Checkpoints (copying the WAL into the database, with fsyncs) run on their own thread:
    // done by the writer they stall every request waiting on that batch (p99 went from ~3 ms
    // to ~11 ms in the benchmark).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", WAL_LIMIT_BYTES)?;
    Ok(conn)
}

/// The WAL size past which the writer is asked to restart it.
const WAL_RESET_BYTES: i64 = 32 << 20;
/// A restarted WAL file is cut back to this (`journal_size_limit`).
const WAL_LIMIT_BYTES: i64 = 64 << 20;
/// How long the writer waits for readers to leave the old WAL before giving up this time.
const RESTART_WAIT: std::time::Duration = std::time::Duration::from_millis(2);
/// The writer is asked only once the passive checkpoints have left fewer frames than this to copy.
const RESTART_TAIL_FRAMES: i64 = 256;

/// While the writer is busy, a checkpoint every this long; small ones keep the tail short.
/// Every 100 ms, each checkpoint copied and synced ~100 ms of frames at once, and wrk's p99 was
/// 6.7–7.4 ms; every 10 ms, 3.3–3.4 ms (`scripts/bench-wrk.sh 1 12`, interleaved, same
/// throughput; `scripts/bench.sh`'s p99 3.8 → 2.8 ms, the WAL's peak 40 → 33 MB).
const BUSY_EVERY: std::time::Duration = std::time::Duration::from_millis(10);
/// While it is idle (the last checkpoint found nothing to copy).
const IDLE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Checkpoints the WAL every [`BUSY_EVERY`] while there is something to copy, else every
/// [`IDLE_EVERY`] (PASSIVE: never blocks the writer) until the writer stops, then once more;
/// past [`WAL_RESET_BYTES`] it asks the writer to restart the WAL.
///
/// Why the writer: SQLite starts the WAL over only when a checkpoint has copied every frame in
/// it, and a passive checkpoint racing a writer that commits every millisecond never does — the
/// WAL grew to ~1 GB over a 620,000-message run. The writer, between two batches, runs a
/// RESTART checkpoint, which holds up its next batch while it copies what is left and syncs the
/// database file. So that is made small first: passive checkpoints run back to back (each
/// copying what arrived during the last) until fewer than [`RESTART_TAIL_FRAMES`] are left, and
/// the writer waits at most [`RESTART_WAIT`] for readers (else it is asked again next time).
fn checkpoints(
    conn: rusqlite::Connection,
    writer_alive: std::sync::mpsc::Receiver<()>,
    reset_wanted: &std::sync::atomic::AtomicBool,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap_or(4096);
    // Prepared once: parsing the pragma a hundred times a second was a sixth of this thread's time.
    let passive = || {
        conn.prepare_cached("PRAGMA wal_checkpoint(PASSIVE)")?
            .query_row([], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
    };
    let mut every = IDLE_EVERY;
    let mut last = (-1, -1);
    loop {
        let stop = matches!(writer_alive.recv_timeout(every), Err(RecvTimeoutError::Disconnected));
        let done = passive();
        if let Ok(now) = done {
            every = if now == last { IDLE_EVERY } else { BUSY_EVERY };
            last = now;
        }
        match done {
            Ok((frames, _)) if frames * page > WAL_RESET_BYTES => {
                for _ in 0..4 {
                    match passive() {
                        Ok((frames, copied)) if frames - copied < RESTART_TAIL_FRAMES => {
                            reset_wanted.store(true, Ordering::Relaxed);
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "WAL checkpoint failed");
                            break;
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
        if stop {
            return;
        }
    }
}

/// A RESTART checkpoint on the writer's connection: the next commit starts the WAL over (cut
/// back to [`WAL_LIMIT_BYTES`]).
fn restart_wal(conn: &rusqlite::Connection) {
    let _ = conn.busy_timeout(RESTART_WAIT);
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
        tracing::debug!(error = %e, "WAL restart deferred");
    }
    let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
}

const SQLITE_INSERT: &str = "INSERT INTO inbound_messages (dedup_key, openid, msg_type, event, event_key, msg_id, \
    create_time, encrypted, raw_xml, received_at, claimed_by, claimed_at, outcome, reply_xml, rule, handled_us, replied_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) ON CONFLICT (dedup_key) DO NOTHING";
const SQLITE_COMPLETE: &str = "UPDATE inbound_messages SET outcome = ?2, reply_xml = ?3, rule = ?4, handled_us = ?5, \
    replied_at = ?6 WHERE id = ?1 AND outcome IS NULL";
const JOB_INSERT: &str = "INSERT INTO jobs (kind, payload, dedupe_key, state, attempts, run_at, lease_until, created_at, updated_at) \
    VALUES ($1, $2, $3, 'queued', 0, $4, 0, $5, $5) ON CONFLICT (dedupe_key) DO NOTHING";

/// A batch on its way to the SQLite thread, and where to send it back with the results.
type SqliteJob = (Vec<Op>, oneshot::Sender<(Vec<Op>, Result<Vec<Claim>, String>)>);

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
            Backend::Postgres(pool) => pg_batch(pool, &batch, clock.now_ms()).await.map_err(|e| e.to_string()),
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
                tracing::error!(error = %e, "message log batch failed");
                fail_all(&mut batch, &e);
            }
        }
    }
}

fn sqlite_batch(conn: &rusqlite::Connection, batch: &[Op], now: i64) -> rusqlite::Result<Vec<Claim>> {
    // Prepared once, like the inserts: `execute_batch` parses its SQL on every call.
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let mut insert = conn.prepare_cached(SQLITE_INSERT)?;
    let mut complete = conn.prepare_cached(SQLITE_COMPLETE)?;
    let mut job = conn.prepare_cached(JOB_INSERT)?;
    let mut claims = Vec::with_capacity(batch.len());
    for op in batch {
        match op {
            Op::Insert(m, _) => {
                let o = m.outcome.as_ref();
                let inserted = insert.execute(rusqlite::params![
                    m.dedup_key,
                    m.openid,
                    m.msg_type,
                    m.event,
                    m.event_key,
                    m.msg_id,
                    m.create_time,
                    m.encrypted,
                    m.raw_xml,
                    m.received_at,
                    m.claimed_by,
                    now,
                    o.map(|o| o.outcome.as_str()),
                    o.and_then(|o| o.reply_xml.as_deref()),
                    o.and_then(|o| o.rule.as_deref()),
                    o.map(|o| o.handled_us),
                    o.map(|_| now),
                ])?;
                claims.push(if inserted == 1 { Claim::Claimed(conn.last_insert_rowid()) } else { Claim::Duplicate });
            }
            Op::Complete(id, o, late, _) => {
                let done = complete.execute(rusqlite::params![
                    id,
                    o.outcome.as_str(),
                    o.reply_xml,
                    o.rule,
                    o.handled_us,
                    now
                ])?;
                if let Some(j) = late.as_ref().filter(|_| done == 1) {
                    job.execute(rusqlite::params![j.kind, j.payload, j.dedupe_key, j.run_at, now])?;
                }
            }
        }
    }
    conn.prepare_cached("COMMIT")?.execute([])?;
    Ok(claims)
}

fn fail_all(batch: &mut Vec<Op>, msg: &str) {
    for op in batch.drain(..) {
        match op {
            Op::Insert(_, done) => {
                let _ = done.send(Err(msg.to_owned()));
            }
            Op::Complete(_, _, _, done) => {
                let _ = done.send(Err(msg.to_owned()));
            }
        }
    }
}

// ---- PostgreSQL: an async task with multi-row statements ----

async fn pg_batch(pool: &sqlx::PgPool, batch: &[Op], now: i64) -> Result<Vec<Claim>, sqlx::Error> {
    let inserts: Vec<&Inbound> =
        batch.iter().filter_map(|op| if let Op::Insert(m, _) = op { Some(m.as_ref()) } else { None }).collect();
    let mut tx = pool.begin().await?;
    let mut claims = vec![Claim::Duplicate; inserts.len()];
    let mut start = 0;
    for chunk in chunks(inserts.len()) {
        let rows = &inserts[start..start + chunk];
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO inbound_messages (dedup_key, openid, msg_type, event, event_key, msg_id, create_time, \
             encrypted, raw_xml, received_at, claimed_by, claimed_at, outcome, reply_xml, rule, handled_us, replied_at) ",
        );
        q.push_values(rows, |mut b, m| {
            let o = m.outcome.as_ref();
            b.push_bind(m.dedup_key.as_str())
                .push_bind(m.openid.as_str())
                .push_bind(m.msg_type.as_str())
                .push_bind(m.event.as_deref())
                .push_bind(m.event_key.as_deref())
                .push_bind(m.msg_id.as_deref())
                .push_bind(m.create_time)
                .push_bind(m.encrypted)
                .push_bind(m.raw_xml.as_str())
                .push_bind(m.received_at)
                .push_bind(m.claimed_by.as_str())
                .push_bind(now)
                .push_bind(o.map(|o| o.outcome.as_str()))
                .push_bind(o.and_then(|o| o.reply_xml.as_deref()))
                .push_bind(o.and_then(|o| o.rule.as_deref()))
                .push_bind(o.map(|o| o.handled_us))
                .push_bind(o.map(|_| now));
        });
        q.push(" ON CONFLICT (dedup_key) DO NOTHING RETURNING id, dedup_key");
        let inserted: Vec<(i64, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
        let positions: std::collections::HashMap<&str, usize> =
            rows.iter().enumerate().map(|(i, m)| (m.dedup_key.as_str(), i)).collect();
        for (id, key) in inserted {
            if let Some(&pos) = positions.get(key.as_str()) {
                claims[start + pos] = Claim::Claimed(id);
            }
        }
        start += chunk;
    }
    for op in batch {
        if let Op::Complete(id, o, late, _) = op {
            let done = sqlx::query(
                "UPDATE inbound_messages SET outcome = $2, reply_xml = $3, rule = $4, handled_us = $5, replied_at = $6 \
                 WHERE id = $1 AND outcome IS NULL",
            )
            .bind(id)
            .bind(o.outcome.as_str())
            .bind(&o.reply_xml)
            .bind(&o.rule)
            .bind(o.handled_us)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if let Some(j) = late.as_ref().filter(|_| done == 1) {
                sqlx::query(JOB_INSERT)
                    .bind(j.kind)
                    .bind(&j.payload)
                    .bind(&j.dedupe_key)
                    .bind(j.run_at)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(claims)
}

/// Splits `n` rows into power-of-two chunks of at most [`MAX_CHUNK`].
fn chunks(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let c = if n >= MAX_CHUNK { MAX_CHUNK } else { 1 << (usize::BITS - 1 - n.leading_zeros()) };
        n -= c;
        Some(c)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_are_powers_of_two() {
        let got: Vec<usize> = super::chunks(300).collect();
        assert_eq!(got, [128, 128, 32, 8, 4]);
        assert_eq!(super::chunks(0).count(), 0);
        assert_eq!(super::chunks(1).collect::<Vec<_>>(), [1]);
    }
}
