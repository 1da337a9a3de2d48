//! Pushes: when a campaign goes out, to whom, as what — scheduling, listing, cancelling.
//!
//! A time is RFC 3339 with its offset (`2026-11-23T00:13:00+08:00`) or a local time
//! (`2026-11-23 00:13`) in the push's time zone (`campaigns.time_zone` by default, China's
//! `Asia/Shanghai`). A cron pattern (croner: minute hour day month weekday, optional seconds
//! first) repeats in its time zone, so `13 0 * * *` is 00:13 in Shanghai whatever the server's
//! clock says.

use super::limits::{self, Planned};
use super::{Error, Refusal, check_len, invalid};
use crate::config::CampaignsConfig;
use crate::store::{Store, Tx, TxConn};
use crate::{with_pool, with_tx};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// How a push is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MsgType {
    /// The articles as a draft, mass-sent.
    Mpnews,
    /// A mass-sent text.
    Text,
    /// A link card per follower of a list, through customer-service messages.
    News,
}

impl MsgType {
    pub fn as_str(self) -> &'static str {
        match self {
            MsgType::Mpnews => "mpnews",
            MsgType::Text => "text",
            MsgType::News => "news",
        }
    }

    /// The type a stored string names; `None` for one this build does not know (an error to
    /// report, never read as mpnews).
    pub fn parse(s: &str) -> Option<MsgType> {
        [MsgType::Mpnews, MsgType::Text, MsgType::News].into_iter().find(|t| t.as_str() == s)
    }

    /// Whether WeChat counts it as a mass send (the monthly and per-minute limits).
    pub fn is_mass(self) -> bool {
        self != MsgType::News
    }
}

/// Who a push reaches: `{"type": "all"}`, `{"type": "tag", "tag_id": 7}`,
/// `{"type": "list", "openids": […]}`, or a segment — `{"segment": 3}` (also written
/// `{"type": "segment", "segment": 3}`), synced to its WeChat tag when the push fires and then
/// sent to that tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Audience {
    All,
    Tag { tag_id: i64 },
    List { openids: Vec<String> },
    Segment { segment: i64 },
}

/// The segment spelling without a `type`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentShort {
    segment: i64,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum TaggedAudience {
    All,
    Tag { tag_id: i64 },
    List { openids: Vec<String> },
    Segment { segment: i64 },
}

impl<'de> Deserialize<'de> for Audience {
    /// Either spelling, with the tagged form's own error messages (an untagged enum would say
    /// only "did not match any variant").
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Audience, D::Error> {
        use serde::de::Error as _;
        let v = serde_json::Value::deserialize(d)?;
        if v.get("type").is_none() && v.get("segment").is_some() {
            let s: SegmentShort = serde_json::from_value(v).map_err(D::Error::custom)?;
            return Ok(Audience::Segment { segment: s.segment });
        }
        Ok(match serde_json::from_value(v).map_err(D::Error::custom)? {
            TaggedAudience::All => Audience::All,
            TaggedAudience::Tag { tag_id } => Audience::Tag { tag_id },
            TaggedAudience::List { openids } => Audience::List { openids },
            TaggedAudience::Segment { segment } => Audience::Segment { segment },
        })
    }
}

impl Audience {
    pub fn describe(&self) -> String {
        match self {
            Audience::All => "all followers".into(),
            Audience::Tag { tag_id } => format!("tag {tag_id}"),
            Audience::List { openids } => format!("{} followers", openids.len()),
            Audience::Segment { segment } => format!("segment {segment}"),
        }
    }
}

fn default_msg_type() -> MsgType {
    MsgType::Mpnews
}

