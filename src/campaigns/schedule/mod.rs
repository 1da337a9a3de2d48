//! Pushes: when a campaign goes out, to whom, as what — scheduling, moving, cancelling and
//! listing them (firing them is [`super::scheduler`]'s).
//!
//! A time is RFC 3339 with its offset (`2026-11-23T00:13:00+08:00`) or a local time
//! (`2026-11-23 00:13`) in the push's time zone (`campaigns.time_zone` by default, China's
//! `Asia/Shanghai`). A cron pattern (croner: minute hour day month weekday, optional seconds
//! first) repeats in its time zone, so `13 0 * * *` is 00:13 in Shanghai whatever the server's
//! clock says.
//!
//! One file per job, so a rule can be changed without reading SQL: `push.rs` (what a push is),
//! `time.rs` (when it goes), `check.rs` (the rules it must satisfy), `rows.rs` (reading it
//! back). `check.rs` and `rows.rs` use `push.rs` and `time.rs`, never the other way, and none
//! imports this file, which composes them into [`schedule`], [`reschedule`] and [`cancel`].
//! [`Audience`] and [`local_time`] live in the parent, shared with [`super::limits`]: this
//! module calls the limits, so the limits must not call back. Callers name everything through
//! the re-exports here (`schedule::Push`), never a file.

mod check;
mod push;
mod rows;
mod time;

pub use super::{Audience, local_time};
pub use check::{check_in_range, check_selection};
pub use push::{MsgType, NewTime, Push, PushInput, PushStatus, Recall, Run, RunStatus};
pub use rows::{get, list};
pub use time::{next_occurrence, parse_cron, parse_time, parse_tz};

use super::{Error, Refusal, invalid, limits};
use crate::config::CampaignsConfig;
use crate::store::{Store, Tx, TxConn};
use crate::{with_pool, with_tx};
use check::{check_input, limit_window, plan};
use rows::planned_pushes;

/// A transaction in which the limits are checked and the push written under one lock, so two
/// pushes scheduled (or moved) at once cannot both take the last slot of a month: an advisory
/// lock on PostgreSQL; SQLite's write transactions are serial already (`BEGIN IMMEDIATE`).
async fn begin_scheduling(store: &Store) -> Result<Tx, sqlx::Error> {
    let mut tx = store.begin().await?;
    if let TxConn::Postgres(t) = &mut tx.conn {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(crate::store::locks::PUSH_SCHEDULE)
            .execute(&mut **t)
            .await?;
    }
    Ok(tx)
}

/// Schedules a push of campaign `campaign_id`, refusing what WeChat would refuse.
pub async fn schedule(
    store: &Store,
    cfg: &CampaignsConfig,
    campaign_id: i64,
    input: &PushInput,
    created_by: &str,
) -> Result<Push, Error> {
    let now = store.now_ms();
    let checked = check_input(cfg, input, now)?;
    let Some(campaign) = super::get(store, campaign_id).await? else {
        return Err(Error::Refused(Refusal::NotFound(format!("no campaign {campaign_id}"))));
    };
    check_in_range(input.articles.as_deref(), campaign.articles.len())?;
    if let Audience::Segment { segment } = input.audience
        && crate::audiences::get(store, segment).await?.is_none()
    {
        return Err(invalid(format!("segment: there is no segment {segment}")));
    }
    let planned = plan(input.name.trim(), &input.audience, input.msg_type, &checked, now);
    let window = limit_window(&planned.times, now);
    let mut tx = begin_scheduling(store).await?;
    // The articles chosen must still be there as the push is stored: an edit that removes one
    // either committed before this (read here) or waits for this to commit and then sees the
    // push (the campaign row is locked on PostgreSQL; SQLite's write transactions are serial).
    let sql = if tx.is_postgres() {
        "SELECT articles FROM campaigns WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT articles FROM campaigns WHERE id = $1"
    };
    let articles: Option<String> = with_tx!(&mut tx, conn => sqlx::query_scalar(sql)
        .bind(campaign_id).fetch_optional(conn).await)?;
    let Some(articles) = articles else {
        return Err(Error::Refused(Refusal::NotFound(format!("no campaign {campaign_id}"))));
    };
    let count = serde_json::from_str::<Vec<serde_json::Value>>(&articles).map_or(0, |a| a.len());
    check_in_range(input.articles.as_deref(), count)?;
    let existing = planned_pushes(&mut tx, now, window, None).await?;
    limits::check(&planned, &existing, cfg).map_err(|m| Error::Refused(Refusal::Rule(m.to_string())))?;
    let openids = match &input.audience {
        Audience::List { openids } => Some(serde_json::to_string(openids).expect("serializable")),
        _ => None,
    };
    let tag_id = match &input.audience {
        Audience::Tag { tag_id } => Some(*tag_id),
        _ => None,
    };
    let segment_id = match &input.audience {
        Audience::Segment { segment } => Some(*segment),
        _ => None,
    };
    let audience = match &input.audience {
        Audience::All => "all",
        Audience::Tag { .. } => "tag",
        Audience::List { .. } => "list",
        Audience::Segment { .. } => "segment",
    };
    let cron = input.cron.as_ref().map(|c| c.trim().to_owned());
    let articles = input.articles.as_ref().map(|a| serde_json::to_string(a).expect("serializable"));
    let (id,): (i64,) = with_tx!(&mut tx, conn => sqlx::query_as(
        "INSERT INTO pushes (campaign_id, name, msg_type, text, audience, tag_id, openids, at_ms, cron, time_zone,
             next_at, status, created_by, created_at, segment_id, articles)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'scheduled', $12, $13, $14, $15) RETURNING id"
    )
    .bind(campaign_id).bind(input.name.trim()).bind(input.msg_type.as_str()).bind(input.text.as_ref().map(|t| t.trim()))
    .bind(audience).bind(tag_id).bind(&openids).bind(checked.at).bind(&cron).bind(checked.tz.name())
    .bind(checked.first).bind(created_by).bind(now).bind(segment_id).bind(&articles)
    .fetch_one(conn).await)?;
    tx.commit().await?;
    get(store, id).await?.ok_or_else(|| Error::Refused(Refusal::NotFound(format!("no push {id}"))))
}

