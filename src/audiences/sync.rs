//! A segment made a WeChat tag: the tag created (or found by name), then only the difference
//! between who the rules take and who the tag holds, 50 followers a call, each call committed
//! as it is made — so a crash, `kill -9` included, resumes without redoing a finished batch.
//!
//! | state | one step | next |
//! |---|---|---|
//! | planning | step 0: the tag found by name or created (100 tags at most, checked first); then the difference for the next 50,000 follower ids, written to `segment_ops` | past the last follower: tagging |
//! | tagging | the next 50 planned followers tagged (`tags/members/batchtagging`); a follower who holds 20 tags already is skipped | none left: untagging |
//! | untagging | the next 50 planned followers untagged (`batchuntagging`) | none left: done |
//!
//! The tag holds only followers: whoever left is dropped from `segment_members` while
//! planning, without a call (WeChat forgets an unfollower's tags). Each step is guarded by its
//! step number as a follower sync's are (`followers::sync`), and in `serve` it runs as outbox
//! jobs ([`Kind::SegmentSync`]) that carry on for ten seconds each, in the segment's queue.

use super::Segment;
use crate::jobs::Kind;
use crate::jobs::outbox::NewJob;
use crate::jobs::resumable;
use crate::jobs::worker::{JobCtx, SendError, Sent};
use crate::store::{Store, Tx};
use crate::wechat::client::tag::{MAX_TAG_BATCH, MAX_TAGS, MAX_TAGS_PER_FOLLOWER};
use crate::wechat::client::{CallError, Client};
use crate::{with_pool, with_tx};
use serde::{Deserialize, Serialize};

/// Follower ids planned per step.
const PLAN_RANGE: i64 = 50_000;
/// The segment syncs, as the shared runner knows them.
const SYNCS: resumable::Syncs = resumable::Syncs { table: "segment_syncs", called: "segment sync" };
/// WeChat's errcodes for a follower holding 20 tags, and an openid that does not follow.
const TOO_MANY_TAGS: i64 = 45059;
const NOT_A_FOLLOWER: i64 = 40003;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Planning,
    Tagging,
    Untagging,
    Done,
    Failed,
}

crate::stored_as!(State {
    Planning => "planning",
    Tagging => "tagging",
    Untagging => "untagging",
    Done => "done",
    Failed => "failed",
});

impl State {
    pub fn is_finished(self) -> bool {
        matches!(self, State::Done | State::Failed)
    }
}

/// A segment's sync to its tag, and its figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sync {
    pub id: i64,
    pub segment_id: i64,
    pub state: State,
    pub step: i64,
    /// Followers to tag and to untag, as planned so far.
    pub planned_add: i64,
    pub planned_remove: i64,
    pub added: i64,
    pub removed: i64,
    /// Followers left out because they hold WeChat's 20 tags already (or no longer follow).
    pub skipped: i64,
    pub error: Option<String>,
    pub requested_by: String,
    pub started_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    #[serde(skip)]
    plan_after: i64,
}

type SyncRow = (i64, i64, String, i64, i64, i64, i64, i64, i64, i64, Option<String>, String, i64, i64, Option<i64>);
const COLUMNS: &str = "id, segment_id, state, step, plan_after, planned_add, planned_remove, added, removed, skipped, \
                       error, requested_by, started_at, updated_at, finished_at";

fn from_row(r: SyncRow) -> Result<Sync, sqlx::Error> {
    let state = State::parse(&r.2)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown segment sync state {:?}", r.2).into()))?;
    Ok(Sync {
        id: r.0,
        segment_id: r.1,
        state,
        step: r.3,
        plan_after: r.4,
        planned_add: r.5,
        planned_remove: r.6,
        added: r.7,
        removed: r.8,
        skipped: r.9,
        error: r.10,
        requested_by: r.11,
        started_at: r.12,
        updated_at: r.13,
        finished_at: r.14,
    })
}

async fn one(store: &Store, filter: &str, id: i64) -> Result<Option<Sync>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM segment_syncs WHERE {filter} ORDER BY id DESC LIMIT 1");
    let row: Option<SyncRow> =
        with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await)?;
    row.map(from_row).transpose()
}

