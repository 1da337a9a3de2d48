//! Firing pushes on time, exactly once, with any number of instances on one database.
//!
//! Every instance runs this loop. It wakes at the next push's time (or every `poll_ms`, to see
//! pushes another instance scheduled) and **claims** each due push in one transaction:
//!
//! ```text
//! UPDATE pushes SET next_at = <following firing or NULL> WHERE id = ? AND next_at = <due> AND status = 'scheduled'
//! INSERT INTO push_runs (push_id, due_at, status = 'sending', clientmsgid, …)
//! ```
//!
//! Only one instance's update matches, so only one sends: a draft for `mpnews` (its media_id kept
//! on the run), then the mass send with the run's `clientmsgid`. A run a dead instance left
//! `sending` is sent again after `campaigns.lease_secs` with the same `clientmsgid`; WeChat refuses
//! a repeat of one it took (45065), recorded as sent, so a push reaches followers once. A push
//! found due over `campaigns.grace_secs` late (every instance was down) is marked `missed` with a
//! warning, a repeating one moving on to its next time; late by less, it fires at once.

use super::schedule::{self, MsgType, PushStatus, RunStatus};
use super::{Audience, send};
use crate::audiences::sync::StepError;
use crate::config::CampaignsConfig;
use crate::jobs::outbox::{self, NewJob};
use crate::jobs::worker::CustomMessageJob;
use crate::store::Store;
use crate::wechat::client::mass::MassContent;
use crate::wechat::client::{CLIENTMSGID_TOO_FAST, CallError, Client};
use crate::{with_pool, with_tx};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// Attempts at a run before it is `failed`.
const MAX_ATTEMPTS: i64 = 5;

