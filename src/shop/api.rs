//! The shop's signed endpoints, `POST /api/v1/stock` and `POST /api/v1/orders` (signed as
//! [`crate::http::signed`] describes, with `shop.secret`), and the router that also serves the
//! article link's pages ([`super::landing`]).

use super::{landing, orders, stock};
use crate::error::ApiError;
use crate::http::signed::{self, Signer};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

/// The largest body the shop may send.
pub const MAX_BODY: usize = 64 * 1024;

/// The shop's signed API, and the article link's pages (rendered with the H5 page set).
pub fn router(pages: crate::http::page::Renderer) -> Router<AppState> {
    // The shop's bodies stop being read at 64 KiB, whatever `server.max_body_bytes` allows.
    let api = Router::new()
        .route("/api/v1/stock", post(post_stock))
        .route("/api/v1/orders", post(post_order))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY));
    let landing = Router::new()
        .route("/buy/{campaign_id}", get(landing::article))
        .route("/h5/buy/{campaign_id}", get(landing::buy))
        .layer(axum::middleware::map_response_with_state(pages, crate::http::page::render));
    Router::new().merge(api).merge(landing)
}

fn shop(app: &AppState) -> Signer<'_> {
    Signer {
        name: "shop",
        secret: app.config.shop.secret.expose(),
        max_skew_secs: app.config.shop.max_skew_secs,
        now: app.clock.now_secs(),
    }
}

async fn post_stock(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = signed::authenticate(&shop(&app), &headers, body, MAX_BODY)?;
    // Verified by `authenticate`: digits within the allowed window.
    let reported_at = signed::timestamp(&headers);
    let updates = stock::parse(&body)?;
    let n = stock::upsert(&app.store, &updates, reported_at).await?;
    if n < updates.len() {
        tracing::info!(stale = updates.len() - n, "shop: stock reports older than the ones applied were ignored");
    }
    let sold_out: Vec<&str> = updates.iter().filter(|u| u.stock == 0).map(|u| u.sku.as_str()).collect();
    if !sold_out.is_empty() {
        tracing::info!(skus = ?sold_out, "shop: sold out");
    }
    Ok(Json(serde_json::json!({ "updated": n, "stale": updates.len() - n })))
}

async fn post_order(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    use orders::Outcome;
    let body = signed::authenticate(&shop(&app), &headers, body, MAX_BODY)?;
    let n = orders::parse(&body, app.clock.now_ms() / 1000)?;
    // Authenticated and under 64 KiB, so valid UTF-8 JSON we store as received.
    let raw = std::str::from_utf8(&body).map_err(|_| ApiError::BadRequest("the body must be UTF-8".into()))?;
    let outcome = orders::record(&app.store, &app.notices, &app.points_rules(), &n, raw).await?;
    let (order_id, status) = (n.order_id.as_str(), n.status.as_str());
    match outcome {
        Outcome::Queued => {
            app.outbox_wake.notify_one();
            tracing::info!(order_id, status, buyer = %crate::mask(&n.openid), "shop: order notice queued");
            let json = serde_json::json!({ "order_id": order_id, "status": status, "queued": true });
            Ok((StatusCode::ACCEPTED, Json(json)).into_response())
        }
        Outcome::Duplicate => {
            let json = serde_json::json!({ "order_id": order_id, "status": status, "duplicate": true });
            Ok((StatusCode::OK, Json(json)).into_response())
        }
        Outcome::Backwards { latest } => Err(ApiError::Conflict(format!(
            "order {order_id} is already {}: {status} cannot follow it",
            latest.as_str()
        ))),
        Outcome::OtherBuyer => Err(ApiError::Conflict(format!("order {order_id} belongs to another buyer"))),
        Outcome::UnknownBuyer => Err(ApiError::Unprocessable("the buyer is not a follower we know".into())),
    }
}