/// A push as the API and the CLI take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushInput {
    pub name: String,
    #[serde(default = "default_msg_type")]
    pub msg_type: MsgType,
    /// The text of a `text` push.
    #[serde(default)]
    pub text: Option<String>,
    pub audience: Audience,
    /// One time: RFC 3339, or local `YYYY-MM-DD HH:MM[:SS]` in `time_zone`.
    #[serde(default)]
    pub at: Option<String>,
    /// Or a cron pattern, repeating.
    #[serde(default)]
    pub cron: Option<String>,
    /// IANA name; `campaigns.time_zone` when absent.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Which of the campaign's articles it sends: indexes into the campaign's `articles` (from
    /// 0), in the order given; all of them when absent. A teaser can send one article and the
    /// launch all eight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub articles: Option<Vec<i64>>,
}

/// Where a push stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushStatus {
    /// Waiting for its (next) time.
    Scheduled,
    /// A one-time push that went.
    Fired,
    Cancelled,
    /// Its time passed while no instance ran, beyond the grace.
    Missed,
}

/// Where one firing of a push stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Claimed; being sent.
    Sending,
    /// WeChat took it; figures to come.
    Submitted,
    /// MASSSENDJOBFINISH's figures are in.
    Finished,
    Failed,
    /// Not sent: too late.
    Missed,
}

macro_rules! stored_as {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }

            /// The status a stored string names; `None` for one this build does not know.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stored_as!(PushStatus { Scheduled => "scheduled", Fired => "fired", Cancelled => "cancelled", Missed => "missed" });
stored_as!(RunStatus {
    Sending => "sending",
    Submitted => "submitted",
    Finished => "finished",
    Failed => "failed",
    Missed => "missed",
});

/// One firing of a push and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub id: i64,
    pub push_id: i64,
    pub due_at: i64,
    pub status: RunStatus,
    pub msg_id: Option<i64>,
    /// MASSSENDJOBFINISH's Status (`send success`, `err(…)`).
    pub finish_status: Option<String>,
    pub total_count: Option<i64>,
    pub filter_count: Option<i64>,
    pub sent_count: Option<i64>,
    pub error_count: Option<i64>,
    pub error: Option<String>,
    pub fired_at: Option<i64>,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Push {
    pub id: i64,
    pub campaign_id: i64,
    pub campaign: String,
    pub name: String,
    pub msg_type: MsgType,
    pub text: Option<String>,
    pub audience: Audience,
    pub at: Option<i64>,
    pub cron: Option<String>,
    pub time_zone: String,
    pub next_at: Option<i64>,
    pub status: PushStatus,
    pub created_by: String,
    pub created_at: i64,
    /// The campaign's articles it sends (indexes); `None`: all of them.
    pub articles: Option<Vec<i64>>,
    pub runs: Vec<Run>,
}

pub fn parse_tz(name: &str) -> Result<Tz, Error> {
    Tz::from_str(name).map_err(|_| invalid(format!("{name:?} is not a time zone like Asia/Shanghai")))
}

/// A time as the user wrote it, to unix ms.
pub fn parse_time(s: &str, tz: Tz) -> Result<i64, Error> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(local) = NaiveDateTime::parse_from_str(s, format) {
            // A local time skipped by a DST change does not exist; one repeated takes the first.
            return tz
                .from_local_datetime(&local)
                .earliest()
                .map(|t| t.timestamp_millis())
                .ok_or_else(|| invalid(format!("{s} does not exist in {tz}")));
        }
    }
    Err(invalid(format!("{s:?} is not a time like 2026-11-23 00:13 or 2026-11-23T00:13:00+08:00")))
}

pub fn parse_cron(pattern: &str) -> Result<croner::Cron, Error> {
    croner::Cron::from_str(pattern.trim()).map_err(|e| invalid(format!("cron {pattern:?}: {e}")))
}

/// The first occurrence of `cron` in `tz` strictly after `after_ms`.
pub fn next_occurrence(cron: &croner::Cron, tz: Tz, after_ms: i64) -> Option<i64> {
    let after = tz.timestamp_millis_opt(after_ms).single()?;
    cron.find_next_occurrence(&after, false).ok().map(|t| t.timestamp_millis())
}

