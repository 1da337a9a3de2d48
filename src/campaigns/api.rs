//! The campaign side of the admin API (`/api/v1/…`, bearer token, role `marketing` or `admin`):
//! campaigns, their pushes, previews and delivery figures. The OpenAPI document
//! (`/api/v1/openapi.json`) describes every route.

use super::schedule::{self, MsgType, PushInput};
use super::{CampaignInput, send};
use crate::admin::Caller;
use crate::config::Role;
use crate::error::ApiError;
use crate::http::api::{ApiBody, ApiQuery, Id, parse_json};
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/campaigns", get(list_campaigns).post(create_campaign))
        .route("/api/v1/campaigns/{id}", get(show_campaign).put(update_campaign))
        .route("/api/v1/campaigns/{id}/pushes", post(schedule_push))
        .route("/api/v1/campaigns/{id}/preview", post(preview))
        .route("/api/v1/campaigns/{id}/funnel", get(funnel))
        .route("/api/v1/pushes", get(list_pushes))
        .route("/api/v1/pushes/{id}", get(show_push))
        .route("/api/v1/pushes/{id}/cancel", post(cancel_push))
        .route("/api/v1/pushes/{id}/reschedule", post(reschedule_push))
        .route("/api/v1/pushes/{id}/recall", post(recall_push))
        .route("/api/v1/stats", get(stats))
        .layer(axum::extract::DefaultBodyLimit::max(super::MAX_BODY))
}

#[derive(Deserialize)]
struct Limit {
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    campaign: Option<i64>,
}

fn limit(q: &Limit) -> i64 {
    q.limit.unwrap_or(100).clamp(1, 1000)
}

async fn list_campaigns(
    caller: Caller,
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<Limit>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    Ok(Json(json!({ "campaigns": super::list(&s.store, limit(&q)).await? })))
}

async fn create_campaign(
    caller: Caller,
    State(s): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Marketing)?;
    let input: CampaignInput = parse_json(&body)?;
    let campaign = super::create(&s.store, &input).await?;
    tracing::info!(campaign = campaign.id, by = %caller.name, "campaign created");
    Ok((StatusCode::CREATED, Json(json!(campaign))))
}

async fn show_campaign(caller: Caller, State(s): State<AppState>, Id(id): Id) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    let campaign = super::get(&s.store, id).await?.ok_or_else(|| ApiError::NotFound(format!("no campaign {id}")))?;
    let pushes = schedule::list(&s.store, Some(id), 1000).await?;
    let mut v = json!(campaign);
    v["pushes"] = json!(pushes);
    v["link"] = json!(super::article_link(&s.config.h5.public_url, id));
    Ok(Json(v))
}

async fn update_campaign(
    caller: Caller,
    State(s): State<AppState>,
    Id(id): Id,
    ApiBody(body): ApiBody,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    let input: CampaignInput = parse_json(&body)?;
    Ok(Json(json!(super::update(&s.store, id, &input).await?)))
}

async fn schedule_push(
    caller: Caller,
    State(s): State<AppState>,
    Id(id): Id,
    ApiBody(body): ApiBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Marketing)?;
    let input: PushInput = parse_json(&body)?;
    let push = schedule::schedule(&s.store, &s.config.campaigns, id, &input, &caller.name).await?;
    tracing::info!(push = push.id, campaign = id, by = %caller.name, "push scheduled");
    s.scheduler_wake.notify_one();
    Ok((StatusCode::CREATED, Json(json!(push))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewInput {
    #[serde(default)]
    pub openids: Vec<String>,
    #[serde(default = "mpnews")]
    pub msg_type: MsgType,
    #[serde(default)]
    pub text: Option<String>,
    /// Which of the campaign's articles (indexes); all by default, as a push.
    #[serde(default)]
    pub articles: Option<Vec<i64>>,
}

fn mpnews() -> MsgType {
    MsgType::Mpnews
}

async fn preview(
    caller: Caller,
    State(s): State<AppState>,
    Id(id): Id,
    ApiBody(body): ApiBody,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    let input: PreviewInput = parse_json(&body)?;
    let campaign = super::get(&s.store, id).await?.ok_or_else(|| ApiError::NotFound(format!("no campaign {id}")))?;
    let to = if input.openids.is_empty() { s.config.campaigns.test_openids.clone() } else { input.openids };
    let results = send::preview(
        &s.client,
        &s.config.h5.public_url,
        &campaign,
        input.msg_type,
        input.text.as_deref(),
        input.articles.as_deref(),
        &to,
    )
    .await?;
    Ok(Json(json!({ "previews": results })))
}

async fn list_pushes(
    caller: Caller,
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<Limit>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    Ok(Json(json!({ "pushes": schedule::list(&s.store, q.campaign, limit(&q)).await? })))
}

async fn show_push(caller: Caller, State(s): State<AppState>, Id(id): Id) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    let push = schedule::get(&s.store, id).await?.ok_or_else(|| ApiError::NotFound(format!("no push {id}")))?;
    Ok(Json(json!(push)))
}

async fn cancel_push(caller: Caller, State(s): State<AppState>, Id(id): Id) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    let push = schedule::cancel(&s.store, id).await?;
    tracing::info!(push = id, by = %caller.name, "push cancelled");
    Ok(Json(json!(push)))
}

