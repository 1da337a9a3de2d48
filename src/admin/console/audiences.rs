//! The console's audience pages: the segment builder (rules in a form, the live count before
//! anything is stored, each segment's WeChat tag with its latest sync's status and last
//! error, a button that syncs it), the follower directory paged by id, and one follower's
//! page — their subscribe history, member card and points, latest interactions and the pushes
//! that reached them. Openids are masked unless the staff member is an admin.

use super::error::{Error, Invalid, NO_FOLLOWER, NO_SEGMENT};
use super::{Notice, Outcome, Posted, Signed, Staff, TokenOnly, redirect, render};
use crate::audiences::{self, Rules, sync};
use crate::config::Role;
use crate::followers::{self, Filter};
use crate::state::AppState;
use crate::with_pool;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;

/// The segment builder's fields: every rule optional, lists comma-separated.
#[derive(Deserialize, Default)]
pub(super) struct SegmentForm {
    form_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    tier: String,
    #[serde(default)]
    store_ids: String,
    #[serde(default)]
    min_points: String,
    /// `yes`, `no` or empty (either).
    #[serde(default)]
    bound: String,
    #[serde(default)]
    subscribed: String,
    #[serde(default)]
    followed_after: String,
    #[serde(default)]
    active_within_days: String,
    #[serde(default)]
    wechat_tag_ids: String,
}

fn numbers(field: &'static str, value: &str) -> Result<Option<Vec<i64>>, Invalid> {
    let parts: Vec<&str> = value.split([',', '，', ' ', '\n']).map(str::trim).filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Ok(None);
    }
    parts
        .iter()
        .map(|p| p.parse().map_err(|_| Invalid::NotANumber { field, value: (*p).to_owned() }))
        .collect::<Result<_, _>>()
        .map(Some)
}

fn number(field: &'static str, value: &str) -> Result<Option<i64>, Invalid> {
    match value.trim() {
        "" => Ok(None),
        v => v.parse().map(Some).map_err(|_| Invalid::NotWhole { field, value: v.to_owned() }),
    }
}

fn yes_no(field: &'static str, value: &str) -> Result<Option<bool>, Invalid> {
    match value {
        "" => Ok(None),
        "yes" => Ok(Some(true)),
        "no" => Ok(Some(false)),
        v => Err(Invalid::NotYesNo { field, value: v.to_owned() }),
    }
}

impl Posted for SegmentForm {
    fn form_token(&self) -> &str {
        &self.form_token
    }
}

impl SegmentForm {
    fn rules(&self) -> Result<Rules, Invalid> {
        let tier: Vec<String> =
            self.tier.split([',', '，']).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect();
        let rules = Rules {
            tier: (!tier.is_empty()).then_some(tier),
            store_ids: numbers("store_ids", &self.store_ids)?,
            min_points: number("min_points", &self.min_points)?,
            bound: yes_no("bound", &self.bound)?,
            subscribed: yes_no("subscribed", &self.subscribed)?,
            followed_after: Some(self.followed_after.trim().to_owned()).filter(|d| !d.is_empty()),
            active_within_days: number("active_within_days", &self.active_within_days)?,
            wechat_tag_ids: numbers("wechat_tag_ids", &self.wechat_tag_ids)?,
        };
        rules.check().map_err(|e| Invalid::Rules(e.to_string()))?;
        Ok(rules)
    }

    fn view(&self) -> minijinja::Value {
        context! {
            name => self.name, tier => self.tier, store_ids => self.store_ids, min_points => self.min_points,
            bound => self.bound, subscribed => self.subscribed, followed_after => self.followed_after,
            active_within_days => self.active_within_days, wechat_tag_ids => self.wechat_tag_ids,
        }
    }
}

/// The rules in words, for the list.
fn describe(r: &Rules) -> String {
    let join = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let mut parts = Vec::new();
    if let Some(t) = &r.tier {
        parts.push(format!("等级 tier {}", t.join(", ")));
    }
    if let Some(s) = &r.store_ids {
        parts.push(format!("门店 store {}", join(s)));
    }
    if let Some(p) = r.min_points {
        parts.push(format!("≥ {p} 积分 points"));
    }
    if let Some(b) = r.bound {
        parts.push(if b { "有会员卡 holds a card" } else { "无会员卡 holds no card" }.into());
    }
    if let Some(s) = r.subscribed {
        parts.push(if s { "关注中 follows" } else { "已取关 left" }.into());
    }
    if let Some(d) = &r.followed_after {
        parts.push(format!("{d} 之后关注 followed after {d}"));
    }
    if let Some(d) = r.active_within_days {
        parts.push(format!("{d} 天内活跃 active within {d} days"));
    }
    if let Some(t) = &r.wechat_tag_ids {
        parts.push(format!("标签 tag {}", join(t)));
    }
    if parts.is_empty() { "所有人 everyone".into() } else { parts.join(" · ") }
}

