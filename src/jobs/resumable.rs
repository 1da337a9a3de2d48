//! Syncs that run in committed steps — the follower list, a segment's WeChat tag — and resume
//! from their step after any crash. Each keeps a row with a `step` and a `running` column that
//! is non-NULL while it is unfinished (a unique index on `running` lets one run per scope), and
//! moves a step in a transaction that checks `step`, so two runners never both move it.
//!
//! What they share lives here, so it cannot drift: the outbox job that runs steps for
//! [`JOB_BUDGET`] and hands on to a new job, the run to the end in a command, how a failure is
//! treated (transient: the step runs again; anything else fails the sync so a new one can
//! start), failing a sync, and reviving a step's dead job when a sync is resumed.

use super::outbox::NewJob;
use super::worker::{SendError, Sent};
use crate::store::{Store, Tx};
use crate::{with_pool, with_tx};
use std::future::Future;
use std::time::Duration;

/// How long one job runs steps before handing on to a new job (well inside the outbox's
/// lease, and long enough that the outbox's poll between jobs costs nothing).
pub const JOB_BUDGET: Duration = Duration::from_secs(10);

/// One kind of resumable sync.
#[derive(Debug, Clone, Copy)]
pub struct Syncs {
    /// Its table (`follower_syncs`, `segment_syncs`).
    pub table: &'static str,
    /// What a job's result calls it (`sync`, `segment sync`).
    pub called: &'static str,
}

/// Where a sync stands, as its runner needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The sync's row.
    pub id: i64,
    /// The step it is at (the next to run).
    pub step: i64,
    /// Its final state's name once it is finished (`done`, `failed`).
    pub finished: Option<&'static str>,
}

/// Why a step did not move its sync.
#[derive(Debug)]
pub enum StepFailure {
    /// Worth running again (a network error, an expired token, the database): the sync stays
    /// at its step.
    Transient(SendError),
    /// Refused for good: the sync fails with this reason.
    Refused(String),
}

impl Syncs {
    /// Marks sync `id` failed with `why` (unless it has finished meanwhile).
    pub async fn fail(&self, store: &Store, id: i64, why: &str) -> Result<(), sqlx::Error> {
        let sql = format!(
            "UPDATE {} SET state = 'failed', running = NULL, error = $1, finished_at = $2, updated_at = $2 \
             WHERE id = $3 AND running IS NOT NULL",
            self.table
        );
        with_pool!(store, pool => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(why).bind(store.now_ms()).bind(id).execute(pool).await.map(|_| ()))
    }

    /// The outbox's run of a sync: `step(n)` runs step `n` (`Ok(true)` when it moved the sync,
    /// `Ok(false)` when someone else had), until `load` finds the sync finished or
    /// [`JOB_BUDGET`] is spent, then `carry(position)` is the job that goes on from there. A
    /// crash mid-way leaves the job running, and whoever claims it when its lease runs out
    /// carries on from the sync's step.
    pub async fn run_job<L, LF, S, SF>(
        &self,
        store: &Store,
        mut load: L,
        mut step: S,
        carry: impl Fn(&Position) -> NewJob,
    ) -> Sent
    where
        L: FnMut() -> LF,
        LF: Future<Output = Result<Option<Position>, sqlx::Error>>,
        S: FnMut(i64) -> SF,
        SF: Future<Output = Result<bool, StepFailure>>,
    {
        let started = std::time::Instant::now();
        loop {
            let Some(at) = load().await.map_err(SendError::Db)? else {
                return Ok(Some(format!("no such {}", self.called)));
            };
            if let Some(state) = at.finished {
                return Ok(Some(format!("{} {} {state}", self.called, at.id)));
            }
            if started.elapsed() > JOB_BUDGET {
                let mut tx = store.begin().await.map_err(SendError::Db)?;
                super::outbox::enqueue_tx(&mut tx, &carry(&at)).await.map_err(SendError::Db)?;
                tx.commit().await.map_err(SendError::Db)?;
                return Ok(Some(format!("{} {} continues at step {}", self.called, at.id, at.step)));
            }
            match step(at.step).await {
                Ok(true) => {}
                // Another runner moved it meanwhile: it carries on.
                Ok(false) => return Ok(Some("another runner has it".into())),
                Err(StepFailure::Transient(e)) => return Err(e),
                Err(StepFailure::Refused(why)) => {
                    self.fail(store, at.id, &why).await.map_err(SendError::Db)?;
                    return Ok(Some(format!("{} {} failed: {why}", self.called, at.id)));
                }
            }
        }
    }

    /// Runs a sync's steps here until it is finished (a command), calling `progress` before
    /// each. A refusal fails the sync and the run goes on to report it; a transient error is
    /// returned, and the sync resumes from its step next time.
    pub async fn run_to_end<T, E, L, LF, S, SF>(
        &self,
        store: &Store,
        mut load: L,
        mut step: S,
        mut progress: impl FnMut(&T),
    ) -> Result<T, E>
    where
        L: FnMut() -> LF,
        LF: Future<Output = Result<(T, Position), E>>,
        S: FnMut(i64) -> SF,
        SF: Future<Output = Result<bool, (E, bool)>>,
        E: std::fmt::Display + From<sqlx::Error>,
    {
        loop {
            let (sync, at) = load().await?;
            progress(&sync);
            if at.finished.is_some() {
                return Ok(sync);
            }
            match step(at.step).await {
                Ok(_) => {}
                Err((e, true)) => return Err(e),
                Err((e, false)) => self.fail(store, at.id, &e.to_string()).await?,
            }
        }
    }
}

/// Queues the job that carries a resumed sync on from its step: a job already queued (or
/// done) under the step's key is not doubled, and a dead one — the step ran out of attempts —
/// is queued again.
pub async fn resume(tx: &mut Tx, job: &NewJob) -> Result<(), sqlx::Error> {
    let now = tx.now_ms();
    with_tx!(tx, conn => sqlx::query("UPDATE jobs SET state = 'queued', attempts = 0, run_at = $2, updated_at = $2 \
         WHERE dedupe_key = $1 AND state = 'dead'")
        .bind(&job.dedupe_key).bind(now).execute(conn).await.map(|_| ()))?;
    super::outbox::enqueue_tx(tx, job).await.map(|_| ())
}
