//! Pulling WeChat's follower list into the directory, one step at a time, so a crash resumes
//! where it stopped and memory stays flat whatever the account's size.
//!
//! A sync is a row of `follower_syncs` moving through three states:
//!
//! | state | one step | next |
//! |---|---|---|
//! | listing | one `user/get` page (10,000 openids after `next_openid`) upserted as following, tagged with the sync's id | an empty page: details |
//! | details | the next 1,000 listed followers by id, in ten `user/info/batchget` calls of 100: subscribe time, remark, tags, QR scene | fewer than 1,000: finishing |
//! | finishing | whoever the list did not name and nothing has heard from since the sync began no longer follows | done |
//!
//! Each step commits its rows with the sync's new position and `step + 1`, guarded by the
//! step it started from: a step run twice (a job's lease ran out, a CLI and a server both on
//! it) commits once, and the loser rolls back. In `serve` an outbox job ([`Kind::FollowerSync`])
//! runs steps for up to ten seconds and then queues a job that carries on; `wxoa followers
//! sync` runs the steps itself. Calls go through the client, so `rate_limits.user` paces them.

use crate::jobs::Kind;
use crate::jobs::outbox::NewJob;
use crate::jobs::resumable;
use crate::jobs::worker::{JobCtx, SendError, Sent};
use crate::store::{Store, Tx};
use crate::wechat::client::Client;
use crate::wechat::client::user::UserInfo;
use crate::{with_pool, with_tx};
use serde::{Deserialize, Serialize};

/// Followers detailed per step (ten `batchget` calls).
const DETAILS_PER_STEP: i64 = 1000;
/// Openids per `batchget` call (WeChat's limit).
const BATCHGET: usize = 100;
/// Rows per multi-row statement.
const CHUNK: usize = 500;
/// The outbox queue every sync step runs in (one at a time).
const QUEUE: &str = "followers:sync";

/// Where a sync is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Listing,
    Details,
    Finishing,
    Done,
    Failed,
}

crate::stored_as!(State {
    Listing => "listing",
    Details => "details",
    Finishing => "finishing",
    Done => "done",
    Failed => "failed",
});

impl State {
    pub fn is_finished(self) -> bool {
        matches!(self, State::Done | State::Failed)
    }
}

/// A follower sync and its figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sync {
    pub id: i64,
    pub state: State,
    /// The step the next run performs.
    pub step: i64,
    /// Followers, as WeChat's first page said.
    pub total: Option<i64>,
    /// Openids the list named so far.
    pub listed: i64,
    /// Followers whose details were read so far.
    pub detailed: i64,
    /// Followers found no longer following.
    pub unfollowed: i64,
    /// Why it failed.
    pub error: Option<String>,
    pub requested_by: String,
    pub started_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    #[serde(skip)]
    next_openid: String,
    #[serde(skip)]
    detail_after: i64,
}

type SyncRow =
    (i64, String, i64, String, i64, Option<i64>, i64, i64, i64, Option<String>, String, i64, i64, Option<i64>);

const COLUMNS: &str = "id, state, step, next_openid, detail_after, total, listed, detailed, unfollowed, error, \
                       requested_by, started_at, updated_at, finished_at";

fn from_row(r: SyncRow) -> Result<Sync, sqlx::Error> {
    let state = State::parse(&r.1)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown follower sync state {:?}", r.1).into()))?;
    Ok(Sync {
        id: r.0,
        state,
        step: r.2,
        next_openid: r.3,
        detail_after: r.4,
        total: r.5,
        listed: r.6,
        detailed: r.7,
        unfollowed: r.8,
        error: r.9,
        requested_by: r.10,
        started_at: r.11,
        updated_at: r.12,
        finished_at: r.13,
    })
}

/// One sync by id.
pub async fn get(store: &Store, id: i64) -> Result<Option<Sync>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM follower_syncs WHERE id = $1");
    let row: Option<SyncRow> =
        with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await)?;
    row.map(from_row).transpose()
}

/// The latest sync, finished or not.
pub async fn latest(store: &Store) -> Result<Option<Sync>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM follower_syncs ORDER BY id DESC LIMIT 1");
    let row: Option<SyncRow> =
        with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_optional(pool).await)?;
    row.map(from_row).transpose()
}

/// How [`start`] found things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// A new sync.
    New,
    /// One was unfinished: it continues (with a job queued for it again if none was).
    Resumed,
}

/// A [`Kind::FollowerSync`] job: carry sync `sync` on from wherever it is.
#[derive(Debug, Serialize, Deserialize)]
struct Carry {
    sync: i64,
}