/// Moves a push that has not fired to a new time, checked as when it was scheduled (the past,
/// the hourly cron floor, WeChat's monthly and per-minute limits with every other push). A push
/// that fired, was cancelled or was missed is refused (`Conflict`, with its status); so is one
/// the scheduler claims while this runs (the update is a compare-and-set on its `next_at`).
pub async fn reschedule(store: &Store, cfg: &CampaignsConfig, id: i64, time: &NewTime) -> Result<Push, Error> {
    let now = store.now_ms();
    let push = get(store, id).await?.ok_or_else(|| Error::Refused(Refusal::NotFound(format!("no push {id}"))))?;
    if push.status != PushStatus::Scheduled {
        return Err(Error::Refused(Refusal::Conflict(format!(
            "push {id} is {} and cannot be rescheduled",
            push.status
        ))));
    }
    let input = PushInput {
        name: push.name.clone(),
        msg_type: push.msg_type,
        text: push.text.clone(),
        audience: push.audience.clone(),
        at: time.at.clone(),
        cron: time.cron.clone(),
        time_zone: Some(time.time_zone.clone().unwrap_or_else(|| push.time_zone.clone())),
        articles: push.articles.clone(),
    };
    let checked = check_input(cfg, &input, now)?;
    let planned = plan(&push.name, &push.audience, push.msg_type, &checked, now);
    let window = limit_window(&planned.times, now);
    let mut tx = begin_scheduling(store).await?;
    let existing = planned_pushes(&mut tx, now, window, Some(id)).await?;
    limits::check(&planned, &existing, cfg).map_err(|m| Error::Refused(Refusal::Rule(m.to_string())))?;
    let cron = input.cron.as_ref().map(|c| c.trim().to_owned());
    let moved = with_tx!(&mut tx, conn => sqlx::query(
        "UPDATE pushes SET at_ms = $1, cron = $2, time_zone = $3, next_at = $4
         WHERE id = $5 AND status = 'scheduled' AND next_at = $6"
    )
    .bind(checked.at).bind(&cron).bind(checked.tz.name()).bind(checked.first).bind(id).bind(push.next_at)
    .execute(conn).await.map(|r| r.rows_affected()))?;
    if moved == 0 {
        drop(tx);
        let now_status = get(store, id).await?.map(|p| p.status.to_string()).unwrap_or_else(|| "gone".into());
        return Err(Error::Refused(Refusal::Conflict(format!(
            "push {id} fired while it was being rescheduled (it is {now_status}); nothing was changed"
        ))));
    }
    tx.commit().await?;
    get(store, id).await?.ok_or_else(|| Error::Refused(Refusal::NotFound(format!("no push {id}"))))
}

/// Cancels a push that has not fired. The scheduler claims a push with a compare-and-set on the
/// same row, so a cancel racing the firing either wins (nothing is sent) or is refused.
pub async fn cancel(store: &Store, id: i64) -> Result<Push, Error> {
    let r = with_pool!(store, pool => sqlx::query(
        "UPDATE pushes SET status = 'cancelled', next_at = NULL WHERE id = $1 AND status = 'scheduled'"
    )
    .bind(id).execute(pool).await.map(|r| r.rows_affected()))?;
    let push = get(store, id).await?.ok_or_else(|| Error::Refused(Refusal::NotFound(format!("no push {id}"))))?;
    if r == 0 {
        return Err(Error::Refused(Refusal::Conflict(format!("push {id} is {} and cannot be cancelled", push.status))));
    }
    Ok(push)
}