pub async fn get(store: &Store, id: i64) -> Result<Option<Sync>, sqlx::Error> {
    one(store, "id = $1", id).await
}

/// A segment's latest sync.
pub async fn latest(store: &Store, segment_id: i64) -> Result<Option<Sync>, sqlx::Error> {
    one(store, "segment_id = $1", segment_id).await
}

#[derive(Debug, Serialize, Deserialize)]
struct Carry {
    sync: i64,
}

fn queue(segment_id: i64) -> String {
    format!("segments:sync:{segment_id}")
}

/// The job that carries sync `id` of a segment on from `step`.
fn carry_job(segment_id: i64, id: i64, step: i64) -> NewJob {
    NewJob::new(Kind::SegmentSync, Carry { sync: id }, format!("segments:sync:{id}:{step}")).in_queue(queue(segment_id))
}

/// Starts syncing `segment` to its tag, or resumes its unfinished sync (one a segment); with
/// `enqueue`, as outbox jobs. `true` if it was started now.
pub async fn start(store: &Store, segment: &Segment, by: &str, enqueue: bool) -> Result<(Sync, bool), sqlx::Error> {
    let now = store.now_ms();
    let mut tx = store.begin().await?;
    let running: Option<i64> = with_tx!(&mut tx, conn => sqlx::query_scalar("SELECT id FROM segment_syncs WHERE running = $1")
        .bind(segment.id).fetch_optional(conn).await)?;
    let (id, new) = match running {
        Some(id) => (id, false),
        None => {
            let inserted: Result<i64, sqlx::Error> = with_tx!(&mut tx, conn => sqlx::query_scalar(
                "INSERT INTO segment_syncs (segment_id, state, step, running, requested_by, started_at, updated_at) \
                 VALUES ($1, 'planning', 0, $1, $2, $3, $3) RETURNING id")
                .bind(segment.id).bind(by).bind(now).fetch_one(conn).await);
            match inserted {
                Ok(id) => (id, true),
                Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                    drop(tx);
                    let s = latest(store, segment.id).await?.ok_or(sqlx::Error::RowNotFound)?;
                    return Ok((s, false));
                }
                Err(e) => return Err(e),
            }
        }
    };
    if enqueue {
        let step: i64 = with_tx!(&mut tx, conn => sqlx::query_scalar("SELECT step FROM segment_syncs WHERE id = $1")
            .bind(id).fetch_one(conn).await)?;
        resumable::resume(&mut tx, &carry_job(segment.id, id, step)).await?;
    }
    tx.commit().await?;
    Ok((get(store, id).await?.ok_or(sqlx::Error::RowNotFound)?, new))
}

