//! The console's replies in the admin API (role marketing): list them with the merged routing
//! order, create, show one with its audit trail, replace (disable with `enabled: false`), and
//! preview a draft for a message.

use super::ReplyInput;
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
        .route("/api/v1/replies", get(list).post(create))
        .route("/api/v1/replies/preview", post(preview))
        .route("/api/v1/replies/{id}", get(show).put(update))
}

/// Every rule in the order a message meets them, and where each comes from.
fn order(s: &AppState) -> Vec<Value> {
    s.bot
        .routing()
        .rules
        .iter()
        .map(|r| {
            let source = if r.name.starts_with("console:") { "console" } else { "routes.toml" };
            json!({ "rule": r.name, "priority": r.priority, "source": source })
        })
        .collect()
}

async fn list(caller: Caller, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    let replies = super::list(&s.store).await?;
    let generation = super::generation(&s.store).await?;
    Ok(Json(json!({ "replies": replies, "generation": generation, "order": order(&s) })))
}

async fn create(
    caller: Caller,
    State(s): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Marketing)?;
    let input: ReplyInput = parse_json(&body)?;
    if input.version.is_some() {
        return Err(ApiError::BadRequest("version: only an edit names the version it starts from".into()));
    }
    let reply = super::create(&s.store, &s.bot.base(), s.config.replies.max, &input, &caller.name).await?;
    super::apply(&s.store, &s.bot).await?;
    Ok((StatusCode::CREATED, Json(json!({ "reply": reply }))))
}

async fn show(caller: Caller, State(s): State<AppState>, Id(id): Id) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    let reply = super::get(&s.store, id).await?.ok_or_else(|| ApiError::NotFound(format!("no reply {id}")))?;
    let history = super::history(&s.store, id).await?;
    Ok(Json(json!({ "reply": reply, "history": history })))
}

async fn update(
    caller: Caller,
    State(s): State<AppState>,
    Id(id): Id,
    ApiBody(body): ApiBody,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    let input: ReplyInput = parse_json(&body)?;
    let reply = super::update(&s.store, &s.bot.base(), s.config.replies.max, id, &input, &caller.name).await?;
    super::apply(&s.store, &s.bot).await?;
    Ok(Json(json!({ "reply": reply })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewInput {
    reply: ReplyInput,
    /// What a follower says (a click reply is previewed for its menu key).
    #[serde(default)]
    sample: Option<String>,
    /// The stored reply this draft edits, if any.
    #[serde(default)]
    id: Option<i64>,
}

async fn preview(caller: Caller, State(s): State<AppState>, ApiBody(body): ApiBody) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Marketing)?;
    let input: PreviewInput = parse_json(&body)?;
    let p = super::preview(&s.store, &s.bot.base(), input.id, &input.reply, input.sample.as_deref()).await?;
    Ok(Json(json!(p)))
}
