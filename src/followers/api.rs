//! The follower directory in the admin API: the list (role marketing, openids masked unless the
//! caller is an admin), one follower, and WeChat list syncs (role admin).

use super::sync::{self, Started};
use super::{Filter, Follower};
use crate::admin::Caller;
use crate::config::Role;
use crate::error::ApiError;
use crate::http::api::{ApiQuery, Id};
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
        .route("/api/v1/followers", get(list))
        .route("/api/v1/followers/{id}", get(show))
        .route("/api/v1/followers/sync", post(start_sync).get(latest_sync))
        .route("/api/v1/followers/sync/{id}", get(show_sync))
}

/// `GET /api/v1/followers` query. Unknown parameters are refused, so a typo is not an
/// unfiltered list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    tag: Option<i64>,
    store: Option<i64>,
    tier: Option<String>,
    subscribed: Option<bool>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    limit: Option<i64>,
}

/// A follower as the caller may see them: the full openid only for an admin.
fn shown(caller: &Caller, mut f: Follower) -> Follower {
    if !caller.role.allows(Role::Admin) {
        f.openid = crate::mask(&f.openid);
    }
    f
}

async fn list(
    caller: Caller,
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    let after = match q.cursor.as_deref() {
        None | Some("") => 0,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::BadRequest("cursor: pass the next_cursor of the previous page".into()))?,
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest("limit: 1 to 500".into()));
    }
    if q.tier.as_deref().is_some_and(|t| t.is_empty() || t.len() > 64) {
        return Err(ApiError::BadRequest("tier: 1 to 64 bytes".into()));
    }
    let filter = Filter { tag: q.tag, store: q.store, tier: q.tier, subscribed: q.subscribed };
    let (followers, more) = super::list(&s.store, &filter, after, limit).await?;
    let next = more.then(|| followers.last().map(|f| f.id.to_string())).flatten();
    let followers: Vec<Follower> = followers.into_iter().map(|f| shown(&caller, f)).collect();
    Ok(Json(json!({ "followers": followers, "next_cursor": next })))
}

async fn show(caller: Caller, State(s): State<AppState>, Id(id): Id) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    let f = super::get(&s.store, id).await?.ok_or_else(|| ApiError::NotFound(format!("no follower {id}")))?;
    Ok(Json(json!({ "follower": shown(&caller, f) })))
}

/// Starts a pull of WeChat's follower list (or resumes the unfinished one): 202 with the sync.
async fn start_sync(caller: Caller, State(s): State<AppState>) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Admin)?;
    if !s.config.outbox.enabled {
        return Err(ApiError::Unavailable(
            "the outbox is off on this instance (outbox.enabled): run `wxoa followers sync` instead".into(),
        ));
    }
    let (sync, started) = sync::start(&s.store, &caller.name, true).await?;
    s.outbox_wake.notify_one();
    let resumed = started == Started::Resumed;
    Ok((StatusCode::ACCEPTED, Json(json!({ "sync": sync, "resumed": resumed }))))
}

async fn latest_sync(caller: Caller, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    Ok(Json(json!({ "sync": sync::latest(&s.store).await? })))
}

async fn show_sync(caller: Caller, State(s): State<AppState>, Id(id): Id) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    let sync = sync::get(&s.store, id).await?.ok_or_else(|| ApiError::NotFound(format!("no follower sync {id}")))?;
    Ok(Json(json!({ "sync": sync })))
}