/// `2026-11-23 00:13 CST` in `tz`.
pub fn local_time(ms: i64, tz: &str) -> String {
    let tz = Tz::from_str(tz).unwrap_or(chrono_tz::Asia::Shanghai);
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string(),
        None => ms.to_string(),
    }
}

const MAX_LIST: usize = 10_000;
/// Cron pushes closer together than this are refused (a typo'd `* * * * *` would spam).
const MIN_CRON_GAP_MS: i64 = 3600 * 1000;
/// How far ahead limits are checked for a repeating push.
const HORIZON_MS: i64 = 62 * 24 * 3600 * 1000;

/// What validation makes of an input.
struct Checked {
    tz: Tz,
    at: Option<i64>,
    cron: Option<croner::Cron>,
    first: i64,
}

fn check_input(cfg: &CampaignsConfig, input: &PushInput, now: i64) -> Result<Checked, Error> {
    check_len("push name", input.name.trim(), 1, 64)?;
    match (input.msg_type, &input.text) {
        (MsgType::Text, Some(t)) => check_len("text", t.trim(), 1, 2000)?,
        (MsgType::Text, None) => return Err(invalid("a text push needs its text")),
        (_, Some(_)) => return Err(invalid("only a text push has a text; the others send the articles")),
        _ => {}
    }
    match &input.audience {
        Audience::All => {}
        Audience::Tag { tag_id } => {
            if *tag_id < 0 {
                return Err(invalid("tag_id must be 0 or more"));
            }
        }
        Audience::Segment { segment } => {
            if *segment <= 0 {
                return Err(invalid("segment: a segment id is 1 or more"));
            }
        }
        Audience::List { openids } => {
            // mass/send takes 2 to 10,000 openids; customer-service messages go one by one.
            let min = if input.msg_type.is_mass() { 2 } else { 1 };
            if openids.len() < min || openids.len() > MAX_LIST {
                return Err(invalid(format!(
                    "an openid list for {} has {min} to {MAX_LIST} openids (got {})",
                    input.msg_type.as_str(),
                    openids.len()
                )));
            }
            for o in openids {
                if o.is_empty()
                    || o.len() > 64
                    || !o.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(invalid(format!("{:?} is not an openid", crate::mask(o))));
                }
            }
        }
    }
    if let Some(chosen) = &input.articles {
        check_selection(input.msg_type, chosen)?;
    }
    if input.msg_type == MsgType::News && !matches!(input.audience, Audience::List { .. }) {
        return Err(invalid(
            "a news push goes to an openid list (customer-service messages); use mpnews for all or a tag",
        ));
    }
    let tz = parse_tz(input.time_zone.as_deref().unwrap_or(&cfg.time_zone))?;
    match (&input.at, &input.cron) {
        (Some(at), None) => {
            let at = parse_time(at, tz)?;
            // A few seconds of slack for a form submitted "now".
            if at < now - 5_000 {
                return Err(Error::Refused(Refusal::Rule(format!("{} is in the past", local_time(at, tz.name())))));
            }
            if at > now + 400 * 24 * 3600 * 1000 {
                return Err(invalid("a push is scheduled at most 400 days ahead"));
            }
            Ok(Checked { tz, at: Some(at), cron: None, first: at.max(now) })
        }
        (None, Some(pattern)) => {
            check_len("cron", pattern, 1, 100)?;
            let cron = parse_cron(pattern)?;
            let first = next_occurrence(&cron, tz, now).ok_or_else(|| invalid("the cron pattern never fires"))?;
            // Every gap, not just the first: `0,30 9 * * *` is 30 minutes apart each morning.
            let times = occurrences(None, Some(&cron), tz, now, now + HORIZON_MS);
            if times.windows(2).any(|w| w[1] - w[0] < MIN_CRON_GAP_MS) {
                return Err(invalid("a repeating push fires at most once an hour"));
            }
            Ok(Checked { tz, at: None, cron: Some(cron), first })
        }
        _ => Err(invalid("give either at (a time) or cron (a pattern)")),
    }
}