/// The job that carries `sync` on from `step` (one per step it continues from, so enqueueing
/// it twice is a no-op).
fn step_job(sync: i64, step: i64) -> NewJob {
    NewJob::new(Kind::FollowerSync, Carry { sync }, format!("followers:sync:{sync}:{step}")).in_queue(QUEUE)
}

/// The follower syncs, as the shared runner knows them.
const SYNCS: resumable::Syncs = resumable::Syncs { table: "follower_syncs", called: "sync" };

/// Starts a sync, or resumes the unfinished one (at most one runs). With `enqueue`, its steps
/// run as outbox jobs (`serve`); without, the caller runs them ([`run_to_end`]).
pub async fn start(store: &Store, requested_by: &str, enqueue: bool) -> Result<(Sync, Started), sqlx::Error> {
    let now = store.now_ms();
    let mut tx = store.begin().await?;
    let running: Option<SyncRow> = with_tx!(&mut tx, conn => sqlx::query_as(sqlx::AssertSqlSafe(
        format!("SELECT {COLUMNS} FROM follower_syncs WHERE running = 1"))).fetch_optional(conn).await)?;
    let (id, started) = match running {
        Some(r) => (r.0, Started::Resumed),
        None => {
            let inserted: Result<i64, sqlx::Error> = with_tx!(&mut tx, conn => sqlx::query_scalar(
                "INSERT INTO follower_syncs (state, step, running, requested_by, started_at, updated_at) \
                 VALUES ('listing', 0, 1, $1, $2, $2) RETURNING id")
                .bind(requested_by).bind(now).fetch_one(conn).await);
            match inserted {
                Ok(id) => (id, Started::New),
                // Another instance started one between our read and our insert: that one runs.
                Err(e) if is_unique_violation(&e) => {
                    drop(tx); // rolls back
                    let s = current(store).await?.ok_or(e)?;
                    return Ok((s, Started::Resumed));
                }
                Err(e) => return Err(e),
            }
        }
    };
    if enqueue {
        let step: i64 = with_tx!(&mut tx, conn => sqlx::query_scalar("SELECT step FROM follower_syncs WHERE id = $1")
            .bind(id).fetch_one(conn).await)?;
        resumable::resume(&mut tx, &step_job(id, step)).await?;
    }
    tx.commit().await?;
    let s = get(store, id).await?.ok_or(sqlx::Error::RowNotFound)?;
    Ok((s, started))
}

/// The unfinished sync, if any.
pub async fn current(store: &Store) -> Result<Option<Sync>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM follower_syncs WHERE running = 1");
    let row: Option<SyncRow> =
        with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_optional(pool).await)?;
    row.map(from_row).transpose()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Why a step did not move the sync.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    WeChat(#[from] crate::wechat::client::CallError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// What running a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stepped {
    /// The sync moved on to this step.
    Moved(i64),
    /// Someone else ran it first, or the sync is finished: nothing done.
    Stale,
}