/// Why a run was not sent this time. The run stays `sending` and its lease hands it on (to us,
/// or another instance) to try again; a failure for good is recorded on the run instead
/// (`failed`, with its reason) and is no error here.
#[derive(Debug, thiserror::Error)]
enum FireError {
    /// A database call failed, or a stored row could not be read.
    #[error("{0}")]
    Db(#[from] sqlx::Error),
    /// A WeChat call failed in a way worth retrying (its message, at most 500 characters).
    #[error("{0}")]
    WeChat(String),
    /// Syncing the push's segment to its tag failed in a way worth retrying.
    #[error("{0}")]
    Sync(#[from] StepError),
    /// The push, or its campaign, is no longer stored.
    #[error("{0} gone")]
    Gone(&'static str),
    /// A `news` push whose audience is not an openid list (scheduling refuses those).
    #[error("a news push needs an openid list")]
    NewsWithoutList,
}

/// What syncing a push's segment came to, when it came to an end.
enum Synced {
    /// The segment's WeChat tag, up to date: the push goes to it.
    Tag(i64),
    /// The sync failed for good (why); the run fails with it.
    Failed(String),
}

#[derive(Clone)]
pub struct Scheduler(Arc<Inner>);

struct Inner {
    /// Where pushes and runs are.
    store: Store,
    /// WeChat.
    client: Client,
    /// `[campaigns]`: lease, grace, poll interval, limits.
    cfg: CampaignsConfig,
    /// The server's public URL, which article links lead to.
    public_url: String,
    /// This instance's id, written on the runs it claims.
    instance: String,
    /// Rung when a push is scheduled or moved, so the loop looks again at once.
    wake: Arc<Notify>,
    /// Rung when a `news` push has queued its messages, for the outbox to send them.
    outbox_wake: Arc<Notify>,
}

/// What `tick` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Pushes claimed and being sent.
    pub fired: usize,
    /// Pushes found too late and marked `missed`.
    pub missed: usize,
}

impl Scheduler {
    pub fn new(
        store: Store,
        client: Client,
        cfg: CampaignsConfig,
        public_url: &str,
        wake: Arc<Notify>,
        outbox_wake: Arc<Notify>,
    ) -> Scheduler {
        let instance = crate::store::instance_id();
        Scheduler(Arc::new(Inner {
            store,
            client,
            cfg,
            public_url: public_url.to_owned(),
            instance,
            wake,
            outbox_wake,
        }))
    }

    fn lease_ms(&self) -> i64 {
        self.0.cfg.lease_secs as i64 * 1000
    }

    /// Runs until `stop` turns true; sends in progress finish first.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut sends = JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            match self.tick(self.0.store.now_ms(), &mut sends).await {
                Ok(t) if t.fired + t.missed > 0 => {
                    tracing::debug!(fired = t.fired, missed = t.missed, "scheduler tick")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "scheduler: database unavailable; retrying"),
            }
            while sends.try_join_next().is_some() {}
            let wait = self.until_next().await;
            tokio::select! {
                _ = self.0.store.clock.sleep(wait) => {}
                _ = self.0.wake.notified() => {}
                _ = stop.changed() => {}
            }
        }
        while sends.join_next().await.is_some() {}
    }

    /// How long to sleep: until the next push is due, at most `poll_ms`.
    async fn until_next(&self) -> Duration {
        let poll = self.0.cfg.poll_ms as i64;
        let next: Result<Option<(Option<i64>,)>, sqlx::Error> = with_pool!(&self.0.store, pool => sqlx::query_as(
            "SELECT MIN(next_at) FROM pushes WHERE status = 'scheduled'"
        ).fetch_optional(pool).await);
        let wait = match next {
            Ok(Some((Some(at),))) => (at - self.0.store.now_ms()).clamp(0, poll),
            _ => poll,
        };
        Duration::from_millis(wait as u64)
    }

    /// Claims what is due at `now` and starts sending it; runs abandoned by a dead instance too.
    pub async fn tick(&self, now: i64, sends: &mut JoinSet<()>) -> Result<Tick, sqlx::Error> {
        let mut tick = Tick::default();
        for run in self.take_over_stale(now).await? {
            let me = self.clone();
            sends.spawn(async move { me.fire(run).await });
        }
        type Due = (i64, i64, Option<String>, String);
        let due: Vec<Due> = with_pool!(&self.0.store, pool => sqlx::query_as(
            "SELECT id, next_at, cron, time_zone FROM pushes WHERE status = 'scheduled' AND next_at <= $1
             ORDER BY next_at LIMIT 50"
        ).bind(now).fetch_all(pool).await)?;
        for (push_id, due_at, cron, tz) in due {
            let missed = now - due_at > self.0.cfg.grace_secs as i64 * 1000;
            let Some(run) = self.claim(push_id, due_at, cron.as_deref(), &tz, missed, now).await? else { continue };
            if missed {
                tick.missed += 1;
                tracing::warn!(
                    push = push_id,
                    due = %schedule::local_time(due_at, &tz),
                    grace_secs = self.0.cfg.grace_secs,
                    "push MISSED: no instance was running at its time; not sent"
                );
            } else {
                tick.fired += 1;
                let me = self.clone();
                sends.spawn(async move { me.fire(run).await });
            }
        }
        Ok(tick)
    }

    /// The compare-and-set that makes one instance the sender. Returns the run id if we won.
    async fn claim(
        &self,
        push_id: i64,
        due_at: i64,
        cron: Option<&str>,
        tz: &str,
        missed: bool,
        now: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        let following = cron.and_then(|c| {
            let cron = croner::Cron::from_str(c).ok()?;
            let tz = chrono_tz::Tz::from_str(tz).ok()?;
            // A missed repeating push skips to its next time after now, not through every gap.
            schedule::next_occurrence(&cron, tz, if missed { now } else { due_at })
        });
        let status = match (cron.is_some(), missed) {
            (true, _) if following.is_some() => PushStatus::Scheduled,
            (_, true) => PushStatus::Missed,
            _ => PushStatus::Fired,
        };
        let mut tx = self.0.store.begin().await?;
        let won = with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE pushes SET next_at = $1, status = $2 WHERE id = $3 AND next_at = $4 AND status = 'scheduled'"
        ).bind(following).bind(status.as_str()).bind(push_id).bind(due_at).execute(conn).await.map(|r| r.rows_affected()))?
            == 1;
        if !won {
            return Ok(None);
        }
        let clientmsgid = format!("wxoa-{push_id}-{due_at}");
        let (run_status, error) = if missed {
            (
                RunStatus::Missed,
                Some(format!("no instance was running at its time (grace {} s)", self.0.cfg.grace_secs)),
            )
        } else {
            (RunStatus::Sending, None)
        };
        let (run_id,): (i64,) = with_tx!(&mut tx, conn => sqlx::query_as(
            "INSERT INTO push_runs (push_id, due_at, status, claimed_by, claimed_at, clientmsgid, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"
        ).bind(push_id).bind(due_at).bind(run_status.as_str()).bind(&self.0.instance).bind(now).bind(&clientmsgid).bind(&error)
        .fetch_one(conn).await)?;
        tx.commit().await?;
        Ok(Some(run_id))
    }

    /// Runs left `sending` by an instance that stopped answering: ours now, unless their time
    /// is more than the grace ago — those are not sent late (`missed` if no attempt had begun,
    /// `failed` if one had: WeChat may or may not have taken it).
    async fn take_over_stale(&self, now: i64) -> Result<Vec<i64>, sqlx::Error> {
        let stale: Vec<(i64, i64, i64, i64)> = with_pool!(&self.0.store, pool => sqlx::query_as(
            "SELECT id, claimed_at, due_at, attempts FROM push_runs WHERE status = 'sending' AND claimed_at < $1"
        ).bind(now - self.lease_ms()).fetch_all(pool).await)?;
        let mut ours = Vec::new();
        for (id, claimed_at, due_at, attempts) in stale {
            if now - due_at > self.0.cfg.grace_secs as i64 * 1000 {
                let (status, why) = if attempts == 0 {
                    ("missed", "its instance stopped before sending, and the grace has passed: not sent late")
                } else {
                    ("failed", "its instance stopped mid-send, and the grace has passed: check mass/get")
                };
                let r = with_pool!(&self.0.store, pool => sqlx::query(
                    "UPDATE push_runs SET status = $1, error = $2, finished_at = $3
                     WHERE id = $4 AND status = 'sending' AND claimed_at = $5"
                ).bind(status).bind(why).bind(now).bind(id).bind(claimed_at).execute(pool).await.map(|r| r.rows_affected()))?;
                if r == 1 {
                    tracing::warn!(run = id, status, "push run abandoned by its instance: {why}");
                }
                continue;
            }
            let r = with_pool!(&self.0.store, pool => sqlx::query(
                "UPDATE push_runs SET claimed_by = $1, claimed_at = $2 WHERE id = $3 AND status = 'sending' AND claimed_at = $4"
            ).bind(&self.0.instance).bind(now).bind(id).bind(claimed_at).execute(pool).await.map(|r| r.rows_affected()))?;
            if r == 1 {
                tracing::warn!(run = id, "taking over a push run its instance left unfinished");
                ours.push(id);
            }
        }
        Ok(ours)
    }

    /// Sends a run we claimed, renewing the claim while WeChat is slow so nobody takes it over.
    async fn fire(&self, run_id: i64) {
        let heartbeat = tokio::spawn({
            let me = self.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(me.lease_ms() as u64 / 4)).await;
                    let _ = with_pool!(&me.0.store, pool => sqlx::query(
                        "UPDATE push_runs SET claimed_at = $1 WHERE id = $2 AND claimed_by = $3 AND status = 'sending'"
                    ).bind(me.0.store.now_ms()).bind(run_id).bind(&me.0.instance).execute(pool).await.map(|r| r.rows_affected()));
                }
            }
        });
        let result = self.try_fire(run_id).await;
        heartbeat.abort();
        if let Err(e) = result {
            // The run stays `sending`; its lease hands it on (to us, or another instance).
            tracing::warn!(run = run_id, error = %e, "push run not sent yet; will retry");
        }
    }

    async fn try_fire(&self, run_id: i64) -> Result<(), FireError> {
        let store = &self.0.store;
        type RunRow = (i64, String, Option<String>, i64);
        // Still ours? (A run taken over meanwhile belongs to its new owner.)
        let row: Option<RunRow> = with_pool!(store, pool => sqlx::query_as(
            "UPDATE push_runs SET attempts = attempts + 1 WHERE id = $1 AND status = 'sending' AND claimed_by = $2
             RETURNING push_id, clientmsgid, media_id, attempts"
        ).bind(run_id).bind(&self.0.instance).fetch_optional(pool).await)?;
        let Some((push_id, clientmsgid, media_id, attempts)) = row else { return Ok(()) };
        let push = schedule::get(store, push_id).await?.ok_or(FireError::Gone("push"))?;
        let campaign = super::get(store, push.campaign_id).await?.ok_or(FireError::Gone("campaign"))?;
        let public_url = &self.0.public_url;
        // A segment goes out to its tag, synced now: whoever joined or left since its last
        // sync is tagged or untagged first (only the difference, so a sync made ahead of the
        // launch leaves little to do at 00:13).
        let audience = match push.audience.clone() {
            Audience::Segment { segment } => match self.sync_segment(segment, push_id).await? {
                Synced::Tag(tag_id) => Audience::Tag { tag_id },
                Synced::Failed(why) => return self.fail_run(run_id, &why).await,
            },
            a => a,
        };
        let content = match push.msg_type {
            MsgType::News => {
                if let Err(why) = send::chosen(&campaign, push.articles.as_deref()) {
                    return self.fail_run(run_id, &why.to_string()).await;
                }
                return self.queue_news(run_id, &push, &campaign).await;
            }
            MsgType::Text => MassContent::Text { content: push.text.clone().unwrap_or_default() },
            MsgType::Mpnews => {
                let media_id = match media_id {
                    Some(m) => m,
                    None => {
                        match send::add_draft(&self.0.client, public_url, &campaign, push.id, push.articles.as_deref())
                            .await
                        {
                            Ok(m) => {
                                self.note(run_id, "media_id = $1", &m).await?;
                                m
                            }
                            Err(e) => return self.failed_attempt(run_id, attempts, &e).await,
                        }
                    }
                };
                MassContent::Mpnews { media_id }
            }
        };
        match send::mass_send(&self.0.client, &audience, &content, &clientmsgid).await {
            Ok(sent) => {
                // A repeat (45065) means an earlier attempt got through before its instance
                // could record it; WeChat names that send, so its figures still arrive.
                let note = sent.is_repeat().then_some("WeChat had this clientmsgid: an earlier attempt sent it");
                let r = with_pool!(store, pool => sqlx::query(
                    "UPDATE push_runs SET status = 'submitted', msg_id = $1, fired_at = $2, error = $3
                     WHERE id = $4 AND status = 'sending' AND claimed_by = $5"
                ).bind(sent.msg_id).bind(self.0.store.now_ms()).bind(note).bind(run_id).bind(&self.0.instance)
                .execute(pool).await.map(|r| r.rows_affected()));
                r?;
                super::apply_stored_finish(store, sent.msg_id).await?;
                tracing::info!(
                    push = push_id, run = run_id, msg_id = sent.msg_id, repeat = sent.is_repeat(),
                    audience = %push.audience.describe(), to = %audience.describe(), "push sent"
                );
                Ok(())
            }
            Err(e) => self.failed_attempt(run_id, attempts, &e).await,
        }
    }

    /// A transient failure (or 45066, "same clientmsgid too soon") leaves the run for its lease
    /// to retry, until MAX_ATTEMPTS; WeChat refusing the content (bad media, over a limit)
    /// fails it at once.
    async fn failed_attempt(&self, run_id: i64, attempts: i64, e: &CallError) -> Result<(), FireError> {
        let message: String = e.to_string().chars().take(500).collect();
        let retry = e.is_transient() || e.errcode() == Some(CLIENTMSGID_TOO_FAST);
        if retry && attempts < MAX_ATTEMPTS {
            self.note(run_id, "error = $1", &message).await?;
            return Err(FireError::WeChat(message));
        }
        self.fail_run(run_id, &message).await
    }

    /// Syncs segment `segment` to its WeChat tag here, to the end: [`Synced::Tag`] to send to,
    /// [`Synced::Failed`] when the sync failed for good (the run fails with it), `Err` for a
    /// transient failure (the run's lease retries it).
    async fn sync_segment(&self, segment: i64, push_id: i64) -> Result<Synced, FireError> {
        use crate::audiences::{self, sync};
        let store = &self.0.store;
        let Some(seg) = audiences::get(store, segment).await? else {
            return Ok(Synced::Failed(format!("segment {segment} no longer exists")));
        };
        let (started, _) = sync::start(store, &seg, &format!("push {push_id}"), false).await?;
        let done = sync::run_to_end(store, &self.0.client, started.id).await?;
        if done.state != sync::State::Done {
            let why = done.error.unwrap_or_else(|| "unknown".into());
            return Ok(Synced::Failed(format!("segment {segment} ({}): its sync failed: {why}", seg.name)));
        }
        let tag = audiences::get(store, segment).await?.and_then(|s| s.tag_id);
        tracing::info!(
            push = push_id,
            segment,
            sync = done.id,
            added = done.added,
            removed = done.removed,
            tag,
            "segment synced for its push"
        );
        Ok(match tag {
            Some(tag_id) => Synced::Tag(tag_id),
            None => Synced::Failed(format!("segment {segment} has no tag after its sync")),
        })
    }

    /// Fails the run at once with `why` (nothing was sent).
    async fn fail_run(&self, run_id: i64, why: &str) -> Result<(), FireError> {
        with_pool!(&self.0.store, pool => sqlx::query(
            "UPDATE push_runs SET status = 'failed', error = $1, finished_at = $2
             WHERE id = $3 AND status = 'sending' AND claimed_by = $4"
        ).bind(why).bind(self.0.store.now_ms()).bind(run_id).bind(&self.0.instance)
        .execute(pool).await.map(|r| r.rows_affected()))?;
        tracing::error!(run = run_id, error = %why, "push FAILED");
        Ok(())
    }

    /// Sets one column of a run we hold (`set`: `column = $1`) to `value`.
    async fn note(&self, run_id: i64, set: &'static str, value: &str) -> Result<(), FireError> {
        let sql = format!("UPDATE push_runs SET {set} WHERE id = $2 AND claimed_by = $3");
        with_pool!(&self.0.store, pool => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(value).bind(run_id).bind(&self.0.instance).execute(pool).await.map(|r| r.rows_affected()))
        .map(|_| ())
        .map_err(FireError::from)
    }

    /// A `news` push: one customer-service message per follower, queued with the run's
    /// completion in one transaction (the outbox's dedupe keys make a retry queue nothing new).
    async fn queue_news(
        &self,
        run_id: i64,
        push: &schedule::Push,
        campaign: &super::Campaign,
    ) -> Result<(), FireError> {
        let Audience::List { openids } = &push.audience else { return Err(FireError::NewsWithoutList) };
        let message = send::news_card(&self.0.public_url, campaign, push.id, push.articles.as_deref());
        let mut tx = self.0.store.begin().await?;
        for openid in openids {
            let job = NewJob::new(
                crate::jobs::Kind::CustomMessage,
                CustomMessageJob { touser: openid.clone(), message: message.clone() },
                format!("push:{run_id}:{openid}"),
            );
            outbox::enqueue_tx(&mut tx, &job).await?;
        }
        with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE push_runs SET status = 'submitted', total_count = $1, fired_at = $2
             WHERE id = $3 AND status = 'sending' AND claimed_by = $4"
        ).bind(openids.len() as i64).bind(self.0.store.now_ms()).bind(run_id).bind(&self.0.instance).execute(conn).await.map(|r| r.rows_affected()))?;
        tx.commit().await?;
        self.0.outbox_wake.notify_one();
        Ok(())
    }
}