/// What `POST /api/v1/pushes/{id}/recall` takes: nothing (all of it) or one article.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RecallInput {
    /// The article to take down, from 1; absent or 0: all of them.
    #[serde(default)]
    article_idx: Option<i64>,
}

/// Takes a sent push back (`message/mass/delete`): 409 if it never went out, is not articles,
/// or was recalled already; 400 for an article it did not send; 502 if WeChat refused.
async fn recall_push(
    caller: Caller,
    State(s): State<AppState>,
    Id(id): Id,
    ApiBody(body): ApiBody,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    let input: RecallInput =
        if body.iter().all(u8::is_ascii_whitespace) { RecallInput::default() } else { parse_json(&body)? };
    let article = input.article_idx.filter(|i| *i != 0);
    let push = super::recall::recall(&s.store, &s.client, id, article, &caller.name).await?;
    Ok(Json(json!(push)))
}

/// A new time for a push that has not fired: `{"at": …}` or `{"cron": …}`, optionally
/// `time_zone`; WeChat's limits checked again. 409 once it fired or was cancelled.
async fn reschedule_push(
    caller: Caller,
    State(s): State<AppState>,
    Id(id): Id,
    ApiBody(body): ApiBody,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    let time: schedule::NewTime = parse_json(&body)?;
    let push = schedule::reschedule(&s.store, &s.config.campaigns, id, &time).await?;
    tracing::info!(push = id, by = %caller.name, "push rescheduled");
    s.scheduler_wake.notify_one();
    Ok(Json(json!(push)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Window {
    /// The per-minute series' start and end (RFC 3339, or a local time in
    /// `campaigns.time_zone`); the last 24 hours by default.
    from: Option<String>,
    to: Option<String>,
}

/// What the campaign sold: per push and in all, sent → opens → checkouts → orders → paid, the
/// moment the product sold out, and the per-minute series of a window.
async fn funnel(
    caller: Caller,
    State(s): State<AppState>,
    Id(id): Id,
    ApiQuery(w): ApiQuery<Window>,
) -> Result<Json<Value>, ApiError> {
    use crate::shop::funnel::MAX_SERIES_MINUTES;
    caller.require(Role::Marketing)?;
    let tz = schedule::parse_tz(&s.config.campaigns.time_zone)?;
    let campaign = super::get(&s.store, id).await?.ok_or_else(|| ApiError::NotFound(format!("no campaign {id}")))?;
    let now = s.clock.now_ms();
    let to = w.to.as_deref().map(|t| schedule::parse_time(t, tz)).transpose()?.unwrap_or(now);
    let from = w.from.as_deref().map(|t| schedule::parse_time(t, tz)).transpose()?.unwrap_or(to - 86_400_000);
    if from >= to || to - from > MAX_SERIES_MINUTES * 60_000 {
        return Err(ApiError::BadRequest("from must be before to, at most 7 days apart".into()));
    }
    let pushes = schedule::list(&s.store, Some(id), super::funnel::MAX_PUSHES).await?;
    let r = super::funnel::report(&s.store, &campaign, &pushes, from, to).await?;
    Ok(Json(json!({
        "campaign": id,
        "sent": r.sent,
        "funnel": r.total,
        "pushes": r.pushes.iter().map(|p| json!({ "push": p.push, "name": p.name, "sent": p.sent, "funnel": p.funnel }))
            .collect::<Vec<_>>(),
        "unattributed_to_a_push": r.unattributed_to_a_push,
        "sold_out_at": r.sold_out_at.map(crate::crm::rfc3339),
        "series": {
            "from": crate::crm::rfc3339(from),
            "to": crate::crm::rfc3339(to),
            "minutes": r.series.iter().map(|m| json!({
                "at": crate::crm::rfc3339(m.at), "opens": m.opens, "checkouts": m.checkouts, "paid": m.paid,
            })).collect::<Vec<_>>(),
        },
    })))
}

/// Delivery figures summed over every run, and pushes by status.
async fn stats(caller: Caller, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    let pushes = schedule::list(&s.store, None, 1000).await?;
    let mut by_status = serde_json::Map::new();
    let (mut runs, mut total, mut sent, mut filtered, mut errors) = (0, 0, 0, 0, 0);
    for p in &pushes {
        let n = by_status.get(p.status.as_str()).and_then(Value::as_i64).unwrap_or(0);
        by_status.insert(p.status.as_str().to_owned(), json!(n + 1));
        for r in &p.runs {
            runs += 1;
            total += r.total_count.unwrap_or(0);
            sent += r.sent_count.unwrap_or(0);
            filtered += r.filter_count.unwrap_or(0);
            errors += r.error_count.unwrap_or(0);
        }
    }
    Ok(Json(json!({
        "pushes": by_status, "runs": runs,
        "total_count": total, "sent_count": sent, "filter_count": filtered, "error_count": errors,
    })))
}