/// What the segment pages' redirects can say happened.
const DONE: &[(&str, &str)] = &[
    ("created", "分组已创建 Segment created"),
    ("syncing", "正在同步到微信标签，状态见下方 Syncing to its WeChat tag: the status below follows it"),
];

pub(super) async fn segments(
    State(app): State<AppState>,
    Query(q): Query<Notice>,
    s: Staff,
) -> Result<Response, Error> {
    segments_page(&app, &s, Outcome::shown(q.text(DONE)), None).await
}

/// The segment list and the builder (with the form's count, after a count).
async fn segments_page(
    app: &AppState,
    s: &Staff,
    out: Outcome,
    counted: Option<(i64, i64)>,
) -> Result<Response, Error> {
    let list = audiences::list(&app.store).await?;
    let tz = &app.config.campaigns.time_zone;
    let mut rows = Vec::new();
    for g in &list {
        let (count, following) = audiences::count(&app.store, &g.rules).await?;
        let last = sync::latest(&app.store, g.id).await?;
        rows.push(context! {
            id => g.id, name => g.name, rules => describe(&g.rules), count, following, tag_id => g.tag_id,
            sync => last.map(|l| context! {
                state => l.state.as_str(), added => l.added, removed => l.removed, skipped => l.skipped,
                planned_add => l.planned_add, planned_remove => l.planned_remove, error => l.error,
                at => crate::campaigns::schedule::local_time(l.updated_at, tz),
            }),
        });
    }
    Ok(render(
        app,
        out.status,
        "segments.html",
        context! {
            who => s.caller.name, form_token => s.form_token, segments => rows, notice => out.notice,
            error => out.error, form => out.form.unwrap_or_else(|| context! { subscribed => "yes" }),
            counted => counted.map(|(count, following)| context! { count, following }),
        },
    ))
}

/// Counts the form's rules, storing nothing: the builder's live count.
pub(super) async fn count(State(app): State<AppState>, Signed(s, f): Signed<SegmentForm>) -> Result<Response, Error> {
    match f.rules() {
        Ok(rules) => {
            let counted = audiences::count(&app.store, &rules).await?;
            let out = Outcome { form: Some(f.view()), ..Outcome::default() };
            segments_page(&app, &s, out, Some(counted)).await
        }
        Err(why) => {
            segments_page(&app, &s, Outcome::refused(StatusCode::BAD_REQUEST, why.to_string(), Some(f.view())), None)
                .await
        }
    }
}

pub(super) async fn create(State(app): State<AppState>, Signed(s, f): Signed<SegmentForm>) -> Result<Response, Error> {
    let created = match f.rules() {
        Ok(rules) => audiences::create(&app.store, f.name.trim(), &rules, &s.caller.name).await,
        Err(why) => Err(audiences::Error::Invalid(why.to_string())),
    };
    match created {
        Ok(g) => {
            tracing::info!(segment = g.id, by = %s.caller.name, "console: segment created");
            Ok(redirect("/admin/segments?done=created"))
        }
        Err(e @ audiences::Error::Db(_)) => Err(e.into()),
        Err(e) => {
            let status =
                if matches!(e, audiences::Error::Taken(_)) { StatusCode::CONFLICT } else { StatusCode::BAD_REQUEST };
            segments_page(&app, &s, Outcome::refused(status, e.to_string(), Some(f.view())), None).await
        }
    }
}

/// Starts the segment's sync to its tag (or leaves the running one be).
pub(super) async fn start_sync(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Signed(s, _): Signed<TokenOnly>,
) -> Result<Response, Error> {
    if !app.config.outbox.enabled {
        let why = "此实例未启用发件箱，无法同步 The outbox is off on this instance (outbox.enabled): nothing can sync"
            .to_owned();
        return segments_page(&app, &s, Outcome::refused(StatusCode::SERVICE_UNAVAILABLE, why, None), None).await;
    }
    let segment = audiences::get(&app.store, id).await?.ok_or(Error::NotFound(NO_SEGMENT))?;
    sync::start(&app.store, &segment, &s.caller.name, true).await?;
    app.outbox_wake.notify_one();
    Ok(redirect("/admin/segments?done=syncing"))
}

#[derive(Deserialize)]
pub(super) struct Page {
    #[serde(default)]
    after: Option<i64>,
}

/// The follower directory, 50 a page by id.
pub(super) async fn followers(State(app): State<AppState>, Query(q): Query<Page>, s: Staff) -> Result<Response, Error> {
    let after = q.after.unwrap_or(0).max(0);
    let (list, more) = followers::list(&app.store, &Filter::default(), after, 50).await?;
    let (following, left) = followers::counts(&app.store).await?;
    let tz = &app.config.campaigns.time_zone;
    let next = more.then(|| list.last().map(|f| f.id)).flatten();
    let rows: Vec<minijinja::Value> = list
        .iter()
        .map(|f| {
            context! {
                id => f.id, openid => shown(&s, &f.openid), subscribed => f.subscribed, store_id => f.store_id,
                tier => f.tier, card_no => f.card_no,
                last => f.last_interaction_at.map(|t| crate::campaigns::schedule::local_time(t, tz)),
            }
        })
        .collect();
    Ok(render(
        &app,
        StatusCode::OK,
        "followers.html",
        context! { who => s.caller.name, form_token => s.form_token, followers => rows, following, left, next },
    ))
}