/// The shape of a push's choice of articles (whether each exists is checked against the
/// campaign): 1 to 8 distinct indexes, one for a `news` card (WeChat's link card carries one
/// article), none for a text.
pub fn check_selection(msg_type: MsgType, chosen: &[i64]) -> Result<(), Error> {
    let max = match msg_type {
        MsgType::Text => return Err(invalid("articles: a text push sends its text, not articles")),
        MsgType::News => 1,
        MsgType::Mpnews => 8,
    };
    if chosen.is_empty() || chosen.len() > max {
        return Err(invalid(format!(
            "articles: a {} push sends 1 to {max} of the campaign's articles (got {})",
            msg_type.as_str(),
            chosen.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for &i in chosen {
        if i < 0 {
            return Err(invalid(format!("articles: {i} is not an index (they count from 0)")));
        }
        if !seen.insert(i) {
            return Err(invalid(format!("articles: index {i} is chosen twice")));
        }
    }
    Ok(())
}

/// Whether `chosen` names only articles campaign `campaign` has (`count` of them).
pub fn check_in_range(chosen: Option<&[i64]>, count: usize) -> Result<(), Error> {
    match chosen.unwrap_or_default().iter().find(|&&i| i < 0 || i as usize >= count) {
        Some(i) => Err(invalid(format!(
            "articles: the campaign has {count} article(s), indexes 0 to {}; there is no {i}",
            count.saturating_sub(1)
        ))),
        None => Ok(()),
    }
}

/// When a push fires within `[from, to)`.
fn occurrences(at: Option<i64>, cron: Option<&croner::Cron>, tz: Tz, from: i64, to: i64) -> Vec<i64> {
    match (at, cron) {
        (Some(at), _) => (from..to).contains(&at).then_some(at).into_iter().collect(),
        (None, Some(cron)) => {
            let mut out = Vec::new();
            let mut t = from - 1;
            while let Some(next) = next_occurrence(cron, tz, t) {
                if next >= to || out.len() >= 500 {
                    break;
                }
                out.push(next);
                t = next;
            }
            out
        }
        _ => Vec::new(),
    }
}

/// What else to check a push's `times` against: the months they touch (a month either side
/// covers any zone).
fn limit_window(times: &[i64], now: i64) -> (i64, i64) {
    const MONTH_MS: i64 = 32 * 24 * 3600 * 1000;
    match (times.iter().min(), times.iter().max()) {
        (Some(first), Some(last)) => (first - MONTH_MS, last + MONTH_MS),
        _ => (now, now),
    }
}

/// A push as WeChat's limits count it: its sends within the horizon. A one-time push counts
/// whenever it is (even a few seconds ago, as a form sent "now").
fn plan(label: &str, audience: &Audience, msg_type: MsgType, checked: &Checked, now: i64) -> Planned {
    Planned {
        label: label.to_owned(),
        audience: audience.clone(),
        mass: msg_type.is_mass(),
        times: match checked.at {
            Some(at) => vec![at],
            None => occurrences(None, checked.cron.as_ref(), checked.tz, now, now + HORIZON_MS),
        },
    }
}

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
    limits::check(&planned, &existing, cfg).map_err(|m| Error::Refused(Refusal::Rule(m)))?;
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

/// A scheduled push's new time: `at` or `cron`, and its zone (the push's own when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTime {
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub cron: Option<String>,
    #[serde(default)]
    pub time_zone: Option<String>,
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
    limits::check(&planned, &existing, cfg).map_err(|m| Error::Refused(Refusal::Rule(m)))?;
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

/// Everything that will (or did, this month and last) reach followers: the other side of the
/// limit check.
/// `moving`: a push being rescheduled, whose runs so far count but whose future times are the
/// ones being checked.
async fn planned_pushes(
    tx: &mut Tx,
    now: i64,
    (from, to): (i64, i64),
    moving: Option<i64>,
) -> Result<Vec<Planned>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        push: PushRow,
        ran_at: Option<i64>,
    }
    // Pushes still to come, and runs that went out recently (their months may still be open).
    let rows: Vec<Row> = with_tx!(tx, conn => sqlx::query_as(
        "SELECT p.id, p.campaign_id, '' AS campaign, p.name, p.msg_type, p.text, p.audience, p.tag_id, p.segment_id, p.openids,
             p.at_ms, p.cron, p.time_zone, p.next_at, p.status, p.created_by, p.created_at, p.articles, r.due_at AS ran_at
         FROM pushes p LEFT JOIN push_runs r
           ON r.push_id = p.id AND r.due_at >= $1 AND r.due_at < $2 AND r.status IN ('sending', 'submitted', 'finished')
         WHERE p.status = 'scheduled' OR r.id IS NOT NULL"
    )
    .bind(from).bind(to).fetch_all(conn).await)?;
    let mut out: Vec<Planned> = Vec::new();
    let mut seen_future = std::collections::HashSet::new();
    for row in rows {
        let p = Push::try_from(row.push)?;
        let mut times: Vec<i64> = row.ran_at.into_iter().collect();
        // A push's future occurrences once, however many past runs joined it.
        if seen_future.insert(p.id) && Some(p.id) != moving {
            let tz = Tz::from_str(&p.time_zone).unwrap_or(chrono_tz::Asia::Shanghai);
            let cron = p.cron.as_deref().and_then(|c| croner::Cron::from_str(c).ok());
            times.extend(occurrences(p.at, cron.as_ref(), tz, from.max(now), to));
        }
        out.push(Planned { label: p.name, audience: p.audience, mass: p.msg_type.is_mass(), times });
    }
    Ok(out)
}

/// A `pushes` row (with its campaign's name), as stored.
#[derive(sqlx::FromRow)]
struct PushRow {
    id: i64,
    campaign_id: i64,
    campaign: String,
    name: String,
    msg_type: String,
    text: Option<String>,
    audience: String,
    tag_id: Option<i64>,
    segment_id: Option<i64>,
    openids: Option<String>,
    at_ms: Option<i64>,
    cron: Option<String>,
    time_zone: String,
    next_at: Option<i64>,
    status: String,
    created_by: String,
    created_at: i64,
    articles: Option<String>,
}

const PUSH_SQL: &str =
    "SELECT p.id, p.campaign_id, c.name AS campaign, p.name, p.msg_type, p.text, p.audience, p.tag_id, p.segment_id, p.openids,
        p.at_ms, p.cron, p.time_zone, p.next_at, p.status, p.created_by, p.created_at, p.articles
    FROM pushes p JOIN campaigns c ON c.id = p.campaign_id";

/// A stored value this build cannot read: a decode error, never a silent default.
fn unreadable(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("{what} {value:?} is not one this build knows").into())
}

impl TryFrom<PushRow> for Push {
    type Error = sqlx::Error;

    fn try_from(r: PushRow) -> Result<Push, sqlx::Error> {
        let audience = match r.audience.as_str() {
            "all" => Audience::All,
            "tag" => Audience::Tag { tag_id: r.tag_id.ok_or_else(|| unreadable("tag push without tag_id", ""))? },
            "segment" => Audience::Segment {
                segment: r.segment_id.ok_or_else(|| unreadable("segment push without segment_id", ""))?,
            },
            "list" => Audience::List {
                openids: r
                    .openids
                    .as_deref()
                    .and_then(|o| serde_json::from_str(o).ok())
                    .ok_or_else(|| unreadable("openid list", r.openids.as_deref().unwrap_or("")))?,
            },
            other => return Err(unreadable("audience", other)),
        };
        Ok(Push {
            id: r.id,
            campaign_id: r.campaign_id,
            campaign: r.campaign,
            name: r.name,
            msg_type: MsgType::parse(&r.msg_type).ok_or_else(|| unreadable("msg_type", &r.msg_type))?,
            text: r.text,
            audience,
            at: r.at_ms,
            cron: r.cron,
            time_zone: r.time_zone,
            next_at: r.next_at,
            status: PushStatus::parse(&r.status).ok_or_else(|| unreadable("push status", &r.status))?,
            created_by: r.created_by,
            created_at: r.created_at,
            articles: match r.articles.as_deref() {
                None => None,
                Some(a) => Some(serde_json::from_str(a).map_err(|_| unreadable("article choice", a))?),
            },
            runs: Vec::new(),
        })
    }
}

/// A `push_runs` row, as stored.
#[derive(sqlx::FromRow)]
struct RunRow {
    id: i64,
    push_id: i64,
    due_at: i64,
    status: String,
    msg_id: Option<i64>,
    finish_status: Option<String>,
    total_count: Option<i64>,
    filter_count: Option<i64>,
    sent_count: Option<i64>,
    error_count: Option<i64>,
    error: Option<String>,
    fired_at: Option<i64>,
    finished_at: Option<i64>,
}

impl TryFrom<RunRow> for Run {
    type Error = sqlx::Error;

    fn try_from(r: RunRow) -> Result<Run, sqlx::Error> {
        Ok(Run {
            id: r.id,
            push_id: r.push_id,
            due_at: r.due_at,
            status: RunStatus::parse(&r.status).ok_or_else(|| unreadable("run status", &r.status))?,
            msg_id: r.msg_id,
            finish_status: r.finish_status,
            total_count: r.total_count,
            filter_count: r.filter_count,
            sent_count: r.sent_count,
            error_count: r.error_count,
            error: r.error,
            fired_at: r.fired_at,
            finished_at: r.finished_at,
        })
    }
}

async fn runs_of(store: &Store, push_ids: &[i64]) -> Result<Vec<Run>, sqlx::Error> {
    if push_ids.is_empty() {
        return Ok(Vec::new());
    }
    // Ids are ours (integers), so inlining them is safe and keeps one query for both backends.
    let ids = push_ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let sql = format!(
        "SELECT id, push_id, due_at, status, msg_id, finish_status, total_count, filter_count, sent_count,
             error_count, error, fired_at, finished_at
         FROM push_runs WHERE push_id IN ({ids}) ORDER BY due_at, id"
    );
    let rows: Vec<RunRow> =
        with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).fetch_all(pool).await)?;
    rows.into_iter().map(Run::try_from).collect()
}