/// Runs step `step` of sync `id`.
pub async fn run_step(store: &Store, client: &Client, id: i64, step: i64) -> Result<Stepped, StepError> {
    let Some(sync) = get(store, id).await? else { return Ok(Stepped::Stale) };
    if sync.state.is_finished() || sync.step != step {
        return Ok(Stepped::Stale);
    }
    // WeChat first, the transaction after: no write lock is held across a call.
    let now = store.now_ms();
    let (next, work) = match sync.state {
        State::Listing => {
            let page = client.user_list(&sync.next_openid).await?;
            let done = page.data.openid.is_empty() || page.next_openid.is_empty();
            let next = Next {
                state: if done { State::Details } else { State::Listing },
                next_openid: Some(page.next_openid),
                total: Some(sync.total.unwrap_or(page.total)),
                listed: page.data.openid.len() as i64,
                ..Next::default()
            };
            (next, Work::Listed(page.data.openid))
        }
        State::Details => {
            let sql = format!(
                "SELECT id, openid FROM followers WHERE sync_id = $1 AND id > $2 ORDER BY id LIMIT {DETAILS_PER_STEP}"
            );
            let rows: Vec<(i64, String)> = with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(sync.id).bind(sync.detail_after).fetch_all(pool).await)?;
            let mut infos: Vec<(i64, UserInfo)> = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(BATCHGET) {
                let openids: Vec<&str> = chunk.iter().map(|r| r.1.as_str()).collect();
                let got = client.user_info_batch(&openids).await?;
                let ids: std::collections::HashMap<&str, i64> = chunk.iter().map(|r| (r.1.as_str(), r.0)).collect();
                infos.extend(got.into_iter().filter_map(|u| Some((*ids.get(u.openid.as_str())?, u))));
            }
            let next = Next {
                state: if (rows.len() as i64) < DETAILS_PER_STEP { State::Finishing } else { State::Details },
                detail_after: rows.last().map(|r| r.0),
                detailed: infos.len() as i64,
                ..Next::default()
            };
            (next, Work::Detailed(infos))
        }
        State::Finishing => (Next { state: State::Done, ..Next::default() }, Work::Finish),
        State::Done | State::Failed => return Ok(Stepped::Stale),
    };
    let mut tx = store.begin().await?;
    // Claimed first: if another runner moved the sync meanwhile, this one writes nothing.
    if !advance(&mut tx, &sync, &next, now).await? {
        drop(tx); // rolls back
        return Ok(Stepped::Stale);
    }
    match work {
        Work::Listed(openids) => {
            for chunk in openids.chunks(CHUNK) {
                with_tx!(&mut tx, conn => {
                    let mut q = sqlx::QueryBuilder::new("INSERT INTO followers (openid, subscribed, updated_at, sync_id) ");
                    q.push_values(chunk, |mut b, o| {
                        b.push_bind(o.clone()).push_bind(true).push_bind(now).push_bind(sync.id);
                    });
                    q.push(" ON CONFLICT (openid) DO UPDATE SET subscribed = excluded.subscribed, \
                             updated_at = excluded.updated_at, sync_id = excluded.sync_id");
                    q.build().execute(&mut *conn).await.map(|_| ())
                })?;
            }
        }
        Work::Detailed(infos) => write_details(&mut tx, &infos, now).await?,
        Work::Finish => {
            // Not listed, and no follow or message since the sync began: they left while we
            // were not listening (when exactly, WeChat does not say).
            let n = with_tx!(&mut tx, conn => sqlx::query(
                "UPDATE followers SET subscribed = $1, unsubscribed_at = COALESCE(unsubscribed_at, $2), updated_at = $2 \
                 WHERE subscribed = $3 AND (sync_id IS NULL OR sync_id <> $4) AND updated_at < $5")
                .bind(false).bind(now).bind(true).bind(sync.id).bind(sync.started_at).execute(conn).await.map(|r| r.rows_affected()))?;
            with_tx!(&mut tx, conn => sqlx::query("UPDATE follower_syncs SET unfollowed = $1 WHERE id = $2")
                .bind(n as i64).bind(sync.id).execute(conn).await.map(|_| ()))?;
        }
    }
    tx.commit().await?;
    Ok(Stepped::Moved(step + 1))
}

/// What a step read from WeChat, to write.
enum Work {
    Listed(Vec<String>),
    Detailed(Vec<(i64, UserInfo)>),
    Finish,
}

/// A step's effect on its sync row.
#[derive(Debug)]
struct Next {
    state: State,
    next_openid: Option<String>,
    total: Option<i64>,
    listed: i64,
    detail_after: Option<i64>,
    detailed: i64,
}

impl Default for Next {
    fn default() -> Next {
        Next { state: State::Listing, next_openid: None, total: None, listed: 0, detail_after: None, detailed: 0 }
    }
}

