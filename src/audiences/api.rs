//! Segments in the admin API (role marketing): create with rules, list, one with its live count
//! and latest sync, and sync one to its WeChat tag.

use super::Rules;
use crate::admin::Caller;
use crate::config::Role;
use crate::error::ApiError;
use crate::http::api::{ApiBody, Id, parse_json};
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
        .route("/api/v1/segments", get(list).post(create))
        .route("/api/v1/segments/{id}", get(show))
        .route("/api/v1/segments/{id}/sync", post(sync))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentInput {
    name: String,
    #[serde(default)]
    rules: Rules,
}

async fn create(
    caller: Caller,
    State(s): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Marketing)?;
    let input: SegmentInput = parse_json(&body)?;
    let segment = super::create(&s.store, &input.name, &input.rules, &caller.name).await?;
    let (count, following) = super::count(&s.store, &segment.rules).await?;
    Ok((StatusCode::CREATED, Json(json!({ "segment": segment, "count": count, "following": following }))))
}

async fn list(caller: Caller, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    Ok(Json(json!({ "segments": super::list(&s.store).await? })))
}

async fn show(caller: Caller, State(s): State<AppState>, Id(id): Id) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    let segment = super::get(&s.store, id).await?.ok_or_else(|| ApiError::NotFound(format!("no segment {id}")))?;
    let (count, following) = super::count(&s.store, &segment.rules).await?;
    let sync = super::sync::latest(&s.store, id).await?;
    Ok(Json(json!({ "segment": segment, "count": count, "following": following, "sync": sync })))
}

/// Starts syncing the segment to its WeChat tag (or answers the sync already running): 202.
async fn sync(caller: Caller, State(s): State<AppState>, Id(id): Id) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Marketing)?;
    if !s.config.outbox.enabled {
        return Err(ApiError::Unavailable("the outbox is off on this instance (outbox.enabled)".into()));
    }
    let segment = super::get(&s.store, id).await?.ok_or_else(|| ApiError::NotFound(format!("no segment {id}")))?;
    let (sync, started) = super::sync::start(&s.store, &segment, &caller.name, true).await?;
    s.outbox_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({ "sync": sync, "resumed": !started }))))
}