async fn with_runs(store: &Store, mut pushes: Vec<Push>) -> Result<Vec<Push>, sqlx::Error> {
    let ids: Vec<i64> = pushes.iter().map(|p| p.id).collect();
    for run in runs_of(store, &ids).await? {
        if let Some(p) = pushes.iter_mut().find(|p| p.id == run.push_id) {
            p.runs.push(run);
        }
    }
    Ok(pushes)
}

pub async fn get(store: &Store, id: i64) -> Result<Option<Push>, sqlx::Error> {
    let sql = format!("{PUSH_SQL} WHERE p.id = $1");
    let row: Option<PushRow> = with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(id).fetch_optional(pool).await)?;
    let pushes = with_runs(store, row.into_iter().map(Push::try_from).collect::<Result<_, _>>()?).await?;
    Ok(pushes.into_iter().next())
}

/// Pushes in time order (next or last firing), of one campaign or all.
pub async fn list(store: &Store, campaign_id: Option<i64>, limit: i64) -> Result<Vec<Push>, sqlx::Error> {
    let sql = format!(
        "{PUSH_SQL} WHERE ($1 IS NULL OR p.campaign_id = $1)
         ORDER BY COALESCE(p.next_at, p.at_ms, p.created_at) DESC, p.id DESC LIMIT $2"
    );
    let rows: Vec<PushRow> = with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
        .bind(campaign_id).bind(limit).fetch_all(pool).await)?;
    with_runs(store, rows.into_iter().map(Push::try_from).collect::<Result<_, _>>()?).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_their_zone() {
        let sh = parse_tz("Asia/Shanghai").unwrap();
        let launch = parse_time("2026-11-23 00:13", sh).unwrap();
        assert_eq!(launch, parse_time("2026-11-22T16:13:00Z", sh).unwrap());
        assert_eq!(launch, parse_time("2026-11-23T00:13:00+08:00", sh).unwrap());
        assert!(parse_time("tomorrow", sh).is_err());
        assert!(parse_tz("Mars/Olympus").is_err());
        assert_eq!(local_time(launch, "Asia/Shanghai"), "2026-11-23 00:13:00 CST");
    }

    #[test]
    fn cron_repeats_in_its_zone() {
        let sh = parse_tz("Asia/Shanghai").unwrap();
        let cron = parse_cron("13 0 * * *").unwrap();
        let from = parse_time("2026-11-22 12:00", sh).unwrap();
        let next = next_occurrence(&cron, sh, from).unwrap();
        assert_eq!(next, parse_time("2026-11-23 00:13", sh).unwrap());
        let week = occurrences(None, Some(&cron), sh, from, from + 7 * 24 * 3600 * 1000);
        assert_eq!(week.len(), 7);
        assert!(parse_cron("61 * * * *").is_err());
    }

    #[test]
    fn inputs_are_checked() {
        let cfg = CampaignsConfig::default();
        let now = parse_time("2026-11-22T12:00:00+08:00", chrono_tz::UTC).unwrap();
        let base = PushInput {
            name: "launch".into(),
            msg_type: MsgType::Mpnews,
            text: None,
            audience: Audience::All,
            at: Some("2026-11-23 00:13".into()),
            cron: None,
            time_zone: None,
            articles: None,
        };
        assert!(check_input(&cfg, &base, now).is_ok());
        assert!(check_input(&cfg, &PushInput { articles: Some(vec![2, 0]), ..base.clone() }, now).is_ok());
        let cases: Vec<(&str, PushInput)> = vec![
            ("past", PushInput { at: Some("2026-11-01 00:00".into()), ..base.clone() }),
            ("neither", PushInput { at: None, ..base.clone() }),
            ("both", PushInput { cron: Some("13 0 * * *".into()), ..base.clone() }),
            ("every minute", PushInput { at: None, cron: Some("* * * * *".into()), ..base.clone() }),
            ("twice an hour some days", PushInput { at: None, cron: Some("0,30 9 * * *".into()), ..base.clone() }),
            ("text without text", PushInput { msg_type: MsgType::Text, ..base.clone() }),
            ("one openid", PushInput { audience: Audience::List { openids: vec!["oA".into()] }, ..base.clone() }),
            (
                "bad openid",
                PushInput { audience: Audience::List { openids: vec!["o A".into(), "oB".into()] }, ..base.clone() },
            ),
            ("news to all", PushInput { msg_type: MsgType::News, ..base.clone() }),
            ("bad zone", PushInput { time_zone: Some("Nowhere".into()), ..base.clone() }),
            ("empty name", PushInput { name: " ".into(), ..base.clone() }),
            ("no articles chosen", PushInput { articles: Some(vec![]), ..base.clone() }),
            ("an article twice", PushInput { articles: Some(vec![1, 1]), ..base.clone() }),
            ("nine articles", PushInput { articles: Some((0..9).collect()), ..base.clone() }),
            ("a negative index", PushInput { articles: Some(vec![-1]), ..base.clone() }),
            (
                "articles for a text",
                PushInput { msg_type: MsgType::Text, text: Some("hi".into()), articles: Some(vec![0]), ..base.clone() },
            ),
        ];
        for (what, input) in cases {
            assert!(check_input(&cfg, &input, now).is_err(), "{what} was accepted");
        }
    }
}
