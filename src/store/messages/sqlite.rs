//! The SQLite writer's side: its own connections (never creating the file), the WAL kept
//! bounded by a checkpointer thread, and one batch of rows written in one `BEGIN IMMEDIATE`
//! transaction with prepared statements.

use super::{Claim, JOB_INSERT, Op};
use std::sync::atomic::Ordering;

pub(super) fn open_sqlite(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
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
pub(super) fn checkpoints(
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
pub(super) fn restart_wal(conn: &rusqlite::Connection) {
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

pub(super) fn sqlite_batch(conn: &rusqlite::Connection, batch: &[Op], now: i64) -> rusqlite::Result<Vec<Claim>> {
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