/// An openid as this staff member may see it.
fn shown(s: &Staff, openid: &str) -> String {
    if s.caller.role.allows(Role::Admin) { openid.to_owned() } else { crate::mask(openid) }
}

/// How far back a follower's page looks for their messages: the log carries no index by
/// openid (every webhook call writes it), so the page reads a bounded tail of it.
const RECENT_LOG_ROWS: i64 = 100_000;

/// One follower: subscribe history, card and points, latest interactions, pushes received.
pub(super) async fn follower(State(app): State<AppState>, Path(id): Path<i64>, s: Staff) -> Result<Response, Error> {
    let f = followers::get(&app.store, id).await?.ok_or(Error::NotFound(NO_FOLLOWER))?;
    follower_page(&app, &s, f).await
}

/// A logged message: MsgType, Event, EventKey, received at, the rule that answered.
type InteractionRow = (String, Option<String>, Option<String>, i64, Option<String>);

async fn follower_page(app: &AppState, s: &Staff, f: followers::Follower) -> Result<Response, Error> {
    let tz = &app.config.campaigns.time_zone;
    let at = |t: Option<i64>| t.map(|t| crate::campaigns::schedule::local_time(t, tz));
    let member = crate::members::by_openid(&app.store, &f.openid).await?;
    let points = match &member {
        Some(m) => Some(crate::members::points::balance(&app.store, m.id, app.clock.now_ms()).await?.points),
        None => None,
    };
    // The follower's own interactions: WeChat's reports about notices sent to them are not.
    let sql = format!(
        "SELECT msg_type, event, event_key, received_at, rule FROM inbound_messages \
         WHERE id > (SELECT COALESCE(MAX(id), 0) FROM inbound_messages) - $2 AND openid = $1 AND {} \
         ORDER BY id DESC LIMIT 20",
        crate::wechat::message::sql_not_a_report()
    );
    let interactions: Vec<InteractionRow> = with_pool!(&app.store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&f.openid).bind(RECENT_LOG_ROWS).fetch_all(pool).await)?;
    let interactions: Vec<minijinja::Value> = interactions
        .into_iter()
        .map(|(msg_type, event, key, received, rule)| {
            let what = match event {
                Some(e) => format!("{e}{}", key.filter(|k| !k.is_empty()).map(|k| format!(" {k}")).unwrap_or_default()),
                None => msg_type,
            };
            context! { what, rule, at => at(Some(received)) }
        })
        .collect();
    // Pushes that reached them: a finished run to everyone, or to a tag they hold, while they
    // followed, or to a list naming them; a segment's push by the tag it was sent to.
    // Five wrong phones lock binding for the follower and the card: staff see it and its end.
    let card = member.as_ref().and_then(|m| m.card_no.clone()).unwrap_or_default();
    let bind_locked = crate::members::binding::lockout(&app.store, &f.openid, &card).await?;
    let pushes = crate::campaigns::schedule::list(&app.store, None, 500).await?;
    let segments = audiences::list(&app.store).await?;
    let since = f.last_subscribed_at.or(f.first_subscribed_at).unwrap_or(0);
    let mut received = Vec::new();
    for p in &pushes {
        use crate::campaigns::schedule::Audience;
        let reaches = match &p.audience {
            Audience::All => true,
            Audience::Tag { tag_id } => f.tag_ids.contains(tag_id),
            Audience::Segment { segment } => segments
                .iter()
                .find(|g| g.id == *segment)
                .and_then(|g| g.tag_id)
                .is_some_and(|t| f.tag_ids.contains(&t)),
            Audience::List { openids } => openids.contains(&f.openid),
        };
        for r in p.runs.iter().filter(|r| r.fired_at.is_some_and(|t| t >= since) && r.sent_count.is_some()) {
            if reaches && (f.subscribed || f.unsubscribed_at.is_some_and(|u| r.fired_at < Some(u))) {
                received.push(context! { campaign => p.campaign, campaign_id => p.campaign_id, name => p.name,
                at => at(r.fired_at) });
            }
        }
    }
    Ok(render(
        app,
        StatusCode::OK,
        "follower.html",
        context! {
            who => s.caller.name, form_token => s.form_token,
            f => context! {
                id => f.id, openid => shown(s, &f.openid), subscribed => f.subscribed, store_id => f.store_id,
                scene => f.scene, remark => f.remark, tag_ids => f.tag_ids,
                first => at(f.first_subscribed_at), last_subscribed => at(f.last_subscribed_at),
                unsubscribed => at(f.unsubscribed_at), last => at(f.last_interaction_at),
            },
            member => member.map(|m| context! { card_no => m.card_no, tier => m.tier, store_id => m.store_id, points }),
            interactions, received, bind_locked,
        },
    ))
}