/// Why a step did not move the sync.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    WeChat(#[from] CallError),
    /// Refused before calling: WeChat's documented limits say it would fail.
    #[error("{0}")]
    Limit(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl StepError {
    /// Whether trying again later may succeed.
    fn is_transient(&self) -> bool {
        match self {
            StepError::WeChat(e) => e.is_transient() || e.is_token_error(),
            StepError::Limit(_) => false,
            StepError::Db(_) => true,
        }
    }
}

/// What a step changes on its sync row.
#[derive(Debug)]
struct Next {
    state: State,
    plan_after: Option<i64>,
    planned_add: i64,
    planned_remove: i64,
    added: i64,
    removed: i64,
    skipped: i64,
}

impl Next {
    fn to(state: State) -> Next {
        Next { state, plan_after: None, planned_add: 0, planned_remove: 0, added: 0, removed: 0, skipped: 0 }
    }
}

async fn advance(tx: &mut Tx, sync: &Sync, next: &Next, now: i64) -> Result<bool, sqlx::Error> {
    let finished = next.state.is_finished();
    with_tx!(tx, conn => sqlx::query(
        "UPDATE segment_syncs SET state = $1, plan_after = COALESCE($2, plan_after), planned_add = planned_add + $3, \
         planned_remove = planned_remove + $4, added = added + $5, removed = removed + $6, skipped = skipped + $7, \
         running = $8, finished_at = $9, step = step + 1, updated_at = $10 WHERE id = $11 AND step = $12 AND running IS NOT NULL")
        .bind(next.state.as_str()).bind(next.plan_after).bind(next.planned_add).bind(next.planned_remove)
        .bind(next.added).bind(next.removed).bind(next.skipped)
        .bind((!finished).then_some(sync.segment_id)).bind(finished.then_some(now)).bind(now)
        .bind(sync.id).bind(sync.step)
        .execute(conn).await.map(|r| r.rows_affected() == 1))
}

/// Runs step `step` of sync `id`: `false` if it was not that sync's step any more (another
/// runner took it, or it is finished).
pub async fn run_step(store: &Store, client: &Client, id: i64, step: i64) -> Result<bool, StepError> {
    let Some(sync) = get(store, id).await? else { return Ok(false) };
    if sync.state.is_finished() || sync.step != step {
        return Ok(false);
    }
    let segment = super::get(store, sync.segment_id).await?.ok_or(sqlx::Error::RowNotFound)?;
    let now = store.now_ms();
    match sync.state {
        State::Planning if segment.tag_id.is_none() => {
            let tag_id = find_or_create_tag(client, &segment.name).await?;
            let mut tx = store.begin().await?;
            if !advance(&mut tx, &sync, &Next::to(State::Planning), now).await? {
                return Ok(false);
            }
            with_tx!(&mut tx, conn => sqlx::query("UPDATE segments SET tag_id = $1, updated_at = $2 WHERE id = $3 AND tag_id IS NULL")
                .bind(tag_id).bind(now).bind(segment.id).execute(conn).await.map(|_| ()))?;
            tx.commit().await?;
        }
        State::Planning => plan(store, &sync, &segment, now).await?,
        State::Tagging | State::Untagging => apply(store, client, &sync, &segment, now).await?,
        State::Done | State::Failed => return Ok(false),
    }
    Ok(true)
}

/// The segment's tag: one of that name if the account has it, else a new one — unless the
/// account holds WeChat's 100 tags already (refused before calling, as WeChat would: 45056).
async fn find_or_create_tag(client: &Client, name: &str) -> Result<i64, StepError> {
    let tags = client.tag_list().await?;
    if let Some(t) = tags.iter().find(|t| t.name == name) {
        return Ok(t.id);
    }
    if tags.len() >= MAX_TAGS {
        return Err(StepError::Limit(format!(
            "the account has WeChat's {MAX_TAGS} tags already (45056): delete one to sync this segment"
        )));
    }
    Ok(client.tag_create(name).await?.id)
}

/// Plans the next range of follower ids: who to tag, who to untag, and whoever left dropped.
async fn plan(store: &Store, sync: &Sync, segment: &Segment, now: i64) -> Result<(), StepError> {
    let (from, to) = (sync.plan_after, sync.plan_after + PLAN_RANGE);
    let last: Option<i64> =
        with_pool!(store, pool => sqlx::query_scalar("SELECT MAX(id) FROM followers").fetch_one(pool).await)?;
    let (cond, binds) = segment.rules.condition(5, now);
    let mut tx = store.begin().await?;
    let add_sql = format!(
        "INSERT INTO segment_ops (sync_id, op, follower_id) SELECT $1, 1, f.id FROM followers f \
         LEFT JOIN members m ON m.openid = f.openid WHERE f.id > $2 AND f.id <= $3 AND f.subscribed = TRUE AND ({cond}) \
         AND NOT EXISTS (SELECT 1 FROM segment_members s WHERE s.segment_id = $4 AND s.follower_id = f.id) AND $5 = $5"
    );
    let remove_sql = format!(
        "INSERT INTO segment_ops (sync_id, op, follower_id) SELECT $1, -1, f.id FROM segment_members s \
         JOIN followers f ON f.id = s.follower_id LEFT JOIN members m ON m.openid = f.openid \
         WHERE s.segment_id = $4 AND f.id > $2 AND f.id <= $3 AND f.subscribed = TRUE AND NOT ({cond}) AND $5 = $5"
    );
    let mut counts = [0u64; 2];
    for (i, sql) in [add_sql, remove_sql].into_iter().enumerate() {
        counts[i] = with_tx!(&mut tx, conn => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(sync.id).bind(from).bind(to).bind(segment.id).bind(0i64);
            for b in &binds {
                q = q.bind(b.clone());
            }
            q.execute(&mut *conn).await.map(|r| r.rows_affected())
        })?;
    }
    // Who left is off the tag already.
    let gone = with_tx!(&mut tx, conn => sqlx::query(
        "DELETE FROM segment_members WHERE segment_id = $1 AND follower_id > $2 AND follower_id <= $3 \
         AND follower_id IN (SELECT id FROM followers WHERE id > $2 AND id <= $3 AND subscribed = FALSE)")
        .bind(segment.id).bind(from).bind(to).execute(conn).await.map(|r| r.rows_affected()))?;
    let done = last.is_none_or(|last| to >= last);
    let next = Next {
        state: if done { State::Tagging } else { State::Planning },
        plan_after: Some(to),
        planned_add: counts[0] as i64,
        planned_remove: counts[1] as i64,
        removed: gone as i64,
        ..Next::to(State::Planning)
    };
    if advance(&mut tx, sync, &next, now).await? {
        tx.commit().await?;
    }
    Ok(())
}

