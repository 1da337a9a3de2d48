//! Reading pushes and their runs as stored: the `pushes` and `push_runs` rows, read back
//! strictly (a value this build does not know is an error, never a default), and the pushes
//! a new one's limits are counted against.

use super::push::{MsgType, Push, PushStatus, Recall, Run, RunStatus};
use super::time::occurrences;
use crate::campaigns::Audience;
use crate::campaigns::limits::Planned;
use crate::store::{Store, Tx};
use crate::{with_pool, with_tx};
use chrono_tz::Tz;
use std::str::FromStr;

/// Everything that will (or did, this month and last) reach followers: the other side of the
/// limit check.
/// `moving`: a push being rescheduled, whose runs so far count but whose future times are the
/// ones being checked.
pub(super) async fn planned_pushes(
    tx: &mut Tx,
    now: i64,
    (from, to): (i64, i64),
    moving: Option<i64>,
) -> Result<Vec<Planned>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        /// The push.
        #[sqlx(flatten)]
        push: PushRow,
        /// When one of its runs in the window was due; `None` for a push with none there.
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
    /// [`Push::id`].
    id: i64,
    /// [`Push::campaign_id`].
    campaign_id: i64,
    /// [`Push::campaign`] (empty where the query does not join `campaigns`).
    campaign: String,
    /// [`Push::name`].
    name: String,
    /// [`MsgType`], as stored.
    msg_type: String,
    /// [`Push::text`].
    text: Option<String>,
    /// The [`Audience`]'s kind: `all`, `tag`, `list` or `segment`.
    audience: String,
    /// A `tag` audience's tag.
    tag_id: Option<i64>,
    /// A `segment` audience's segment.
    segment_id: Option<i64>,
    /// A `list` audience's openids, as a JSON array.
    openids: Option<String>,
    /// [`Push::at`].
    at_ms: Option<i64>,
    /// [`Push::cron`].
    cron: Option<String>,
    /// [`Push::time_zone`].
    time_zone: String,
    /// [`Push::next_at`].
    next_at: Option<i64>,
    /// [`PushStatus`], as stored.
    status: String,
    /// [`Push::created_by`].
    created_by: String,
    /// [`Push::created_at`].
    created_at: i64,
    /// [`Push::articles`], as a JSON array.
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
            recalled: Vec::new(),
        })
    }
}

/// A `push_runs` row, as stored.
#[derive(sqlx::FromRow)]
struct RunRow {
    /// [`Run::id`].
    id: i64,
    /// [`Run::push_id`].
    push_id: i64,
    /// [`Run::due_at`].
    due_at: i64,
    /// [`RunStatus`], as stored.
    status: String,
    /// [`Run::msg_id`].
    msg_id: Option<i64>,
    /// [`Run::finish_status`].
    finish_status: Option<String>,
    /// [`Run::total_count`].
    total_count: Option<i64>,
    /// [`Run::filter_count`].
    filter_count: Option<i64>,
    /// [`Run::sent_count`].
    sent_count: Option<i64>,
    /// [`Run::error_count`].
    error_count: Option<i64>,
    /// [`Run::error`].
    error: Option<String>,
    /// [`Run::fired_at`].
    fired_at: Option<i64>,
    /// [`Run::finished_at`].
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

/// The runs of pushes `push_ids`, in time order.
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

/// `pushes`, each with its runs.
async fn with_runs(store: &Store, mut pushes: Vec<Push>) -> Result<Vec<Push>, sqlx::Error> {
    let ids: Vec<i64> = pushes.iter().map(|p| p.id).collect();
    for run in runs_of(store, &ids).await? {
        if let Some(p) = pushes.iter_mut().find(|p| p.id == run.push_id) {
            p.runs.push(run);
        }
    }
    if !ids.is_empty() {
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!(
            "SELECT push_id, run_id, article_idx, recalled_by, recalled_at FROM push_recalls
             WHERE push_id IN ({list}) ORDER BY recalled_at, run_id, article_idx"
        );
        let rows: Vec<(i64, i64, i64, String, i64)> =
            with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).fetch_all(pool).await)?;
        for (push_id, run_id, article_idx, by, at) in rows {
            if let Some(p) = pushes.iter_mut().find(|p| p.id == push_id) {
                p.recalled.push(Recall { run_id, article_idx, by, at });
            }
        }
    }
    Ok(pushes)
}

/// Push `id`, with its runs.
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
