//! The admin-only part of the API (role `admin`): the custom menu, member lookup and reloading
//! the files; and the
//! OpenAPI document of the whole `/api/v1`, served to anyone.

use super::Caller;
use crate::config::Role;
use crate::error::ApiError;
use crate::menu::MenuFile;
use crate::state::AppState;
use crate::with_pool;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The API's OpenAPI 3.1 description, kept beside the code it describes.
pub const OPENAPI: &str = include_str!("openapi.json");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/menu", get(menu))
        .route("/api/v1/menu/sync", post(menu_sync))
        .route("/api/v1/members/{key}", get(member).delete(erase))
        .route("/api/v1/members/{key}/export", get(export))
        .route("/api/v1/reload", post(reload))
}

/// Reads routes, reply templates, pages, notices and the menu file again and puts them in force
/// (as SIGHUP does); a broken file is a 422 naming it, and the running set stays.
async fn reload(caller: Caller, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin)?;
    match s.reload().await {
        Ok(()) => {
            tracing::info!(by = %caller.name, "files reloaded");
            Ok(Json(json!({ "reloaded": true })))
        }
        Err(e) => {
            tracing::error!(by = %caller.name, error = %e, "reload refused; the files in force stay");
            Err(e.into())
        }
    }
}

async fn openapi() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

fn menu_file(s: &AppState) -> Result<MenuFile, ApiError> {
    MenuFile::load(&s.config.bot.menu, &s.config.h5.public_url).map_err(ApiError::internal)
}

/// The menu file, what WeChat has, and the changes a sync would make.
async fn menu(caller: Caller, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin)?;
    let wanted = menu_file(&s)?;
    let problems = wanted.check();
    let (live, changes) = match s.client.menu_get().await {
        Ok(live) => {
            let changes = crate::menu::diff(&live, &wanted);
            (json!(live), json!(changes))
        }
        Err(e) => (json!({ "error": e.to_string() }), Value::Null),
    };
    Ok(Json(json!({ "file": wanted.menu(), "problems": problems, "live": live, "changes": changes })))
}

/// Pushes the menu file to WeChat.
async fn menu_sync(caller: Caller, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin)?;
    let wanted = menu_file(&s)?;
    let problems = wanted.check();
    if !problems.is_empty() {
        return Err(ApiError::Unprocessable(format!("the menu file has problems: {}", problems.join("; "))));
    }
    let unavailable = |e: crate::wechat::client::CallError| ApiError::Unavailable(e.to_string());
    s.client.menu_create(&wanted.menu()).await.map_err(unavailable)?;
    for c in &wanted.conditional {
        s.client.menu_add_conditional(c).await.map_err(unavailable)?;
    }
    tracing::info!(by = %caller.name, "menu synced");
    Ok(Json(json!({ "synced": true, "buttons": wanted.button.len(), "conditional": wanted.conditional.len() })))
}

/// The person an openid or card number names (PIPL requests name them either way).
async fn person(s: &AppState, key: &str) -> Result<crate::privacy::Person, ApiError> {
    if key.is_empty() || key.len() > 64 {
        return Err(ApiError::BadRequest("give an openid or a card number (at most 64 characters)".into()));
    }
    crate::privacy::find(&s.store, key)
        .await?
        .ok_or_else(|| ApiError::NotFound("no member or follower with that openid or card number".into()))
}

/// Everything wxoa holds about a person, as one JSON document (PIPL: a copy on request).
async fn export(caller: Caller, State(s): State<AppState>, Path(key): Path<String>) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin)?;
    let person = person(&s, &key).await?;
    let doc = crate::privacy::export(&s.store, &person).await?;
    tracing::info!(by = %caller.name, member = ?person.member_id, "personal data exported");
    Ok(Json(doc))
}

/// Erases a person's data in one transaction (PIPL: deletion on request); who did it is recorded.
async fn erase(caller: Caller, State(s): State<AppState>, Path(key): Path<String>) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin)?;
    let person = person(&s, &key).await?;
    let removed = crate::privacy::erase(&s.store, &person, &caller.name, s.crm_events()).await?;
    s.outbox_wake.notify_one();
    tracing::info!(by = %caller.name, member = ?person.member_id, "personal data erased");
    Ok(Json(json!({ "erased": true, "member_id": person.member_id, "removed": removed })))
}

/// A member by openid or card number: who, tier, balance.
async fn member(caller: Caller, State(s): State<AppState>, Path(key): Path<String>) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin)?;
    if key.is_empty() || key.len() > 64 {
        return Err(ApiError::BadRequest("give an openid or a card number (at most 64 characters)".into()));
    }
    type Row = (i64, Option<String>, Option<String>, Option<String>, String, Option<i64>);
    let row: Option<Row> = with_pool!(&s.store, pool => sqlx::query_as(
        "SELECT id, openid, card_no, name, tier, store_id FROM members WHERE openid = $1 OR card_no = $1 LIMIT 1"
    ).bind(&key).fetch_optional(pool).await)?;
    let (id, openid, card_no, name, tier, store_id) =
        row.ok_or_else(|| ApiError::NotFound("no member with that openid or card number".into()))?;
    let balance = crate::members::points::balance(&s.store, id, s.clock.now_ms()).await?;
    let bind_locked_minutes = match (&openid, &card_no) {
        (_, Some(card)) => crate::members::binding::lockout(&s.store, openid.as_deref().unwrap_or(""), card).await?,
        (Some(o), None) => crate::members::binding::lockout(&s.store, o, "").await?,
        (None, None) => None,
    };
    let expiring: Vec<Value> =
        balance.expiring.iter().map(|(p, at)| json!({ "points": p, "expires_at": at })).collect();
    Ok(Json(json!({
        "id": id, "openid": openid, "card_no": card_no, "name": name, "tier": tier, "store_id": store_id,
        "points": balance.points, "expiring": expiring, "bind_locked_minutes": bind_locked_minutes,
    })))
}