/// Tags (or untags) the next 50 planned followers.
async fn apply(store: &Store, client: &Client, sync: &Sync, segment: &Segment, now: i64) -> Result<(), StepError> {
    let tag_id = segment.tag_id.ok_or(sqlx::Error::RowNotFound)?;
    let untag = sync.state == State::Untagging;
    let op = if untag { -1 } else { 1 };
    // LIMIT inlined (a bound LIMIT makes SQLite prepare the statement each time).
    let sql = format!(
        "SELECT o.follower_id, f.openid, (SELECT COUNT(*) FROM follower_tags t WHERE t.follower_id = o.follower_id \
         AND t.tag_id <> $3) FROM segment_ops o JOIN followers f ON f.id = o.follower_id \
         WHERE o.sync_id = $1 AND o.op = $2 ORDER BY o.follower_id LIMIT {MAX_TAG_BATCH}"
    );
    let rows: Vec<(i64, String, i64)> = with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(sync.id).bind(op).bind(tag_id).fetch_all(pool).await)?;
    if rows.is_empty() {
        let mut tx = store.begin().await?;
        let next = Next::to(if untag { State::Done } else { State::Untagging });
        if advance(&mut tx, sync, &next, now).await? {
            tx.commit().await?;
        }
        return Ok(());
    }
    // WeChat's 20 tags a follower, checked before calling from what the directory knows.
    let (full, mut batch): (Vec<_>, Vec<_>) = rows.iter().partition(|r| !untag && r.2 >= MAX_TAGS_PER_FOLLOWER as i64);
    let mut skipped: Vec<i64> = full.iter().map(|r| r.0).collect();
    if !batch.is_empty() {
        let openids: Vec<&str> = batch.iter().map(|r| r.1.as_str()).collect();
        match client.tag_members(tag_id, &openids, untag).await {
            Ok(()) => {}
            // The directory was behind: one at a time, leaving out whoever WeChat refuses.
            Err(e) if matches!(e.errcode(), Some(TOO_MANY_TAGS | NOT_A_FOLLOWER)) => {
                let mut ok = Vec::new();
                for r in batch {
                    match client.tag_members(tag_id, &[r.1.as_str()], untag).await {
                        Ok(()) => ok.push(r),
                        Err(e) if matches!(e.errcode(), Some(TOO_MANY_TAGS | NOT_A_FOLLOWER)) => skipped.push(r.0),
                        Err(e) => return Err(e.into()),
                    }
                }
                batch = ok;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let done: Vec<i64> = batch.iter().map(|r| r.0).collect();
    let mut tx = store.begin().await?;
    let next = Next {
        added: if untag { 0 } else { done.len() as i64 },
        removed: if untag { done.len() as i64 } else { 0 },
        skipped: skipped.len() as i64,
        ..Next::to(sync.state)
    };
    if !advance(&mut tx, sync, &next, now).await? {
        return Ok(());
    }
    let all: Vec<i64> = rows.iter().map(|r| r.0).collect();
    in_list(&mut tx, "DELETE FROM segment_ops WHERE sync_id = $1 AND op = $2 AND follower_id IN", sync.id, op, &all)
        .await?;
    if !done.is_empty() {
        if untag {
            in_list(
                &mut tx,
                "DELETE FROM segment_members WHERE segment_id = $1 AND $2 = $2 AND follower_id IN",
                segment.id,
                0,
                &done,
            )
            .await?;
            in_list(
                &mut tx,
                "DELETE FROM follower_tags WHERE tag_id = $1 AND $2 = $2 AND follower_id IN",
                tag_id,
                0,
                &done,
            )
            .await?;
        } else {
            pairs(&mut tx, "INSERT INTO segment_members (segment_id, follower_id) ", segment.id, &done).await?;
            pairs(&mut tx, "INSERT INTO follower_tags (tag_id, follower_id) ", tag_id, &done).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// `{prefix} (…ids)` with `$1`, `$2` bound to `a`, `b`.
async fn in_list(tx: &mut Tx, prefix: &str, a: i64, b: i64, ids: &[i64]) -> Result<(), sqlx::Error> {
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let sql = format!("{prefix} ({list})");
    with_tx!(tx, conn => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(a).bind(b).execute(conn).await.map(|_| ()))
}

/// `{insert} VALUES (key, id)…` for each id, existing rows left alone.
async fn pairs(tx: &mut Tx, insert: &str, key: i64, ids: &[i64]) -> Result<(), sqlx::Error> {
    let values = ids.iter().map(|id| format!("({key}, {id})")).collect::<Vec<_>>().join(", ");
    let sql = format!("{insert} VALUES {values} ON CONFLICT DO NOTHING");
    with_tx!(tx, conn => sqlx::query(sqlx::AssertSqlSafe(sql)).execute(conn).await.map(|_| ()))
}

/// Marks the sync failed with `why`.
pub async fn fail(store: &Store, id: i64, why: &str) -> Result<(), sqlx::Error> {
    SYNCS.fail(store, id, why).await
}

/// Where a sync stands, for the shared runner.
fn position(s: &Sync) -> resumable::Position {
    resumable::Position { id: s.id, step: s.step, finished: s.state.is_finished().then(|| s.state.as_str()) }
}

/// The outbox's run of a segment sync ([`Kind::SegmentSync`]), by the shared runner
/// ([`resumable::Syncs::run_job`]): a refusal fails the sync with its reason; a transient
/// error is retried by the outbox from the step it stopped at.
pub async fn run_job(ctx: JobCtx, payload: String) -> Sent {
    let job: Carry = crate::jobs::worker::payload(&payload)?;
    let (store, client) = (&ctx.store, &ctx.client);
    let Some(segment_id) = get(store, job.sync).await.map_err(SendError::Db)?.map(|s| s.segment_id) else {
        return Ok(Some("no such segment sync".into()));
    };
    SYNCS
        .run_job(
            store,
            || async { get(store, job.sync).await.map(|s| s.as_ref().map(position)) },
            |step| async move {
                match run_step(store, client, job.sync, step).await {
                    Ok(moved) => Ok(moved),
                    Err(e) if e.is_transient() => Err(resumable::StepFailure::Transient(match e {
                        StepError::WeChat(e) => SendError::Api(e),
                        StepError::Db(e) => SendError::Db(e),
                        StepError::Limit(why) => SendError::Bad(why),
                    })),
                    Err(e) => Err(resumable::StepFailure::Refused(e.to_string())),
                }
            },
            |at| carry_job(segment_id, at.id, at.step),
        )
        .await
}

/// Runs a segment's sync here until it is finished (tests, tools), without the outbox.
pub async fn run_to_end(store: &Store, client: &Client, id: i64) -> Result<Sync, StepError> {
    SYNCS
        .run_to_end(
            store,
            || async {
                let sync = get(store, id).await?.ok_or(sqlx::Error::RowNotFound)?;
                let at = position(&sync);
                Ok((sync, at))
            },
            |step| async move {
                run_step(store, client, id, step).await.map_err(|e| {
                    let transient = e.is_transient();
                    (e, transient)
                })
            },
            |_| {},
        )
        .await
}