/// Moves `sync` past its step inside `tx`; `false` if its step is no longer the one read
/// (another runner took it).
async fn advance(tx: &mut Tx, sync: &Sync, next: &Next, now: i64) -> Result<bool, sqlx::Error> {
    let finished = next.state.is_finished();
    let n = with_tx!(tx, conn => sqlx::query(
        "UPDATE follower_syncs SET state = $1, next_openid = COALESCE($2, next_openid), total = COALESCE($3, total), \
         listed = listed + $4, detail_after = COALESCE($5, detail_after), detailed = detailed + $6, running = $7, \
         finished_at = $8, step = step + 1, updated_at = $9 WHERE id = $10 AND step = $11 AND running = 1")
        .bind(next.state.as_str()).bind(next.next_openid.clone()).bind(next.total).bind(next.listed)
        .bind(next.detail_after).bind(next.detailed).bind((!finished).then_some(1i64)).bind(finished.then_some(now))
        .bind(now).bind(sync.id).bind(sync.step)
        .execute(conn).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// What `batchget` said of each follower: following or not, since when, remark, QR scene, and
/// their tags (replacing what the directory had).
async fn write_details(tx: &mut Tx, infos: &[(i64, UserInfo)], now: i64) -> Result<(), sqlx::Error> {
    for chunk in infos.chunks(CHUNK / 5) {
        with_tx!(tx, conn => {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO followers (openid, subscribed, last_subscribed_at, first_subscribed_at, remark, scene, store_id, updated_at) ",
            );
            q.push_values(chunk, |mut b, (_, u)| {
                let since = (u.subscribe_time > 0).then_some(u.subscribe_time * 1000);
                let scene = Some(u.qr_scene_str.clone()).filter(|s| !s.is_empty());
                let store_id = scene.as_deref().and_then(crate::stores::scene_store_id);
                b.push_bind(u.openid.clone())
                    .push_bind(u.subscribe == 1)
                    .push_bind(since)
                    .push_bind(since)
                    .push_bind(Some(u.remark.clone()).filter(|r| !r.is_empty()))
                    .push_bind(scene)
                    .push("(SELECT id FROM stores WHERE id = ")
                    .push_bind_unseparated(store_id)
                    .push_unseparated(")")
                    .push_bind(now);
            });
            q.push(
                " ON CONFLICT (openid) DO UPDATE SET subscribed = excluded.subscribed, \
                 last_subscribed_at = COALESCE(excluded.last_subscribed_at, followers.last_subscribed_at), \
                 first_subscribed_at = COALESCE(followers.first_subscribed_at, excluded.first_subscribed_at), \
                 remark = excluded.remark, scene = COALESCE(followers.scene, excluded.scene), \
                 store_id = COALESCE(followers.store_id, excluded.store_id), updated_at = excluded.updated_at",
            );
            q.build().execute(&mut *conn).await.map(|_| ())
        })?;
        with_tx!(tx, conn => {
            let mut q = sqlx::QueryBuilder::new("DELETE FROM follower_tags WHERE follower_id IN (");
            let mut list = q.separated(", ");
            for (id, _) in chunk {
                list.push_bind(*id);
            }
            q.push(")");
            q.build().execute(&mut *conn).await.map(|_| ())
        })?;
        let tags: Vec<(i64, i64)> =
            chunk.iter().flat_map(|(id, u)| u.tagid_list.iter().take(20).map(move |t| (*id, *t))).collect();
        for tags in tags.chunks(CHUNK) {
            with_tx!(tx, conn => {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO follower_tags (follower_id, tag_id) ");
                q.push_values(tags, |mut b, (f, t)| {
                    b.push_bind(*f).push_bind(*t);
                });
                q.push(" ON CONFLICT DO NOTHING");
                q.build().execute(&mut *conn).await.map(|_| ())
            })?;
        }
    }
    Ok(())
}

/// Marks the unfinished sync failed with `why` (a step refused for good).
pub async fn fail(store: &Store, id: i64, why: &str) -> Result<(), sqlx::Error> {
    SYNCS.fail(store, id, why).await
}

/// Where a sync stands, for the shared runner.
fn position(s: &Sync) -> resumable::Position {
    resumable::Position { id: s.id, step: s.step, finished: s.state.is_finished().then(|| s.state.as_str()) }
}

/// A step's error as the runner treats it: WeChat's transient errors and the database's run
/// again, any other refusal fails the sync (so a new one can start).
fn is_transient(e: &StepError) -> bool {
    match e {
        StepError::WeChat(e) => e.is_transient() || e.is_token_error(),
        StepError::Db(_) => true,
    }
}

/// The outbox's run of a sync ([`Kind::FollowerSync`]), by the shared runner
/// ([`resumable::Syncs::run_job`]).
pub async fn run_job(ctx: JobCtx, payload: String) -> Sent {
    let job: Carry = crate::jobs::worker::payload(&payload)?;
    let (store, client) = (&ctx.store, &ctx.client);
    SYNCS
        .run_job(
            store,
            || async { get(store, job.sync).await.map(|s| s.as_ref().map(position)) },
            |step| async move {
                match run_step(store, client, job.sync, step).await {
                    Ok(stepped) => Ok(stepped != Stepped::Stale),
                    Err(e) if is_transient(&e) => Err(resumable::StepFailure::Transient(match e {
                        StepError::WeChat(e) => SendError::Api(e),
                        StepError::Db(e) => SendError::Db(e),
                    })),
                    Err(e) => Err(resumable::StepFailure::Refused(e.to_string())),
                }
            },
            |at| step_job(at.id, at.step),
        )
        .await
}

/// Runs the unfinished sync's steps here until it is finished (`wxoa followers sync`), calling
/// `progress` after each. A refusal fails the sync; a transient error is returned and the sync
/// resumes from its step next time.
pub async fn run_to_end(
    store: &Store,
    client: &Client,
    id: i64,
    progress: impl FnMut(&Sync),
) -> Result<Sync, StepError> {
    SYNCS
        .run_to_end(
            store,
            || async {
                let sync = get(store, id).await?.ok_or(sqlx::Error::RowNotFound)?;
                let at = position(&sync);
                Ok((sync, at))
            },
            |step| async move {
                run_step(store, client, id, step)
                    .await
                    .map_err(|e| {
                        let transient = is_transient(&e);
                        (e, transient)
                    })
                    .map(|_| true)
            },
            progress,
        )
        .await
}
